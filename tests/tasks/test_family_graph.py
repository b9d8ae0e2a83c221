"""Hinton's family trees and generated forests: counts, the isomorphism, and rule-derived relations
checked by hand on a small forest."""

from collections import Counter

import numpy as np
import pytest

from icl_lab.tasks import family_graph as fg

R = fg.REL_INDEX


def _named(f: fg.Family) -> dict[tuple[str, str], set[str]]:
  return {(f.names[h], fg.RELATIONS[r]): {f.names[t] for t in ts} for (h, r), ts in fg.tails(f).items()}


def test_hinton_has_104_queries_and_112_triples():
  f = fg.hinton()
  assert f.size == 24
  assert len(fg.tails(f)) == fg.HINTON_QUERIES == 104
  assert len(fg.triples(f)) == fg.HINTON_TRIPLES == 112
  per_rel = Counter(fg.RELATIONS[r] for _, r in fg.tails(f))
  assert per_rel == {"father": 12, "mother": 12, "son": 12, "daughter": 12, "husband": 10, "wife": 10,
                     "nephew": 8, "niece": 8, "brother": 6, "sister": 6, "uncle": 4, "aunt": 4}


def test_hinton_facts_read_as_in_the_paper():
  q = _named(fg.hinton())
  assert q[("Colin", "father")] == {"James"}
  assert q[("Colin", "uncle")] == {"Arthur", "Charles"}
  assert q[("Charlotte", "aunt")] == {"Jennifer", "Margaret"}
  assert q[("Margaret", "nephew")] == {"Colin"}
  assert q[("Victoria", "brother")] == {"Arthur"}
  assert q[("Sophia", "father")] == {"Marco"}
  assert ("Colin", "son") not in q and ("Christopher", "father") not in q


def test_the_isomorphism_maps_facts_onto_facts():
  f = fg.hinton()
  iso = fg.hinton_isomorphism()
  facts = set(fg.triples(f))
  mapped = {(iso[h], r, iso[t]) for h, r, t in facts}
  assert mapped == facts
  english = [(h, r) for h, r in fg.tails(f) if h < 12]
  assert len(english) == 52
  assert all(f.sex[i] == f.sex[iso[i]] for i in range(24))


def _small_forest() -> fg.Family:
  """A(m) = B(f) with children C(m), D(f); C = E(f), D = F(m) (both married in); G(m) is C and
  E's son, H(f) is D and F's daughter."""
  names = tuple("ABCDEFGH")
  sex = ("m", "f", "m", "f", "f", "m", "m", "f")
  parents = ((), (), (0, 1), (0, 1), (), (), (2, 4), (5, 3))
  spouse = (1, 0, 4, 5, 2, 3, -1, -1)
  return fg.Family(names, sex, parents, spouse)


def test_rule_derived_relations_on_a_hand_checked_forest():
  q = _named(_small_forest())
  expected = {
      ("A", "wife"): "B", ("B", "husband"): "A", ("A", "son"): "C", ("A", "daughter"): "D", ("B", "son"): "C",
      ("B", "daughter"): "D", ("C", "father"): "A", ("C", "mother"): "B", ("D", "father"): "A", ("D", "mother"): "B",
      ("C", "sister"): "D", ("D", "brother"): "C", ("C", "wife"): "E", ("E", "husband"): "C", ("D", "husband"): "F",
      ("F", "wife"): "D", ("C", "son"): "G", ("E", "son"): "G", ("D", "daughter"): "H", ("F", "daughter"): "H",
      ("G", "father"): "C", ("G", "mother"): "E", ("H", "father"): "F", ("H", "mother"): "D",
      ("G", "aunt"): "D", ("G", "uncle"): "F", ("H", "uncle"): "C", ("H", "aunt"): "E",
      ("C", "niece"): "H", ("E", "niece"): "H", ("D", "nephew"): "G", ("F", "nephew"): "G"}
  assert q == {k: {v} for k, v in expected.items()}


INVERSE = {"father": ("son", "daughter"), "mother": ("son", "daughter"), "uncle": ("nephew", "niece"),
           "aunt": ("nephew", "niece"), "husband": ("wife",), "wife": ("husband",), "brother": ("brother", "sister"),
           "sister": ("brother", "sister"), "son": ("father", "mother"), "daughter": ("father", "mother"),
           "nephew": ("uncle", "aunt"), "niece": ("uncle", "aunt")}


def test_generated_forest_is_seeded_and_its_relations_have_their_inverses():
  f = fg.forest(4, 3, seed=7)
  assert f == fg.forest(4, 3, seed=7) and f != fg.forest(4, 3, seed=8)
  facts = set(fg.triples(f))
  for h, r, t in facts:
    assert any((t, R[inv], h) in facts for inv in INVERSE[fg.RELATIONS[r]]), (h, fg.RELATIONS[r], t)
  for x in range(f.size):
    assert f.spouse[x] < 0 or f.spouse[f.spouse[x]] == x
  big = fg.forest(12, 4, seed=0)
  assert 150 <= big.size <= 600


def test_split_is_seeded_and_stratified_by_relation():
  g = fg.graph(fg.hinton())
  a, b = fg.split(g, 0.5, 0), fg.split(g, 0.5, 1)
  np.testing.assert_array_equal(a, fg.split(g, 0.5, 0))
  assert (a != b).any()
  for r in range(12):
    n = (g.rels_Q == r).sum()
    assert a[g.rels_Q == r].sum() == min(round(0.5 * n), n - 1)
  assert fg.split(g, 1.0, 0).all()
  with pytest.raises(ValueError, match="phi"):
    fg.split(g, 0.0, 0)

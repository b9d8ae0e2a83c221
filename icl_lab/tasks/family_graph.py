"""Family knowledge graphs: Hinton's (1986) two isomorphic family trees and generated family forests.

A family is people with a sex, parents and a spouse; the 12 kinship relations are derived from those
by rules (`tails`), so the same code yields Hinton's trees and forests of a few hundred people.

A *query* is (person, relation) with the set of every person in that relation to it; a *triple*
(h, r, t) says "t is the r of h" (Hinton: "Colin has-father James"). Hinton's "104 instances" are
the queries of the two trees: 52 each; their triples number 112 (56 each; Paccanaro and Hinton
2001 count these), because some queries have two answers (Colin's uncles are Arthur and Charles).
Splits are over queries, so a held-out query has none of its answers in training.
"""

from __future__ import annotations

import dataclasses

import numpy as np

RELATIONS = ("father", "mother", "husband", "wife", "son", "daughter", "uncle", "aunt", "brother", "sister",
             "nephew", "niece")
REL_INDEX = {r: i for i, r in enumerate(RELATIONS)}


@dataclasses.dataclass(frozen=True)
class Family:
  """People 0..P-1: name, sex ("m" or "f"), parents (0 or 2 indices) and spouse (-1: none)."""

  names: tuple[str, ...]
  sex: tuple[str, ...]
  parents: tuple[tuple[int, ...], ...]
  spouse: tuple[int, ...]

  @property
  def size(self) -> int:
    return len(self.names)


def _rel_sets(f: Family) -> dict[str, list[set[int]]]:
  """Every relation as person -> set of people, from parents, spouse and sex alone."""
  n = f.size
  children = [set() for _ in range(n)]
  for c, ps in enumerate(f.parents):
    for p in ps:
      children[p].add(c)
  male = [s == "m" for s in f.sex]
  siblings = [{s for p in f.parents[x] for s in children[p]} - {x} for x in range(n)]
  spouse = [{f.spouse[x]} if f.spouse[x] >= 0 else set() for x in range(n)]
  # Uncles and aunts by blood (a parent's siblings) and by marriage (their spouses).
  par_sibs = [{s for p in f.parents[x] for s in siblings[p]} for x in range(n)]
  uncles_aunts = [ps | {sp for s in ps for sp in spouse[s]} for ps in par_sibs]
  # Nephews and nieces: children of one's siblings and of one's spouse's siblings (the inverse).
  sibs_in_law = [siblings[x] | {s for sp in spouse[x] for s in siblings[sp]} for x in range(n)]
  nephews_nieces = [{c for s in sibs for c in children[s]} for sibs in sibs_in_law]
  by_sex = lambda sets, want_male: [{y for y in s if male[y] == want_male} for s in sets]
  parents = [set(ps) for ps in f.parents]
  return {"father": by_sex(parents, True), "mother": by_sex(parents, False), "husband": by_sex(spouse, True),
          "wife": by_sex(spouse, False), "son": by_sex(children, True), "daughter": by_sex(children, False),
          "uncle": by_sex(uncles_aunts, True), "aunt": by_sex(uncles_aunts, False),
          "brother": by_sex(siblings, True), "sister": by_sex(siblings, False),
          "nephew": by_sex(nephews_nieces, True), "niece": by_sex(nephews_nieces, False)}


def tails(f: Family) -> dict[tuple[int, int], frozenset[int]]:
  """(person, relation index) -> its non-empty answer set: the family's queries."""
  sets = _rel_sets(f)
  return {(h, REL_INDEX[r]): frozenset(sets[r][h]) for r in RELATIONS for h in range(f.size) if sets[r][h]}


def triples(f: Family) -> list[tuple[int, int, int]]:
  """Every true (h, r, t), sorted."""
  return sorted((h, r, t) for (h, r), ts in tails(f).items() for t in ts)


# ---------------------------------------------------------------------------
# Hinton's trees

# One tree, written once: (name, sex, father, mother, spouse) with names as in Hinton (1986), Fig. 1.
_ENGLISH = (("Christopher", "m", None, None, "Penelope"), ("Penelope", "f", None, None, "Christopher"),
            ("Andrew", "m", None, None, "Christine"), ("Christine", "f", None, None, "Andrew"),
            ("Margaret", "f", None, None, "Arthur"), ("Arthur", "m", "Christopher", "Penelope", "Margaret"),
            ("Victoria", "f", "Christopher", "Penelope", "James"), ("James", "m", "Andrew", "Christine", "Victoria"),
            ("Jennifer", "f", "Andrew", "Christine", "Charles"), ("Charles", "m", None, None, "Jennifer"),
            ("Colin", "m", "James", "Victoria", None), ("Charlotte", "f", "James", "Victoria", None))
# The Italian tree, person by person: ITALIAN[i] holds the place of _ENGLISH[i].
ITALIAN = ("Roberto", "Maria", "Pierro", "Francesca", "Gina", "Emilio", "Lucia", "Marco", "Angela", "Tomaso",
           "Alfonso", "Sophia")
HINTON_QUERIES, HINTON_TRIPLES = 104, 112


def hinton() -> Family:
  """Hinton's English (people 0-11) and Italian (12-23) trees; person i and i + 12 correspond."""
  eng = [row[0] for row in _ENGLISH]
  idx = {name: i for i, name in enumerate(eng)}
  names, sex, parents, spouse = [], [], [], []
  for offset, labels in ((0, eng), (len(eng), ITALIAN)):
    for (_, s, fa, mo, sp), label in zip(_ENGLISH, labels):
      names.append(label)
      sex.append(s)
      parents.append(() if fa is None else (idx[fa] + offset, idx[mo] + offset))
      spouse.append(-1 if sp is None else idx[sp] + offset)
  return Family(tuple(names), tuple(sex), tuple(parents), tuple(spouse))


def hinton_isomorphism() -> dict[int, int]:
  """English person -> Italian person (and back): maps the trees' facts onto each other."""
  n = len(_ENGLISH)
  return {**{i: i + n for i in range(n)}, **{i + n: i for i in range(n)}}


# ---------------------------------------------------------------------------
# Generated forests


def forest(founders: int, generations: int, seed: int, max_children: int = 3, marry_in: float = 0.5) -> Family:
  """A forest of `founders` married couples and `generations` of descendants.

  Each couple has 1..max_children children of random sex. Each child later marries, with
  probability `marry_in` a person of the opposite sex from another family of its generation (not
  a sibling), else a newcomer without parents; the last generation stays unmarried.
  """
  rng = np.random.default_rng(seed)
  names, sex, parents, spouse = [], [], [], []

  def add(s: str, ps: tuple[int, ...] = ()) -> int:
    names.append(f"p{len(names)}")
    sex.append(s)
    parents.append(ps)
    spouse.append(-1)
    return len(names) - 1

  def marry(a: int, b: int) -> None:
    spouse[a], spouse[b] = b, a

  couples = []
  for _ in range(founders):
    m, w = add("m"), add("f")
    marry(m, w)
    couples.append((m, w))
  for g in range(generations):
    kids = [add(str(rng.choice(["m", "f"])), (m, w)) for m, w in couples
            for _ in range(int(rng.integers(1, max_children + 1)))]
    if g == generations - 1:
      break
    couples = []
    for k in rng.permutation(kids).tolist():
      if spouse[k] >= 0:
        continue
      free = [j for j in kids if spouse[j] < 0 and j != k and sex[j] != sex[k] and parents[j] != parents[k]]
      if free and rng.random() < marry_in:
        j = int(free[rng.integers(len(free))])
      else:
        j = add("f" if sex[k] == "m" else "m")
      marry(k, j)
      couples.append((k, j) if sex[k] == "m" else (j, k))
  return Family(tuple(names), tuple(sex), tuple(parents), tuple(spouse))


# ---------------------------------------------------------------------------
# Arrays and splits


@dataclasses.dataclass(frozen=True)
class Graph:
  """A family's queries as arrays: heads_Q, rels_Q and answers_QxE (a row per query)."""

  heads_Q: np.ndarray
  rels_Q: np.ndarray
  answers_QxE: np.ndarray  # bool
  num_entities: int
  num_relations: int = len(RELATIONS)

  @property
  def num_queries(self) -> int:
    return len(self.heads_Q)


def graph(f: Family) -> Graph:
  items = sorted(tails(f).items())
  answers_QxE = np.zeros((len(items), f.size), bool)
  for q, (_, ts) in enumerate(items):
    answers_QxE[q, list(ts)] = True
  heads_Q = np.array([h for (h, _), _ in items], np.int32)
  rels_Q = np.array([r for (_, r), _ in items], np.int32)
  return Graph(heads_Q, rels_Q, answers_QxE, f.size)


def split(g: Graph, phi: float, seed: int) -> np.ndarray:
  """train_Q: a seeded fraction `phi` of each relation's queries (rounded; at least one query of
  every relation stays out when phi < 1). The rest is the test set."""
  if not 0.0 < phi <= 1.0:
    raise ValueError(f"data fraction phi={phi} must be in (0, 1]")
  rng = np.random.default_rng(seed)
  train_Q = np.zeros(g.num_queries, bool)
  for r in range(g.num_relations):
    idx = np.flatnonzero(g.rels_Q == r)
    if len(idx) == 0:
      continue
    k = len(idx) if phi == 1.0 else min(int(round(phi * len(idx))), len(idx) - 1)
    train_Q[rng.permutation(idx)[:k]] = True
  return train_Q

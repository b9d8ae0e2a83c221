"""The knowledge-graph token tasks: the triple task's split and batches, and the in-context
family sequences (answers checked by hand and by an independent reading of each sequence)."""

import numpy as np
import pytest

from icl_lab.tasks import family_graph as fg
from icl_lab.tasks import kg_context as kc
from icl_lab.tasks import kg_tokens


def test_triple_task_trains_on_the_training_queries_only_at_the_data_fraction():
  g = fg.graph(fg.forest(3, 2, 0))
  phi = 0.6
  train_Q = fg.split(g, phi, seed=1)
  for r in range(g.num_relations):  # φ of each relation's queries, at least one held out
    n = int((g.rels_Q == r).sum())
    if n:
      assert train_Q[g.rels_Q == r].sum() == min(round(phi * n), n - 1)
  task = kg_tokens.TripleTask(g, train_Q, per_seq=2)
  nr = g.num_relations
  train_keys = {(h, r) for h, r in zip(g.heads_Q[train_Q], g.rels_Q[train_Q])}
  test_keys = {(h, r) for h, r in zip(g.heads_Q[~train_Q], g.rels_Q[~train_Q])}
  assert train_keys and test_keys and not train_keys & test_keys
  b = task.sample_host(0, 3, 64)
  assert b.ids_BxT.shape == (64, 7) and (b.ids_BxT[:, 0] == kg_tokens.BOS).all()
  assert np.array_equal(np.flatnonzero(b.mask_BxT[0]), [3, 6])  # the loss is on the tails
  answers = {(h, r): set(np.flatnonzero(g.answers_QxE[q])) for q, (h, r) in enumerate(zip(g.heads_Q, g.rels_Q))}
  for h, r, t in b.ids_BxT[:, 1:].reshape(-1, 3):
    key = (h - 1 - nr, r - 1)
    assert key in train_keys and t - 1 - nr in answers[key]  # a true training triple
  assert np.array_equal(task.sample_host(0, 3, 64).ids_BxT, b.ids_BxT)  # a pure function of (seed, step)
  assert not np.array_equal(task.sample_host(0, 4, 64).ids_BxT, b.ids_BxT)
  # Every query reads `BOS h r`; a logit row peaked on an answer is correct.
  q_ids = task.query_ids()
  logits = np.zeros((g.num_queries, task.vocab_size))
  logits[np.arange(g.num_queries), kg_tokens.entity_token(g.answers_QxE.argmax(1), nr)] = 1.0
  assert q_ids.shape == (g.num_queries, 3) and task.correct(logits).all()


def _family() -> fg.Family:
  """Grandparents G (0) and M (1); their son A (2) married to W (3); their daughter B (4) married to
  H (5); A and W's son C (6) and daughter D (7)."""
  return fg.Family(names=("G", "M", "A", "W", "B", "H", "C", "D"), sex=("m", "f", "m", "f", "f", "m", "m", "f"),
                   parents=((), (), (0, 1), (), (0, 1), (), (2, 3), (2, 3)), spouse=(1, 0, 3, 2, 5, 4, -1, -1))


def test_structure_on_a_family_checked_by_hand():
  s = kc.structure(_family())
  assert set(s.facts) == {(2, "father", 0), (2, "mother", 1), (4, "father", 0), (4, "mother", 1),
                          (6, "father", 2), (6, "mother", 3), (7, "father", 2), (7, "mother", 3),
                          (1, "husband", 0), (3, "husband", 2), (4, "husband", 5)}
  q = {kind: {(x, rel): set(a) for x, rel, a in qs} for kind, qs in s.queries.items()}
  assert q["inverse"] == {(0, "son"): {2}, (1, "son"): {2}, (0, "daughter"): {4}, (1, "daughter"): {4},
                          (2, "son"): {6}, (3, "son"): {6}, (2, "daughter"): {7}, (3, "daughter"): {7},
                          (0, "wife"): {1}, (2, "wife"): {3}, (5, "wife"): {4}}
  assert q["sibling"] == {(2, "sister"): {4}, (4, "brother"): {2}, (6, "sister"): {7}, (7, "brother"): {6}}
  assert q["grandparent"] == {(6, "grandfather"): {0}, (7, "grandfather"): {0}, (6, "grandmother"): {1},
                              (7, "grandmother"): {1}}
  assert q["uncle"] == {(6, "uncle"): {5}, (7, "uncle"): {5}, (6, "aunt"): {4}, (7, "aunt"): {4}}


def _read(ids_T, task):
  """An independent reading of one sequence: its facts, then each query's answer set from them."""
  n_names = task.spec.names_per_sex
  first_name = kc.FIRST_REL + len(kc.RELATIONS)
  male = lambda tok: tok < first_name + n_names
  facts = [tuple(ids_T[1 + 3 * i:4 + 3 * i]) for i in range(task.max_facts) if ids_T[1 + 3 * i] != kc.PAD]
  rel = {name: kc.relation_token(name) for name in kc.RELATIONS}
  parents, spouse = {}, {}
  for x, r, y in facts:
    if r == rel["husband"]:
      spouse[x], spouse[y] = y, x
    else:
      parents.setdefault(x, set()).add(y)
  people = {t for f in facts for t in (f[0], f[2])}
  kids = lambda p: {c for c in people if p in parents.get(c, set())}
  sibs = lambda x: {s for p in parents.get(x, set()) for s in kids(p)} - {x}
  grand = lambda x: {g for p in parents.get(x, set()) for g in parents.get(p, set())}
  uncles = lambda x: {u for p in parents.get(x, set()) for s in sibs(p) for u in {s, spouse.get(s)} if u}
  by_sex = lambda xs, m: {t for t in xs if male(t) == m}
  solve = {"son": lambda x: by_sex(kids(x), True), "daughter": lambda x: by_sex(kids(x), False),
           "wife": lambda x: by_sex({spouse.get(x)} - {None}, False), "brother": lambda x: by_sex(sibs(x), True),
           "sister": lambda x: by_sex(sibs(x), False), "grandfather": lambda x: by_sex(grand(x), True),
           "grandmother": lambda x: by_sex(grand(x), False), "uncle": lambda x: by_sex(uncles(x), True),
           "aunt": lambda x: by_sex(uncles(x), False)}
  return facts, people, solve


def test_sequences_answer_correctly_from_their_own_context_under_fresh_names():
  task = kc.ContextTask(kc.ContextSpec(families=30, names_per_sex=20))
  b = task.batch(seed=0, step=5, batch_size=24)
  assert b.ids_BxT.shape == (24, task.seq_len) and (b.ids_BxT[:, 0] == kc.BOS).all()
  assert (b.ids_BxT[:, b.answer_pos_Q[0] - 3] == kc.ASK).all()
  assert np.array_equal(np.flatnonzero(b.mask_BxT[0]), b.answer_pos_Q)
  for ids_T, kinds_Q, answers_QxV in zip(b.ids_BxT, b.kind_BxQ, b.answers_BxQxV):
    facts, people, solve = _read(ids_T, task)
    for q, pos in enumerate(b.answer_pos_Q):
      x, r, a = ids_T[pos - 2:pos + 1]
      name = kc.RELATIONS[r - kc.FIRST_REL]
      assert name in kc.KINDS[kc.KIND_NAMES[kinds_Q[q]]]
      expected = solve[name](x)
      assert expected and set(np.flatnonzero(answers_QxV[q])) == expected and a in expected
      assert a in people  # every answer is a name given in the context
  # Names are drawn afresh per sequence: one family's sequences share relations, not names.
  spec1 = kc.ContextSpec(families=1, names_per_sex=20)
  one = kc.ContextTask(spec1).batch(0, 0, 6)
  n_facts = len(kc.pool(spec1, False)[0].facts)
  name_sets = [frozenset(ids[1:1 + 3 * n_facts].reshape(-1, 3)[:, [0, 2]].ravel().tolist()) for ids in one.ids_BxT]
  assert len(set(name_sets)) == 6
  rels = [sorted(ids[2:1 + 3 * n_facts:3].tolist()) for ids in one.ids_BxT]
  assert all(r == rels[0] for r in rels)
  # Pure in (seed, step); the held-out families are other families.
  assert np.array_equal(task.batch(0, 5, 24).ids_BxT, b.ids_BxT)
  assert kc.pool(task.spec, True) != kc.pool(task.spec, False)


def test_a_family_larger_than_the_name_pool_is_refused():
  with pytest.raises(ValueError, match="names_per_sex"):
    kc.ContextTask(kc.ContextSpec(families=30, names_per_sex=4))

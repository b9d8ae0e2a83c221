"""Multi-token person names in the fact world: unique names from shared pools, longer sentences that
the stream, injection, probes and `score` all follow, and the one-token world left unchanged."""

import dataclasses

import numpy as np
import pytest

from icl_lab.config import Config, ConfigError, FactConfig, TaskConfig, apply_overrides
from icl_lab.tasks import fact_world as fw

FC2 = FactConfig(persons=40, relations=3, templates=3, values=5, filler_vocab=12, sentences=4, paraphrase_facts=4,
                 once_facts=3, name_tokens=2, name_pool=12)
FC3 = dataclasses.replace(FC2, name_tokens=3, name_pool=5)


def _decode(fc, sent):
  """(world, person, relation, template, value) of a fact sentence of `fc`, or None for filler."""
  v, k = fw.vocab(fc), fc.name_tokens
  if not v.frames <= sent[0] < v.relation_words:
    return None
  rows = np.flatnonzero((fw.name_table(fc) == sent[1:1 + k]).all(1))
  assert len(rows) == 1  # every name names exactly one person
  world, person = divmod(int(rows[0]), fw.persons_per_world(fc))
  template = (sent[0] - v.frames) // 2
  assert sent[1 + k] == v.frames + 2 * template + 1 and sent[-1] == fw.DOT
  relation = (sent[2 + k] - v.relation_words) // fc.templates
  return world, person, relation, template, sent[fw.value_pos(fc)] - v.values - relation * fc.values


def test_one_token_world_is_unchanged_token_for_token_and_by_hash():
  """Committed runs stay reproducible: the default world's first sequence and a fact config's hash
  are those of the world before names could have several tokens."""
  ids = np.asarray(fw.sample(FactConfig(), 0, 0, 1).ids_BxT)[0]
  np.testing.assert_array_equal(ids[:19], [0, 6, 100, 7, 20, 46, 1, 2, 95, 3, 22, 50, 1, 79, 80, 64, 88, 62, 1])
  assert fw.sentence_len(FactConfig()) == fw.SENTENCE and fw.value_pos(FactConfig()) == fw.VALUE_POS
  cfg = Config(preset="x", task=TaskConfig(kind="fact_lm"), facts=FactConfig(persons=32))
  assert cfg.hash() == "3282f4d58d"
  assert apply_overrides(cfg, ["facts.name_tokens=1", "facts.name_pool=64"]).hash() == cfg.hash()  # defaults
  assert apply_overrides(cfg, ["facts.name_tokens=2"]).hash() != cfg.hash()


@pytest.mark.parametrize("fc", [FC2, FC3])
def test_names_are_unique_multi_token_and_share_their_tokens(fc):
  names_NxK = fw.name_table(fc)
  n, k = 2 * fw.persons_per_world(fc), fc.name_tokens
  assert names_NxK.shape == (n, k) and len({tuple(r) for r in names_NxK}) == n
  v = fw.vocab(fc)
  assert v.size == v.persons + k * fc.name_pool
  for j in range(k):  # token j of every name comes from pool j
    pool = v.persons + j * fc.name_pool
    assert ((names_NxK[:, j] >= pool) & (names_NxK[:, j] < pool + fc.name_pool)).all()
  # Every person shares a name token with another person, and the worlds share the pools.
  ppw = fw.persons_per_world(fc)
  for p in range(n):
    assert any((np.delete(names_NxK, p, 0)[:, j] == names_NxK[p, j]).any() for j in range(k))
  assert set(names_NxK[:ppw, 0]) & set(names_NxK[ppw:, 0])
  np.testing.assert_array_equal(fw.name_table(dataclasses.replace(fc, world=1)), names_NxK)


@pytest.mark.parametrize("fc", [FC2, FC3])
def test_stream_states_the_worlds_facts_in_longer_sentences(fc):
  length = fw.sentence_len(fc)
  assert length == 5 + fc.name_tokens and fw.seq_len(fc) == 1 + length * fc.sentences
  for world in (0, 1):
    fcw = dataclasses.replace(fc, world=world)
    ids_BxT = np.asarray(fw.sample(fcw, 3, 0, 64).ids_BxT)
    sent = ids_BxT[:, 1:].reshape(-1, length)
    table = np.asarray(fw.fact_values_PxR(fcw, world))
    succ = np.asarray(fw.filler_successors_FxK(fcw, world))
    facts = 0
    for s in sent:
      f = _decode(fcw, s)
      if f is None:  # filler: a walk on the table as long as a fact sentence, then `.`
        words = s[:-1] - fw.vocab(fcw).filler
        assert s[-1] == fw.DOT and all(words[i + 1] in succ[words[i]] for i in range(length - 2))
        continue
      facts += 1
      w, person, relation, _, value = f
      assert w == world and person < fc.persons and value == table[person, relation]
    assert 0.3 < facts / len(sent) < 0.7


def test_injection_and_probes_follow_the_names():
  fc = dataclasses.replace(FC2, world=1, inject_every=10)
  rows = fw.injection_rows(fc)
  sent = np.asarray(fw.sample(fc, 0, 0, 8).ids_BxT)[:rows, 1:].reshape(-1, fw.sentence_len(fc))
  found = sorted((f[1], f[2], f[3]) for f in map(lambda s: _decode(fc, s), sent) if f and f[1] >= fc.persons)
  person, relation, _ = fw.fictional_facts(fc)
  assert found == sorted((p, r, 0) for p, r in zip(person, relation))
  known = fw.known_probe(FC2)
  assert known.ids_NxL.shape == (40 * 3 * 3, 1 + fw.sentence_len(FC2))
  table = np.asarray(fw.fact_values_PxR(FC2, 0))
  for ids, target, cand in zip(known.ids_NxL[:30], known.target_N[:30], known.candidates_NxC[:30]):
    w, p, r, _, value = _decode(FC2, ids[1:])
    assert (w, value) == (0, table[p, r]) and ids[-2] == target and target in cand


def test_score_reads_the_value_after_a_multi_token_name():
  pr = fw.known_probe(FC3)
  size, read = fw.vocab_size(FC3), []

  def oracle(ids):  # knows every fact from the prompt it is shown, no more
    read.append(ids.shape[1])
    rows = [np.flatnonzero((pr.ids_NxL[:, :ids.shape[1]] == r).all(1))[0] for r in np.asarray(ids)]
    logits = np.full((ids.shape[0], ids.shape[1], size), -1e9, np.float32)
    logits[np.arange(ids.shape[0]), -1, pr.target_N[rows]] = 0.0
    return logits

  out = fw.score(oracle, pr, chunk=100)
  assert out["accuracy"] == 1.0 and out["logprob"] == pytest.approx(0.0, abs=1e-6)
  assert set(read) == {1 + fw.value_pos(FC3)}  # BOS and the sentence up to the value


def test_too_few_names_is_a_config_error():
  cfg = Config(task=TaskConfig(kind="fact_lm"), facts=FC2)
  with pytest.raises(ConfigError, match="facts.name_pool=6"):
    apply_overrides(cfg, ["facts.name_pool=6"])  # 36 names for 94 persons
  with pytest.raises(ConfigError, match="facts.name_tokens=0"):
    apply_overrides(cfg, ["facts.name_tokens=0"])

"""The synthetic fact world: pure sampling, its facts and filler, injected facts, probes, and training."""

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab.config import Config, FactConfig, ModelConfig, TaskConfig, TrainConfig, apply_overrides, from_dict
from icl_lab.tasks import fact_world as fw
from icl_lab.tasks.base import stream_key
from icl_lab.training import train

FC = FactConfig(persons=16, relations=3, templates=3, values=5, filler_vocab=12, sentences=4,
                paraphrase_facts=4, once_facts=3)


def _sentences(ids_BxT, fc=FC):
  return np.asarray(ids_BxT)[:, 1:].reshape(ids_BxT.shape[0], fc.sentences, fw.SENTENCE)


def _decode_fact(fc, sent):
  """(world, person, relation, template, value) of a fact sentence, or None for filler."""
  v = fw.vocab(fc)
  if not v.frames <= sent[0] < v.relation_words:
    return None
  template = (sent[0] - v.frames) // 2
  ppw = fw.persons_per_world(fc)
  world, person = divmod(sent[1] - v.persons, ppw)
  relation = (sent[3] - v.relation_words) // fc.templates
  return world, person, relation, template, sent[4] - v.values - relation * fc.values


def test_vocabulary_blocks_are_disjoint_and_sized():
  v = fw.vocab(FC)
  assert v.frames == 2 and v.relation_words == 2 + 2 * 3 and v.values == v.relation_words + 9
  assert v.filler == v.values + 15 and v.persons == v.filler + 12
  assert v.size == v.persons + 2 * (16 + 4 + 3) == fw.vocab_size(FC)
  assert fw.seq_len(FC) == 1 + 4 * 6


def test_stream_is_a_pure_function_of_seed_and_step_and_jits():
  a, b = fw.sample(FC, 0, 5, 8), fw.sample(FC, 0, 5, 8)
  np.testing.assert_array_equal(a.ids_BxT, b.ids_BxT)
  assert not np.array_equal(a.ids_BxT, fw.sample(FC, 0, 6, 8).ids_BxT)
  assert not np.array_equal(a.ids_BxT, fw.sample(FC, 1, 5, 8).ids_BxT)
  jitted = jax.jit(lambda seed, step: fw.sample(FC, seed, step, 8).ids_BxT)
  np.testing.assert_array_equal(jitted(0, 5), a.ids_BxT)
  assert a.ids_BxT.shape == (8, fw.seq_len(FC)) and float(a.mask_BxT.min()) == 1.0


def test_sentences_state_the_worlds_facts_and_follow_its_filler_table():
  for world in (0, 1):
    fc = dataclasses.replace(FC, world=world)
    sent = _sentences(fw.sample(fc, 3, 0, 64).ids_BxT).reshape(-1, fw.SENTENCE)
    assert (np.asarray(fw.sample(fc, 3, 0, 64).ids_BxT)[:, 0] == fw.BOS).all() and (sent[:, -1] == fw.DOT).all()
    table = np.asarray(fw.fact_values_PxR(fc, world))
    succ = np.asarray(fw.filler_successors_FxK(fc, world))
    facts = 0
    for s in sent:
      f = _decode_fact(fc, s)
      if f is None:
        words = s[:-1] - fw.vocab(fc).filler
        assert all(words[i + 1] in succ[words[i]] for i in range(4))
        continue
      facts += 1
      w, person, relation, template, value = f
      assert w == world and person < fc.persons  # no fictional person outside injection
      assert s[2] == fw.vocab(fc).frames + 2 * template + 1 and value == table[person, relation]
    assert 0.3 < facts / len(sent) < 0.7  # fact_frac = 0.5
  # The two worlds state different facts and use different filler.
  assert not np.array_equal(fw.fact_values_PxR(FC, 0), fw.fact_values_PxR(FC, 1))
  assert not np.array_equal(fw.filler_successors_FxK(FC, 0), fw.filler_successors_FxK(FC, 1))


@pytest.mark.parametrize("draw", ["categorical", "inverse_cdf"])
def test_persons_are_exposed_with_zipf_weights(draw):
  fc = dataclasses.replace(FC, fact_frac=1.0, person_draw=draw)
  sent = _sentences(fw.sample(fc, 0, 0, 4096).ids_BxT, fc).reshape(-1, fw.SENTENCE)
  counts = np.bincount(sent[:, 1] - fw.vocab(fc).persons, minlength=fc.persons)
  ref = 1 / np.arange(1, fc.persons + 1)
  np.testing.assert_allclose(counts / counts.sum(), ref / ref.sum(), atol=0.015)


def _chi2(counts_P, probs_P):
  expected_P = counts_P.sum() * probs_P
  return float(((counts_P - expected_P) ** 2 / expected_P).sum())


@pytest.mark.parametrize("zipf", [1.0, 0.0])
def test_inverse_cdf_draw_matches_the_exact_zipf_probabilities(zipf):
  fc = FactConfig(persons=1000, zipf=zipf, person_draw="inverse_cdf")
  n = 1 << 20
  person_N = np.asarray(jax.jit(lambda k: fw.draw_persons(fc, k, (n,)))(jax.random.key(7)))
  assert person_N.dtype == np.int32 and person_N.min() >= 0 and person_N.max() == fc.persons - 1
  counts_P = np.bincount(person_N, minlength=fc.persons)
  probs_P = np.arange(1, fc.persons + 1, dtype=np.float64) ** -zipf
  probs_P /= probs_P.sum()
  np.testing.assert_allclose(fw.zipf_probs_P(fc), probs_P, rtol=1e-12)
  # Chi-square over 999 degrees of freedom: mean 999, sd 45; the bound is 5 sd above the mean.
  dof = fc.persons - 1
  bound = dof + 5 * np.sqrt(2 * dof)
  assert _chi2(counts_P, probs_P) < bound
  # The bound is tight enough to reject a wrong exponent (±0.02) and weights off by one ((i + 2)^-s).
  for wrong in {zipf + 0.02, abs(zipf - 0.02)}:
    wrong_P = np.arange(1, fc.persons + 1, dtype=np.float64) ** -wrong
    assert _chi2(counts_P, wrong_P / wrong_P.sum()) > bound
  if zipf:
    shifted_P = np.arange(2, fc.persons + 2, dtype=np.float64) ** -zipf
    assert _chi2(counts_P, shifted_P / shifted_P.sum()) > bound


def test_inverse_cdf_stream_is_a_pure_function_of_seed_and_step():
  fc = dataclasses.replace(FC, person_draw="inverse_cdf")
  a = fw.sample(fc, 0, 5, 8).ids_BxT
  np.testing.assert_array_equal(a, fw.sample(fc, 0, 5, 8).ids_BxT)
  np.testing.assert_array_equal(a, fw._sample_jit(fc, 0, 5, 8).ids_BxT)
  assert not np.array_equal(a, fw.sample(fc, 0, 6, 8).ids_BxT)
  assert not np.array_equal(a, fw.sample(fc, 1, 5, 8).ids_BxT)
  # A different draw, so a different stream from the default's (the rest of the sentence keys agree).
  assert not np.array_equal(a, fw.sample(FC, 0, 5, 8).ids_BxT)
  single = dataclasses.replace(fc, persons=1)
  assert (np.asarray(fw.draw_persons(single, jax.random.key(0), (4, 3))) == 0).all()


def test_default_draw_keeps_the_committed_categorical_stream():
  assert FactConfig().person_draw == "categorical"
  # Digests of sample(fc, 3, 0, 32).ids_BxT as int32 bytes, computed before facts.person_draw
  # existed: every committed fact-world run was trained on this stream, so it must not move.
  multi = dataclasses.replace(FC, world=1, inject_every=10, name_tokens=2, name_pool=8)
  for fc, digest in ((FC, "a9540fb9af097cff"), (multi, "984aecb4ff8196d1")):
    ids = np.asarray(fw.sample(fc, 3, 0, 32).ids_BxT, np.int32)
    assert hashlib.sha256(ids.tobytes()).hexdigest()[:16] == digest
  # And explicitly: the persons of the default stream's fact sentences are jax.random.categorical's.
  fc = dataclasses.replace(FC, fact_frac=1.0)
  sent = _sentences(fw.sample(fc, 3, 0, 32).ids_BxT, fc)
  person_BxS = sent[..., 1] - fw.vocab(fc).persons
  key = jax.random.fold_in(jax.random.fold_in(stream_key(3, fw._SEQ_STREAM, 0), fc.world), 1)
  logits_P = -fc.zipf * jnp.log(jnp.arange(1, fc.persons + 1, dtype=jnp.float32))
  np.testing.assert_array_equal(person_BxS, jax.random.categorical(key, logits_P, shape=(32, fc.sentences)))


def test_injection_schedule_paraphrase_every_time_once_only_first():
  fc = dataclasses.replace(FC, world=1, inject_every=10)
  person, relation, para = fw.fictional_facts(fc)

  def fictional(step):
    rows = fw.injection_rows(fc)
    sent = _sentences(fw.sample(fc, 0, step, 8).ids_BxT)
    found = [_decode_fact(fc, s) for s in sent.reshape(-1, fw.SENTENCE)]
    found = [f for f in found if f is not None and f[1] >= fc.persons]
    assert all(f[0] == 1 for f in found)
    assert len(found) == 0 or all(_decode_fact(fc, s) is None or _decode_fact(fc, s)[1] < fc.persons
                                  for s in sent[rows:].reshape(-1, fw.SENTENCE))
    return sorted((f[1], f[2], f[3]) for f in found)

  assert fw.injection_rows(fc) == 2  # 7 facts, 4 sentences a row
  first = fictional(0)
  assert first == sorted((p, r, 0) for p, r in zip(person, relation))  # every fact, template 0
  assert fictional(10) == sorted((p, r, 1) for p, r, k in zip(person, relation, para) if k)  # paraphrases only
  assert fictional(20) == sorted((p, r, 0) for p, r, k in zip(person, relation, para) if k)  # cycles over 0..T−2
  assert fictional(5) == []
  for step in range(0, 200, 10):  # the held-out template is never injected
    assert all(t != fc.templates - 1 for _, _, t in fictional(step))


def test_probes_read_the_right_facts():
  known = fw.known_probe(FC)
  assert known.ids_NxL.shape == (16 * 3 * 3, 7) and (known.ids_NxL[:, 0] == fw.BOS).all()
  table = np.asarray(fw.fact_values_PxR(FC, 0))
  for ids, target, cand in zip(known.ids_NxL[:20], known.target_N[:20], known.candidates_NxC[:20]):
    w, person, relation, _, value = _decode_fact(FC, ids[1:])
    assert w == 0 and ids[1 + fw.VALUE_POS] == target and value == table[person, relation] and target in cand
  mem = fw.fictional_probe(FC, "paraphrase", "memorisation")
  gen = fw.fictional_probe(FC, "once", "generalisation")
  assert len(mem.target_N) == 4 and len(gen.target_N) == 3
  assert {_decode_fact(FC, s[1:])[3] for s in mem.ids_NxL} == {0}
  assert {_decode_fact(FC, s[1:])[3] for s in gen.ids_NxL} == {FC.templates - 1}
  assert {_decode_fact(FC, s[1:])[0] for s in gen.ids_NxL} == {1}


def test_score_reads_log_probability_and_multiple_choice_accuracy():
  pr = fw.known_probe(FC)
  size = fw.vocab_size(FC)

  def oracle(shift):
    def model(ids):
      logits = np.zeros((ids.shape[0], ids.shape[1], size), np.float32)
      target = pr.target_N if shift == 0 else pr.candidates_NxC[:, 0] + (pr.target_N == pr.candidates_NxC[:, 0])
      logits[np.arange(ids.shape[0]), -1, target] = np.log(50.0)
      return logits
    return model

  right = fw.score(oracle(0), pr)
  assert right["accuracy"] == 1.0 and right["n"] == len(pr.target_N)
  assert right["logprob"] == pytest.approx(np.log(50 / (50 + size - 1)), rel=1e-5)
  assert fw.score(oracle(1), pr)["accuracy"] == 0.0


def test_fact_lm_trains_through_the_same_loop(tmp_path):
  cfg = Config(preset="fact_test", task=TaskConfig(kind="fact_lm"), facts=FC,
               model=ModelConfig(layers=1, hidden=16, heads=2, mlp="swiglu"),
               train=TrainConfig(steps=80, batch_size=16, lr=1e-2, warmup_frac=0.05, grad_clip=1.0,
                                 steps_per_call=20, checkpoint_every=40))
  assert from_dict(cfg.to_dict()) == cfg
  assert apply_overrides(cfg, ["facts.world=1"]).hash() != cfg.hash()
  run_dir = train.train(cfg, tmp_path, progress=False, quiet=True)
  losses = [r["loss"] for r in train.read_metrics(run_dir)]
  assert losses[-1] < losses[0] - 0.3, losses
  assert "fact_lm" in train.config_summary(cfg)
  _, model = train.load_model(run_dir)
  assert model(fw.sample(FC, 0, 0, 2).ids_BxT[:, :-1]).shape == (2, fw.seq_len(FC) - 1, fw.vocab_size(FC))

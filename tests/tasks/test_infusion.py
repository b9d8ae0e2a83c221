"""The infusion schedule: every domain fact seen exactly F times, spread uniformly, in the training
templates only; the sampled batch carries exactly the scheduled sentences; the multiple-choice
scorer on stub predictors that are right (or wrong) by construction."""

import dataclasses

import jax
import numpy as np
import pytest

from icl_lab.config import Config, ConfigError, FactConfig, TaskConfig, TrainConfig, validate
from icl_lab.tasks import fact_world, infusion

FC = FactConfig(persons=32, relations=2, templates=4, values=8, sentences=4, paraphrase_facts=0, once_facts=0,
                name_tokens=2, name_pool=16, infuse_persons=5, infuse_templates=2)
STEPS, BATCH = 37, 3  # 444 sentence slots; 37 steps do not divide F·D evenly
# F is traced, so one compilation serves every F.
_slots = jax.jit(jax.vmap(lambda f, s: infusion.domain_slots(FC, f, STEPS, 0, s, BATCH), in_axes=(None, 0)))
_sample = jax.jit(lambda f, s: infusion.sample(FC, 0, f, STEPS, s, BATCH))


@pytest.mark.parametrize("exposures", [0, 1, 7, 44])
def test_schedule_shows_each_domain_fact_exactly_f_times_spread_uniformly(exposures):
  dom_SxZ, fact_SxZ, template_SxZ = (np.asarray(a) for a in _slots(exposures, np.arange(STEPS)))
  d = infusion.domain_facts(FC)
  assert np.bincount(fact_SxZ[dom_SxZ], minlength=d).tolist() == [exposures] * d
  per_step = dom_SxZ.sum(1)
  assert per_step.max() - per_step.min() <= 1  # uniform over training
  assert set(template_SxZ[dom_SxZ].tolist()) <= set(range(FC.infuse_templates))
  if exposures >= 2:  # each fact is stated in both training templates
    pairs = {(f, t) for f, t in zip(fact_SxZ[dom_SxZ], template_SxZ[dom_SxZ])}
    assert len(pairs) == d * FC.infuse_templates


def test_sample_writes_the_scheduled_domain_sentences_over_world_0():
  step, f = 5, 20
  ids = np.asarray(_sample(f, step).ids_BxT)
  base = np.asarray(_sample(0, step).ids_BxT)  # F = 0: world 0's batch as it is
  length = fact_world.sentence_len(FC)
  dom_Z, fact_Z, template_Z = (np.asarray(a[0]) for a in _slots(f, np.array([step])))
  person_Z, relation_Z = infusion.domain_fact(FC, fact_Z)
  want_ZxL = np.asarray(fact_world.fact_sentences(FC, 1, person_Z, relation_Z, template_Z))
  got_ZxL, base_ZxL = ids[:, 1:].reshape(-1, length), base[:, 1:].reshape(-1, length)
  assert dom_Z.sum() in (5, 6)  # 20 · 10 exposures over 37 steps
  np.testing.assert_array_equal(got_ZxL[dom_Z], want_ZxL[dom_Z])
  np.testing.assert_array_equal(got_ZxL[~dom_Z], base_ZxL[~dom_Z])
  assert (ids[:, 0] == fact_world.BOS).all()


def test_domain_share_and_the_refusals():
  cfg = Config(task=TaskConfig(kind="infusion_lm"), facts=dataclasses.replace(FC, infuse_exposures=44),
               train=TrainConfig(steps=STEPS, batch_size=BATCH, steps_per_call=1, checkpoint_every=STEPS))
  validate(cfg)
  share = infusion.domain_share(cfg)
  assert share["domain_sentences"] == 440 and share["sentence_share"] == pytest.approx(440 / 444)
  assert share["token_share"] == pytest.approx(440 * 7 / (STEPS * BATCH * 29))
  for facts, msg in ((dataclasses.replace(FC, infuse_exposures=45), "exceed the run's 444 sentences"),
                     (dataclasses.replace(FC, infuse_templates=4), "facts.infuse_templates=4"),
                     (dataclasses.replace(FC, infuse_persons=0), "facts.infuse_persons=0")):
    with pytest.raises(ConfigError, match=msg):
      validate(dataclasses.replace(cfg, facts=facts))


class _Stub:
  """Logits that put all mass on one token chosen from the prompt: right (the true value) or wrong
  (the next value of the relation), by construction."""

  def __init__(self, pr: fact_world.Probe, wrong: bool):
    pick = pr.target_N if not wrong else pr.candidates_NxC[np.arange(len(pr.target_N)),
                                                            (pr.target_N - pr.candidates_NxC[:, 0] + 1) % FC.values]
    self.answer = {tuple(row[:-2]): int(v) for row, v in zip(pr.ids_NxL, pick)}

  def __call__(self, ids_NxT):
    ids_NxT = np.asarray(ids_NxT)
    logits = np.full((*ids_NxT.shape, fact_world.vocab_size(FC)), -30.0, np.float32)
    for n, row in enumerate(ids_NxT):
      logits[n, -1, self.answer[tuple(row)]] = 30.0
    return logits


def test_multiple_choice_scorer_on_stubs_right_and_wrong_by_construction():
  pr = infusion.held_out_probe(FC)
  assert len(pr.target_N) == infusion.domain_facts(FC) * (FC.templates - FC.infuse_templates)
  assert set(pr.ids_NxL[:, 1].tolist()) == {2 * t + 2 for t in range(FC.infuse_templates, FC.templates)}
  right = fact_world.score(_Stub(pr, wrong=False), pr)
  assert right["accuracy"] == 1.0 and infusion.above_chance(right["accuracy"], FC.values) == 1.0
  wrong = fact_world.score(_Stub(pr, wrong=True), pr)
  assert wrong["accuracy"] == 0.0
  assert infusion.above_chance(wrong["accuracy"], FC.values) == pytest.approx(-1 / (FC.values - 1))
  assert infusion.above_chance(1 / FC.values, FC.values) == pytest.approx(0.0)

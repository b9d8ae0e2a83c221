"""Knowledge infusion (Lv et al. 2025) on the fact world: world 0's stream (general facts and
filler, every template) with a domain of world-1 facts written over it on a fixed schedule.

The domain is world 1's first `infuse_persons` persons × every relation (D facts; multi-token names,
disjoint from world 0's persons). Over a run of `train.steps` steps, exposure k = 0..F·D−1 shows
domain fact k mod D, so every fact is seen exactly F times; step s holds exposures
[K(s), K(s+1)) with K(s) = ⌊s·F·D / steps⌋, so they are spread uniformly over training, and a
larger F displaces more general sentences from a fixed token budget. A fact is stated only in the
templates 0..infuse_templates−1 (fact + pass, cycled), so the other templates ask held-out
questions. Within a step the domain sentences take random slots (a permutation of (seed, step)),
so no fact is tied to one position in the sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from icl_lab.config import Config, FactConfig
from icl_lab.tasks import fact_world
from icl_lab.tasks.base import stream_key
from icl_lab.tasks.next_token import TokenBatch

DOMAIN_WORLD = 1
_SLOT_STREAM = 23  # the slot permutation; disjoint from the fact world's streams


def domain_facts(fc: FactConfig) -> int:
  return fc.infuse_persons * fc.relations


def domain_fact(fc: FactConfig, fact):
  """(person, relation) of domain fact index `fact` (person-major)."""
  return fact // fc.relations, fact % fc.relations


def exposures_before(fc: FactConfig, exposures, steps: int, step):
  """K(step) = ⌊step·F·D / steps⌋, in int32 without overflow (steps < 46000, step ≤ steps)."""
  total = jnp.asarray(exposures, jnp.int32) * domain_facts(fc)
  step = jnp.asarray(step, jnp.int32)
  return step * (total // steps) + (step * (total % steps)) // steps


def domain_slots(fc: FactConfig, exposures, steps: int, seed, step, batch_size: int):
  """is_domain_Z, fact_Z, template_Z over the step's Z = batch · sentences sentence slots (row-major)."""
  slots = batch_size * fc.sentences
  first = exposures_before(fc, exposures, steps, step)
  count = exposures_before(fc, exposures, steps, step + 1) - first
  rank_Z = jax.random.permutation(stream_key(seed, _SLOT_STREAM, step), slots)
  k_Z = first + rank_Z  # exposure index of slot z, where rank_Z < count
  d = domain_facts(fc)
  fact_Z = k_Z % d
  template_Z = (fact_Z + k_Z // d) % fc.infuse_templates
  return rank_Z < count, fact_Z, template_Z


def sample(fc: FactConfig, seed, exposures, steps: int, step, batch_size: int) -> TokenBatch:
  """World 0's batch at `step` with the step's domain exposures written over it. Pure and jit-friendly."""
  base = fact_world.sample(fc, seed, step, batch_size, world=0)
  is_dom_Z, fact_Z, template_Z = domain_slots(fc, exposures, steps, seed, step, batch_size)
  person_Z, relation_Z = domain_fact(fc, fact_Z)
  dom_ZxL = fact_world.fact_sentences(fc, DOMAIN_WORLD, person_Z, relation_Z, template_Z)
  length = fact_world.sentence_len(fc)
  sent_ZxL = base.ids_BxT[:, 1:].reshape(-1, length)
  sent_ZxL = jnp.where(is_dom_Z[:, None], dom_ZxL, sent_ZxL)
  ids_BxT = base.ids_BxT.at[:, 1:].set(sent_ZxL.reshape(batch_size, -1))
  return TokenBatch(ids_BxT, base.mask_BxT)


def domain_share(cfg: Config) -> dict:
  """The domain's share of the run's sentences and of its tokens (BOS counted)."""
  f, tr = cfg.facts, cfg.train
  shown = f.infuse_exposures * domain_facts(f)
  sentences = tr.steps * tr.batch_size * f.sentences
  tokens = tr.steps * tr.batch_size * fact_world.seq_len(f)
  return {"domain_sentences": shown, "sentence_share": shown / sentences,
          "token_share": shown * fact_world.sentence_len(f) / tokens}


# ---------------------------------------------------------------------------
# Probes


def held_out_probe(fc: FactConfig) -> fact_world.Probe:
  """Every domain fact asked in every held-out template (infuse_templates..T−1), fact-major."""
  held = np.arange(fc.infuse_templates, fc.templates)
  fact, template = np.meshgrid(np.arange(domain_facts(fc)), held, indexing="ij")
  person, relation = domain_fact(fc, fact.ravel())
  return fact_world.probe(fc, DOMAIN_WORLD, person, relation, template.ravel())


def domain_probe(fc: FactConfig) -> fact_world.Probe:
  """Every domain fact in every template (for stored bits, as capacity.py reads them), fact-major."""
  fact, template = np.meshgrid(np.arange(domain_facts(fc)), np.arange(fc.templates), indexing="ij")
  person, relation = domain_fact(fc, fact.ravel())
  return fact_world.probe(fc, DOMAIN_WORLD, person, relation, template.ravel())


def above_chance(accuracy, choices: int):
  """(acc − 1/k) / (1 − 1/k): 0 at chance, 1 when every question is answered."""
  return (np.asarray(accuracy, np.float64) - 1.0 / choices) / (1.0 - 1.0 / choices)


# ---------------------------------------------------------------------------
# The task


class InfusionLMTask(fact_world.FactLMTask):
  """task.kind = "infusion_lm": next-token cross-entropy on world 0's stream with the domain infused."""

  def sample(self, cfg, member, step, batch_size):
    return sample(cfg.facts, member.data_seed, member.infuse_exposures, cfg.train.steps, step, batch_size)

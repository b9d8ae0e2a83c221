"""A synthetic fact world: persons × relations → values, rendered by paraphrase templates into token
sequences mixed with bigram filler, sampled as a pure function of (data seed, step) inside jit.

Every sequence is one BOS token and `sentences` sentences of 5 + k tokens, k = `name_tokens`. A fact
sentence in template t reads `a_t NAME b_t REL_{r,t} VALUE .`: the frame words a_t, b_t and the
relation word REL_{r,t} differ per template, so the templates are paraphrases that the model can
only tie together through the facts they share. A filler sentence is a walk of 4 + k tokens on the
world's bigram table, then `.`, so every sentence has the same length. Persons are exposed with
Zipf weights, so frequent persons' facts are learnt first and rare ones late.

NAME is one token per person when k = 1 (the world as it was first built: a person's facts can then
sit in its own embedding row). With k > 1 it is k tokens, the j-th from pool j of `name_pool`
tokens; the k-tuples are unique per person and drawn once from `world_seed`, and both worlds and
the fictional persons share the pools, so every name token is shared by many persons and a fact
must be stored in the network's weights, not in an embedding row (Allen-Zhu and Li 2024).

Two worlds share the vocabulary and templates but have disjoint persons, their own fact tables and
their own filler tables: world 0 is the pretraining corpus, world 1 the new domain of continual
learning. Each world also owns fictional persons that never occur in its normal stream; with
`inject_every` > 0 their facts are injected into the first rows of the batch at every multiple of
`inject_every` (Kim et al. 2025, App. B): the *paraphrase* split at every injection, cycling over
the seen templates 0..T−2, the *once* split at the first injection only, in template 0. Template
T−1 is never injected, so it probes generalisation; template 0 probes memorisation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from icl_lab.config import Config, FactConfig
from icl_lab.tasks.base import stream_key
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch

BOS, DOT = 0, 1
SENTENCE = 6  # tokens per sentence with one-token names (`sentence_len` in general)
VALUE_POS = 4  # the value's index within a fact sentence with one-token names (`value_pos`)
NUM_WORLDS = 2
_WORLD_STREAM, _SEQ_STREAM = 20, 21  # disjoint from the regression and bigram streams
_NAME_STREAM = 22  # the multi-token names' draw (numpy: it is a table fixed before any trace)


class Vocab(NamedTuple):
  """The first token id of each block of the shared vocabulary, and its size."""

  frames: int  # 2 per template
  relation_words: int  # one per (relation, template)
  values: int  # `values` per relation
  filler: int
  persons: int  # one-token names: per world, the normal persons then the fictional ones; else the name pools
  size: int


def persons_per_world(fc: FactConfig) -> int:
  return fc.persons + fc.paraphrase_facts + fc.once_facts


def vocab(fc: FactConfig) -> Vocab:
  frames = 2
  relation_words = frames + 2 * fc.templates
  values = relation_words + fc.relations * fc.templates
  filler = values + fc.relations * fc.values
  persons = filler + fc.filler_vocab
  names = NUM_WORLDS * persons_per_world(fc) if fc.name_tokens == 1 else fc.name_tokens * fc.name_pool
  return Vocab(frames, relation_words, values, filler, persons, persons + names)


def vocab_size(fc: FactConfig) -> int:
  return vocab(fc).size


def sentence_len(fc: FactConfig) -> int:
  """Tokens per sentence: `a NAME b R V .` with a name of `name_tokens` tokens."""
  return SENTENCE - 1 + fc.name_tokens


def value_pos(fc: FactConfig) -> int:
  """The value's index within a fact sentence."""
  return VALUE_POS - 1 + fc.name_tokens


def seq_len(fc: FactConfig) -> int:
  """Tokens per sequence; the model reads seq_len − 1 of them."""
  return 1 + sentence_len(fc) * fc.sentences


# ---------------------------------------------------------------------------
# A world's content: fixed by (world_seed, world), never by the data seed


def _world_key(fc: FactConfig, world: int) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(fc.world_seed), _WORLD_STREAM), world)


def fact_values_PxR(fc: FactConfig, world: int) -> jax.Array:
  """The world's facts: the value index (in [0, values)) of every person and relation."""
  shape = (persons_per_world(fc), fc.relations)
  return jax.random.randint(jax.random.fold_in(_world_key(fc, world), 0), shape, 0, fc.values)


def filler_successors_FxK(fc: FactConfig, world: int) -> jax.Array:
  """The world's filler table: each filler token's allowed successors (indices into the filler block)."""
  key = jax.random.fold_in(_world_key(fc, world), 1)
  scores_FxF = jax.random.uniform(key, (fc.filler_vocab, fc.filler_vocab))
  return jnp.argsort(scores_FxF, axis=-1)[:, : fc.filler_branching].astype(jnp.int32)


@functools.lru_cache(maxsize=32)
def _name_digits(world_seed: int, persons_all: int, name_tokens: int, name_pool: int) -> np.ndarray:
  """digits_NxK: each person's index into every pool, the k-tuples distinct (N = both worlds' persons)."""
  rng = np.random.default_rng((world_seed, _NAME_STREAM))
  flat_N = rng.choice(name_pool ** name_tokens, size=persons_all, replace=False)
  digits_NxK = (flat_N[:, None] // name_pool ** np.arange(name_tokens - 1, -1, -1)) % name_pool
  digits_NxK.flags.writeable = False  # cached: shared by every caller
  return digits_NxK


def name_table(fc: FactConfig) -> np.ndarray:
  """names_NxK: the name token ids of every person of both worlds (world w's person p at row
  w·persons_per_world + p), K = `name_tokens`. A constant, so it is the same inside jit."""
  v, n = vocab(fc), NUM_WORLDS * persons_per_world(fc)
  if fc.name_tokens == 1:
    return (v.persons + np.arange(n, dtype=np.int32))[:, None]
  if fc.name_pool ** fc.name_tokens < n:
    raise ValueError(f"{fc.name_pool}^{fc.name_tokens} names cannot name {n} persons")
  digits_NxK = _name_digits(fc.world_seed, n, fc.name_tokens, fc.name_pool)
  return (v.persons + fc.name_pool * np.arange(fc.name_tokens) + digits_NxK).astype(np.int32)


def person_names(fc: FactConfig, world: int, person) -> jax.Array:
  """names_...xK: the name tokens of `person` (an index into the world's persons)."""
  return jnp.asarray(name_table(fc))[world * persons_per_world(fc) + jnp.asarray(person, jnp.int32)]


def fact_sentences(fc: FactConfig, world: int, person, relation, template) -> jax.Array:
  """tokens_...xL (L = sentence_len) of the facts (person, relation) in `template`; person indexes
  the world's persons."""
  v = vocab(fc)
  person, relation, template = (jnp.asarray(a, jnp.int32) for a in (person, relation, template))
  value = fact_values_PxR(fc, world)[person, relation]
  names_xK = person_names(fc, world, person)
  cols = [v.frames + 2 * template, *(names_xK[..., j] for j in range(fc.name_tokens)), v.frames + 2 * template + 1,
          v.relation_words + relation * fc.templates + template, v.values + relation * fc.values + value,
          jnp.full_like(person, DOT)]
  return jnp.stack(cols, axis=-1).astype(jnp.int32)


def filler_sentences(fc: FactConfig, world: int, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """tokens_...xL: a uniform first filler token, L − 2 steps on the world's bigram table, then `.`."""
  table_FxK = filler_successors_FxK(fc, world)
  tok = jax.random.randint(jax.random.fold_in(key, 0), shape, 0, fc.filler_vocab)
  # One successor choice per step of the walk, leading axis the step.
  steps = sentence_len(fc) - 2
  choices = jax.random.randint(jax.random.fold_in(key, 1), (steps, *shape), 0, fc.filler_branching)
  walk = [tok]
  for i in range(steps):
    tok = table_FxK[tok, choices[i]]
    walk.append(tok)
  words = jnp.stack(walk, axis=-1) + vocab(fc).filler
  return jnp.concatenate([words, jnp.full((*shape, 1), DOT)], axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Injected fictional facts


def fictional_facts(fc: FactConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(person, relation, is_paraphrase) of every fictional fact: the paraphrase split, then the once
  split; fact j is about the world's fictional person `persons + j`, relation j mod R."""
  j = np.arange(fc.paraphrase_facts + fc.once_facts)
  return fc.persons + j, j % fc.relations, j < fc.paraphrase_facts


def injection_rows(fc: FactConfig) -> int:
  """Batch rows that an injection step rewrites (all fictional facts, `sentences` per row)."""
  n = fc.paraphrase_facts + fc.once_facts
  return -(-n // fc.sentences) if fc.inject_every and n else 0


def _inject(fc: FactConfig, world: int, sent_BxSxL: jax.Array, step, key: jax.Array) -> jax.Array:
  rows = injection_rows(fc)
  if rows == 0:
    return sent_BxSxL
  if sent_BxSxL.shape[0] < rows:
    raise ValueError(f"the batch of {sent_BxSxL.shape[0]} rows cannot hold the {rows} rows of injected facts")
  person_N, relation_N, para_N = (jnp.asarray(a) for a in fictional_facts(fc))
  event = step // fc.inject_every
  template_N = jnp.where(para_N, event % (fc.templates - 1), 0)
  facts_NxL = fact_sentences(fc, world, person_N, relation_N, template_N)
  active_N = (para_N | (event == 0)) & (step % fc.inject_every == 0)
  slots, n, length = rows * fc.sentences, person_N.shape[0], sentence_len(fc)
  facts_ZxL = jnp.concatenate([facts_NxL, jnp.zeros((slots - n, length), jnp.int32)])
  active_Z = jnp.concatenate([active_N, jnp.zeros((slots - n,), bool)])
  # A fresh order per injection, so no fact is tied to one position in the sequence.
  perm_Z = jax.random.permutation(key, slots)
  facts_ZxL, active_Z = facts_ZxL[perm_Z], active_Z[perm_Z]
  head_ZxL = sent_BxSxL[:rows].reshape(slots, length)
  head_ZxL = jnp.where(active_Z[:, None], facts_ZxL, head_ZxL)
  return sent_BxSxL.at[:rows].set(head_ZxL.reshape(rows, fc.sentences, length))


# ---------------------------------------------------------------------------
# The stream


def zipf_probs_P(fc: FactConfig) -> np.ndarray:
  """The exact exposure probability of each normal person, (i + 1)^-zipf normalised (float64)."""
  weights_P = np.arange(1, fc.persons + 1, dtype=np.float64) ** -fc.zipf
  return weights_P / weights_P.sum()


@functools.lru_cache(maxsize=32)
def _zipf_thresholds(persons: int, zipf: float) -> np.ndarray:
  """thresholds_Q (Q = P − 1, uint32): the cumulative Zipf probabilities times 2^32, rounded, so a
  uniform 32-bit draw u picks person #{i : thresholds[i] <= u}. Each probability is then off by
  at most 2^-32; float32 uniforms (2^-23 apart) would be off by about 2% for the rarest of 13,500
  persons. The last cumulative entry (exactly 1, i.e. 2^32) is left out: no draw reaches it, which
  clips the result to P − 1."""
  weights_P = np.arange(1, persons + 1, dtype=np.float64) ** -zipf
  cdf_P = np.cumsum(weights_P)
  cdf_P /= cdf_P[-1]
  thresholds_Q = np.round(cdf_P[:-1] * 2.0 ** 32).astype(np.uint64)
  thresholds_Q = np.minimum(thresholds_Q, 2 ** 32 - 1).astype(np.uint32)
  thresholds_Q.flags.writeable = False  # cached: shared by every caller
  return thresholds_Q


def draw_persons(fc: FactConfig, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """person_...: normal persons (indices into the world's persons) drawn with Zipf weights, by
  `fc.person_draw`."""
  if fc.person_draw == "categorical":
    zipf_logits_P = -fc.zipf * jnp.log(jnp.arange(1, fc.persons + 1, dtype=jnp.float32))
    return jax.random.categorical(key, zipf_logits_P, shape=shape)
  if fc.person_draw != "inverse_cdf":
    raise ValueError(f"facts.person_draw={fc.person_draw!r} must be 'categorical' or 'inverse_cdf'")
  if fc.persons == 1:
    return jnp.zeros(shape, jnp.int32)
  bits = jax.random.bits(key, shape, jnp.uint32)
  thresholds_Q = jnp.asarray(_zipf_thresholds(fc.persons, fc.zipf))
  return jnp.searchsorted(thresholds_Q, bits, side="right").astype(jnp.int32)


def sample(fc: FactConfig, seed, step, batch_size: int, world: int | None = None) -> TokenBatch:
  """B sequences of the world's stream (default `fc.world`) at `step`. Pure and jit-friendly."""
  world = fc.world if world is None else world
  key = jax.random.fold_in(stream_key(seed, _SEQ_STREAM, step), world)
  sub = lambda i: jax.random.fold_in(key, i)
  shape = (batch_size, fc.sentences)
  is_fact_BxS = jax.random.uniform(sub(0), shape) < fc.fact_frac
  person_BxS = draw_persons(fc, sub(1), shape)
  relation_BxS = jax.random.randint(sub(2), shape, 0, fc.relations)
  template_BxS = jax.random.randint(sub(3), shape, 0, fc.templates)
  facts_BxSxL = fact_sentences(fc, world, person_BxS, relation_BxS, template_BxS)
  sent_BxSxL = jnp.where(is_fact_BxS[..., None], facts_BxSxL, filler_sentences(fc, world, sub(4), shape))
  sent_BxSxL = _inject(fc, world, sent_BxSxL, step, sub(5))
  ids_BxT = jnp.concatenate([jnp.full((batch_size, 1), BOS, jnp.int32), sent_BxSxL.reshape(batch_size, -1)], 1)
  return TokenBatch(ids_BxT, jnp.ones(ids_BxT.shape, jnp.float32))


# One compiled sampler instead of hundreds of eager ops (the results are the same bits).
_sample_jit = jax.jit(sample, static_argnames=("fc", "batch_size", "world"))


def first_batches(cfg: Config, num_sequences: int) -> jax.Array:
  """ids_NxT: the first ⌈N / batch⌉ training batches of `cfg`'s stream (seen by every checkpoint)."""
  b = cfg.train.batch_size
  steps = -(-num_sequences // b)
  ids = [_sample_jit(cfg.facts, cfg.train.data_seed, s, b).ids_BxT for s in range(steps)]
  return jnp.concatenate(ids)[:num_sequences]


# ---------------------------------------------------------------------------
# Probes


class Probe(NamedTuple):
  """Single-sentence prompts `BOS a NAME b R` whose next token is a fact's value."""

  ids_NxL: np.ndarray  # BOS and the whole sentence `... V .`; the model reads all but the last 2
  target_N: np.ndarray  # the value's token id
  candidates_NxC: np.ndarray  # the token ids of every value of the fact's relation


def probe(fc: FactConfig, world: int, person, relation, template) -> Probe:
  sent_NxL = np.asarray(fact_sentences(fc, world, person, relation, template))
  ids_NxL = np.concatenate([np.full((sent_NxL.shape[0], 1), BOS, np.int32), sent_NxL], axis=1)
  first = vocab(fc).values + np.asarray(relation)[:, None] * fc.values
  return Probe(ids_NxL, sent_NxL[:, value_pos(fc)], first + np.arange(fc.values))


def known_probe(fc: FactConfig, world: int = 0, persons: int | None = None) -> Probe:
  """Every normal fact of the world in every template: the pre-existing knowledge. With `persons`,
  only the facts of that many persons, drawn once without replacement (fixed by world_seed, so
  every model is scored on the same ones), for worlds too large to score whole."""
  chosen = np.arange(fc.persons)
  if persons is not None and persons < fc.persons:
    chosen = np.sort(np.random.default_rng((fc.world_seed, world)).choice(fc.persons, persons, replace=False))
  p, r, t = np.meshgrid(chosen, np.arange(fc.relations), np.arange(fc.templates), indexing="ij")
  return probe(fc, world, p.ravel(), r.ravel(), t.ravel())


def fictional_probe(fc: FactConfig, split: str, kind: str, world: int = 1) -> Probe:
  """The injected facts of one split ("paraphrase" or "once") in a seen template ("memorisation",
  template 0) or the held-out one ("generalisation", template T−1)."""
  person, relation, para = fictional_facts(fc)
  keep = para if split == "paraphrase" else ~para
  template = {"memorisation": 0, "generalisation": fc.templates - 1}[kind]
  return probe(fc, world, person[keep], relation[keep], np.full(int(keep.sum()), template))


@nnx.jit
def _last_logits(model, ids_NxT):
  return model(ids_NxT)[:, -1]


def score(model, pr: Probe, chunk: int = 1024, items: bool = False) -> dict:
  """Mean log-probability of the value token (over the whole vocabulary) and the accuracy of
  picking it among its relation's candidate values (a multiple-choice reading of recall). With
  `items`, also each prompt's log-probability and hit (for bootstrap intervals)."""
  forward = _last_logits if isinstance(model, nnx.Module) else lambda m, ids: m(ids)[:, -1]
  logp, hits = [], []
  for i in range(0, len(pr.target_N), chunk):
    ids = jnp.asarray(pr.ids_NxL[i:i + chunk, :-2])  # every sentence ends `V .`
    logits_NxV = forward(model, ids).astype(jnp.float32)
    logp_NxV = np.asarray(jax.nn.log_softmax(logits_NxV, axis=-1), np.float64)
    n = np.arange(len(ids))
    logp.append(logp_NxV[n, pr.target_N[i:i + chunk]])
    cand = pr.candidates_NxC[i:i + chunk]
    hits.append(cand[n, logp_NxV[n[:, None], cand].argmax(-1)] == pr.target_N[i:i + chunk])
  logp_N, hits_N = np.concatenate(logp), np.concatenate(hits)
  out = {"logprob": float(logp_N.mean()), "accuracy": float(hits_N.mean()), "n": int(len(pr.target_N))}
  if items:
    out.update(logprob_N=logp_N, hits_N=hits_N)
  return out


# ---------------------------------------------------------------------------
# The task


class FactLMTask(NextTokenTask):
  """task.kind = "fact_lm": next-token cross-entropy over every position of the world's stream."""

  length_hint = "facts.sentences or train.batch_size"

  def stream_shape(self, cfg: Config) -> tuple[int, int]:
    return vocab_size(cfg.facts), seq_len(cfg.facts)

  def sample(self, cfg, member, step, batch_size):
    return sample(cfg.facts, member.data_seed, step, batch_size)

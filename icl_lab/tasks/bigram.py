"""A token-level language-model task on a toy bigram stream (task.kind = "token_lm"): the lab's
blocks over token ids, batches a pure function of (data seed, step) like the regression prompts."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from icl_lab.config import Config, LMConfig
from icl_lab.tasks.base import stream_key
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch

_TABLE_STREAM, _SEQ_STREAM = 10, 11  # disjoint from the regression streams


def successors_VxK(cfg: LMConfig, seed) -> jax.Array:
  """The bigram stream's table: each token's `branching` allowed next tokens (fixed per seed)."""
  key = jax.random.fold_in(jax.random.key(seed), _TABLE_STREAM)
  scores_VxV = jax.random.uniform(key, (cfg.vocab_size, cfg.vocab_size))
  return jnp.argsort(scores_VxV, axis=-1)[:, : cfg.branching].astype(jnp.int32)


def sample_bigram(cfg: LMConfig, seed, step, batch_size: int) -> TokenBatch:
  """Sequences that start at a uniform token and move to a uniform allowed successor."""
  table_VxK = successors_VxK(cfg, seed)
  key = stream_key(seed, _SEQ_STREAM, step)
  first_B = jax.random.randint(jax.random.fold_in(key, 0), (batch_size,), 0, cfg.vocab_size)
  choice_TxB = jax.random.randint(jax.random.fold_in(key, 1), (cfg.seq_len - 1, batch_size), 0,
                                  cfg.branching)

  def step_fn(tok_B, choice_B):
    nxt_B = table_VxK[tok_B, choice_B]
    return nxt_B, nxt_B

  _, rest_TxB = jax.lax.scan(step_fn, first_B, choice_TxB)
  ids_BxT = jnp.concatenate([first_B[:, None], rest_TxB.T], axis=1).astype(jnp.int32)
  return TokenBatch(ids_BxT, jnp.ones(ids_BxT.shape, jnp.float32))


class TokenLMTask(NextTokenTask):
  """task.kind = "token_lm"."""

  length_hint = "lm.seq_len or train.batch_size"

  def stream_shape(self, cfg: Config) -> tuple[int, int]:
    return cfg.lm.vocab_size, cfg.lm.seq_len

  def sample(self, cfg, member, step, batch_size):
    return sample_bigram(cfg.lm, member.data_seed, step, batch_size)


def best_loss(cfg: LMConfig) -> float:
  """The bigram stream's entropy rate: the lowest reachable mean loss (the first position aside)."""
  return float(jnp.log(cfg.branching))

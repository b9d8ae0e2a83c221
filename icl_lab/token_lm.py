"""A token-level language-model task: the lab's blocks over token ids, cross-entropy on masked
positions, batches a pure function of (data seed, step) like the regression prompts."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from icl_lab import model as model_lib
from icl_lab import task_api
from icl_lab.config import Config, LMConfig
from icl_lab.tasks import stream_key

_TABLE_STREAM, _SEQ_STREAM = 10, 11  # disjoint from the regression streams


class TokenBatch(NamedTuple):
  ids_BxT: jax.Array  # int32 tokens; the model reads [:, :-1] and predicts [:, 1:]
  mask_BxT: jax.Array  # float32, 1 where the next-token loss counts (length T − 1 is used)


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


def masked_cross_entropy(logits_BxTxV, targets_BxT, mask_BxT) -> jax.Array:
  """Mean next-token cross-entropy (nats) over the positions where mask is 1."""
  ce_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), targets_BxT)
  return jnp.sum(ce_BxT * mask_BxT) / jnp.maximum(jnp.sum(mask_BxT), 1.0)


class NextTokenTask:
  """Next-token cross-entropy on the masked positions of a token stream, through the lab's
  TokenTransformer; a subclass names its stream (`stream_shape`) and samples it (`sample`)."""

  length_hint = "train.batch_size"  # the config keys that set a batch's length, for the memory refusal

  def stream_shape(self, cfg: Config) -> tuple[int, int]:
    """(vocabulary size, tokens per sequence)."""
    raise NotImplementedError

  def build_model(self, cfg: Config, seed: int):
    from flax import nnx

    vocab, length = self.stream_shape(cfg)
    return model_lib.TokenTransformer(cfg.model, vocab, length - 1, rngs=nnx.Rngs(seed),
                                      dtype=task_api.compute_dtype(cfg))

  def loss(self, model, batch, cfg, member, step):
    logits_BxTxV = model(batch.ids_BxT[:, :-1])
    return masked_cross_entropy(logits_BxTxV, batch.ids_BxT[:, 1:], batch.mask_BxT[:, 1:])

  def sequence_len(self, cfg: Config) -> int:
    return self.stream_shape(cfg)[1] - 1

  def output_dim(self, cfg: Config) -> int:
    return self.stream_shape(cfg)[0]


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

"""Next-token prediction over a token stream: the batch type, the masked cross-entropy and the
task base that the bigram and fact-world tasks share (their own module names the stream)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from icl_lab.config import Config
from icl_lab.models import transformer as model_lib
from icl_lab.tasks.base import compute_dtype


class TokenBatch(NamedTuple):
  ids_BxT: jax.Array  # int32 tokens; the model reads [:, :-1] and predicts [:, 1:]
  mask_BxT: jax.Array  # float32, 1 where the next-token loss counts (length T − 1 is used)


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
                                      dtype=compute_dtype(cfg))

  def loss(self, model, batch, cfg, member, step):
    logits_BxTxV = model(batch.ids_BxT[:, :-1])
    return masked_cross_entropy(logits_BxTxV, batch.ids_BxT[:, 1:], batch.mask_BxT[:, 1:])

  def sequence_len(self, cfg: Config) -> int:
    return self.stream_shape(cfg)[1] - 1

  def output_dim(self, cfg: Config) -> int:
    return self.stream_shape(cfg)[0]

"""A TokenTransformer whose read-out is its token embedding (logits = h Eᵀ + b).

The knowledge-graph link predictors generalise only with answers scored against the entity
embeddings (docs/knowledge_graphs.md, "A screen behind the design"); this is the same choice for
the transformer that reads triples (`icl_lab.tasks.kg_tokens`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab.config import ModelConfig
from icl_lab.models.transformer import TokenTransformer


class TiedReadOut(nnx.Module):
  def __init__(self, embed: nnx.Embed, vocab_size: int):
    self.embed = embed  # shared with the read-in, not a copy
    self.bias_V = nnx.Param(jnp.zeros((vocab_size,)))

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    return self.embed.attend(h_BxTxH) + self.bias_V[...]


class TiedTokenTransformer(TokenTransformer):
  def __init__(self, cfg: ModelConfig, vocab_size: int, max_len: int, *, rngs: nnx.Rngs, dtype=None):
    super().__init__(cfg, vocab_size, max_len, rngs=rngs, dtype=dtype)
    self.read_out = TiedReadOut(self.read_in, vocab_size)

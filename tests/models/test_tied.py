"""The tied TokenTransformer: its read-out is its embedding, one parameter shared by both."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from icl_lab.config import ModelConfig
from icl_lab.models.tied import TiedTokenTransformer


def test_logits_score_the_embedding_which_is_stored_once():
  model = TiedTokenTransformer(ModelConfig(layers=1, hidden=8, heads=2), 11, 5, rngs=nnx.Rngs(0))
  ids = jnp.array([[1, 2, 3, 4]])
  logits, hidden = model(ids, return_hidden=True)
  emb = model.read_in.embedding[...]
  np.testing.assert_allclose(logits, model.ln_f(hidden[-1]) @ emb.T + model.read_out.bias_V[...], atol=1e-5)
  params = nnx.to_pure_dict(nnx.split(model)[1])
  assert sum(a.size == emb.size and a.shape == emb.shape for a in jax.tree.leaves(params)) == 1
  # A gradient step on the shared embedding moves the read-out too (merge keeps the sharing).
  graphdef, state = nnx.split(model)
  moved = jax.tree.map(lambda a: a + 1.0 if a.shape == emb.shape else a, nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, moved)
  merged = nnx.merge(graphdef, state)
  np.testing.assert_allclose(merged.read_out.embed.embedding[...], emb + 1.0)

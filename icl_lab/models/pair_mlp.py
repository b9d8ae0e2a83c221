"""A pair classifier with node embeddings (Baek, Li and Tegmark 2024, v2's toy): the embeddings of
nodes i and j, concatenated (or, with `difference`, E_j − E_i alone), through `layers` ReLU layers
of width W, to one logit for "j is a descendant of i". With D = 2 the learned embedding can be drawn
and its cone structure scored."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class PairMLP(nnx.Module):
  def __init__(self, nodes: int, dim: int, width: int, layers: int = 2, *, difference: bool = False,
               rngs: nnx.Rngs):
    if min(nodes, dim, width, layers) < 1:
      raise ValueError(f"PairMLP needs positive sizes, got N={nodes} D={dim} W={width} L={layers}")
    self.node = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (nodes, dim)))
    self.difference = difference
    sizes = [dim if difference else 2 * dim] + [width] * layers
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = nnx.Linear(width, 1, rngs=rngs)

  def __call__(self, i_B: jax.Array, j_B: jax.Array) -> jax.Array:
    """logit_B that j_B is a descendant of i_B."""
    emb_NxD = self.node[...]
    if self.difference:  # translation-invariant: the model sees only E_j − E_i
      x_BxH = emb_NxD[j_B] - emb_NxD[i_B]
    else:
      x_BxH = jnp.concatenate([emb_NxD[i_B], emb_NxD[j_B]], axis=-1)
    for layer in self.hidden:
      x_BxH = jax.nn.relu(layer(x_BxH))
    return self.out(x_BxH)[:, 0]

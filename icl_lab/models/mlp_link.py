"""An MLP link predictor (Hinton 1986; Baek, Li and Tegmark 2024's toy): entity and relation
embeddings, concatenated, through `layers` ReLU layers of width W, to logits over the E entities:
a dense read-out (W -> E), or with `tied` a read-out to D dimensions scored against every entity's
embedding (so an entity's one vector serves as head and as answer).

The entity embedding is the representation the study compares across models: `embed` gives it and
`head` maps any D-vector in its place (stitching feeds another model's mapped embeddings there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MLPLink(nnx.Module):
  def __init__(self, entities: int, relations: int, dim: int, width: int, layers: int = 1, *, tied: bool = False,
               rngs: nnx.Rngs):
    if min(entities, relations, dim, width, layers) < 1:
      raise ValueError(f"MLPLink needs positive sizes, got E={entities} R={relations} D={dim} W={width} L={layers}")
    init = nnx.initializers.normal(1.0)  # unit-scale embeddings, like a one-hot input through a dense layer
    self.entity = nnx.Param(init(rngs.params(), (entities, dim)))
    self.relation = nnx.Param(init(rngs.params(), (relations, dim)))
    sizes = [2 * dim] + [width] * layers
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.tied = tied
    self.out = nnx.Linear(width, dim if tied else entities, rngs=rngs)

  def embed(self, h_B: jax.Array) -> jax.Array:
    """emb_BxD: the entity representations of heads h_B."""
    return self.entity[...][h_B]

  def features(self, emb_BxD: jax.Array, r_B: jax.Array) -> jax.Array:
    """The last hidden layer, act_BxW, for head representations emb_BxD and relations r_B."""
    x_Bx2D = jnp.concatenate([emb_BxD, self.relation[...][r_B]], axis=-1)
    for layer in self.hidden:
      x_Bx2D = jax.nn.relu(layer(x_Bx2D))
    return x_Bx2D

  def head(self, emb_BxD: jax.Array, r_B: jax.Array) -> jax.Array:
    """logits_BxE from head representations (the model's own, or a donor's mapped ones)."""
    out_BxO = self.out(self.features(emb_BxD, r_B))
    return out_BxO @ self.entity[...].T if self.tied else out_BxO

  def __call__(self, h_B: jax.Array, r_B: jax.Array) -> jax.Array:
    return self.head(self.embed(h_B), r_B)

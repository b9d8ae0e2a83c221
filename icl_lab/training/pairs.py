"""Training pair classifiers (`icl_lab.models.pair_mlp`) on a relation over N nodes: every ordered
pair i ≠ j each step (full batch), binary cross-entropy, AdamW at a constant rate; one vmapped
ensemble over init seeds."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from icl_lab.models.pair_mlp import PairMLP


@dataclasses.dataclass(frozen=True)
class PairTrain:
  dim: int = 2
  width: int = 64
  layers: int = 2
  lr: float = 1e-2
  weight_decay: float = 0.0
  steps: int = 3000
  difference: bool = False  # the MLP reads E_j − E_i instead of [E_i, E_j]


def pair_loss(model: PairMLP, i_P, j_P, label_P) -> jax.Array:
  return optax.sigmoid_binary_cross_entropy(model(i_P, j_P), label_P).mean()


def train_pairs(rel_NxN, spec: PairTrain, seeds) -> dict[str, np.ndarray]:
  """Trains one model per seed on every ordered pair i ≠ j; returns their node embeddings
  (emb_KxNxD), pair accuracy (acc_K) and final loss (loss_K)."""
  rel_NxN = np.asarray(rel_NxN, bool)
  n = len(rel_NxN)
  i_P, j_P = (jnp.asarray(a, jnp.int32) for a in np.nonzero(~np.eye(n, dtype=bool)))
  label_P = jnp.asarray(rel_NxN[np.asarray(i_P), np.asarray(j_P)], jnp.float32)
  splits = [nnx.split(PairMLP(n, spec.dim, spec.width, spec.layers, difference=spec.difference,
                                    rngs=nnx.Rngs(int(s)))) for s in seeds]
  graphdef = splits[0][0]
  params_K = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.to_pure_dict(st) for _, st in splits])
  tx = optax.adamw(spec.lr, weight_decay=spec.weight_decay)
  loss_fn = lambda p: pair_loss(nnx.merge(graphdef, p), i_P, j_P, label_P)

  def member_step(params, opt):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  @jax.jit
  def train(params_K, opt_K):
    def one(carry, _):
      p, o, loss_K = jax.vmap(member_step)(*carry)
      return (p, o), loss_K
    (params_K, opt_K), loss_SxK = jax.lax.scan(one, (params_K, opt_K), None, length=spec.steps)
    return params_K, loss_SxK[-1]

  params_K, loss_K = train(params_K, jax.vmap(tx.init)(params_K))
  if not np.isfinite(np.asarray(loss_K)).all():
    raise FloatingPointError("pair-classifier loss is not finite: lower the learning rate")
  acc_K = jax.vmap(lambda p: ((nnx.merge(graphdef, p)(i_P, j_P) > 0) == (label_P > 0.5)).mean())(params_K)
  return {"emb_KxNxD": np.asarray(params_K["node"]), "acc_K": np.asarray(acc_K), "loss_K": np.asarray(loss_K)}

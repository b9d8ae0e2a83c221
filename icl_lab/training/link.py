"""Training many MLP link predictors at once on a family graph (`icl_lab.tasks.family_graph`).

Models of one shape (entities, dim, width, layers) train as one vmapped ensemble: each member has
its own init seed, weight decay and train/test masks over the queries, so seeds, weight decays,
data fractions and relation subsets share one jitted step. Training is full batch (every training
query each step, AdamW at a constant rate), `eval_every` steps fused with lax.scan between
evaluations. The loss of a query is the cross-entropy against the uniform distribution over its
answers; a query is answered correctly when the top-1 entity is one of its answers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from icl_lab.models.mlp_link import MLPLink
from icl_lab.tasks.family_graph import Graph


@dataclasses.dataclass(frozen=True)
class LinkTrain:
  dim: int = 16  # entity and relation embedding width D
  width: int = 64  # hidden width W
  layers: int = 1
  tied: bool = False  # score answers against the entity embeddings (MLPLink)
  lr: float = 3e-3
  b1: float = 0.9
  b2: float = 0.98  # the grokking literature's AdamW (Liu et al. 2022)
  steps: int = 3000
  eval_every: int = 100

  def __post_init__(self):
    if self.steps % self.eval_every:
      raise ValueError(f"steps={self.steps} must be a multiple of eval_every={self.eval_every}")


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """A trained ensemble: parameters stacked on a leading member axis K, and which queries each
  member answered correctly at each evaluation (accuracies are exact ratios of those counts)."""

  graphdef: Any
  params_K: Any  # pure dict, every leaf (K, ...)
  steps_C: np.ndarray  # evaluation steps (C of them, the first at 0)
  correct_KxCxQ: np.ndarray  # bool
  train_KxQ: np.ndarray  # bool masks
  test_KxQ: np.ndarray
  loss_KxC: np.ndarray

  @property
  def correct_KxQ(self) -> np.ndarray:
    """At the end of training."""
    return self.correct_KxCxQ[:, -1]

  @property
  def train_acc_KxC(self) -> np.ndarray:
    return self.pooled(range(len(self.train_KxQ)), self.train_KxQ, per_member=True)

  @property
  def test_acc_KxC(self) -> np.ndarray:
    return self.pooled(range(len(self.test_KxQ)), self.test_KxQ, per_member=True)

  def pooled(self, members, mask_KxQ, per_member: bool = False) -> np.ndarray:
    """Accuracy curve(s) over the queries of `mask_KxQ`: pooled over `members` (every query of
    every member counts once), or one row per member."""
    idx = list(members)
    hits_KxC = (self.correct_KxCxQ[idx] & mask_KxQ[idx][:, None, :]).sum(-1)
    n_K = mask_KxQ[idx].sum(-1)
    if per_member:
      return hits_KxC / np.maximum(n_K, 1)[:, None]
    return hits_KxC.sum(0) / max(int(n_K.sum()), 1)

  def model(self, k: int) -> MLPLink:
    return nnx.merge(self.graphdef, jax.tree.map(lambda a: a[k], self.params_K))


def build(g: Graph, spec: LinkTrain, seed: int) -> MLPLink:
  return MLPLink(g.num_entities, g.num_relations, spec.dim, spec.width, spec.layers, tied=spec.tied,
                rngs=nnx.Rngs(seed))


def query_loss(model: MLPLink, g: Graph, train_Q: jax.Array) -> jax.Array:
  """Mean over training queries of the cross-entropy to the uniform distribution over answers."""
  answers_QxE = jnp.asarray(g.answers_QxE, jnp.float32)
  target_QxE = answers_QxE / answers_QxE.sum(-1, keepdims=True)
  logp_QxE = jax.nn.log_softmax(model(jnp.asarray(g.heads_Q), jnp.asarray(g.rels_Q)))
  ce_Q = -(target_QxE * logp_QxE).sum(-1)
  return (ce_Q * train_Q).sum() / jnp.maximum(train_Q.sum(), 1)


def correct(logits_QxE: jax.Array, answers_QxE) -> jax.Array:
  """correct_Q: the top-1 entity is one of the query's answers."""
  top_Q = jnp.argmax(logits_QxE, axis=-1)
  return jnp.take_along_axis(jnp.asarray(answers_QxE), top_Q[:, None], axis=-1)[:, 0]


def train_ensemble(g: Graph, spec: LinkTrain, seeds, weight_decays, train_KxQ, test_KxQ) -> Ensemble:
  """Trains K members (one per row of the arguments) together; see the module docstring."""
  seeds = [int(s) for s in seeds]
  k = len(seeds)
  wd_K = jnp.asarray(weight_decays, jnp.float32)
  train_KxQ = jnp.asarray(train_KxQ, jnp.float32)
  test_KxQ = jnp.asarray(test_KxQ, jnp.float32)
  if wd_K.shape != (k,) or train_KxQ.shape != (k, g.num_queries) or test_KxQ.shape != train_KxQ.shape:
    raise ValueError(f"{k} seeds need {k} weight decays and ({k}, {g.num_queries}) masks")
  splits = [nnx.split(build(g, spec, s)) for s in seeds]
  graphdef = splits[0][0]
  params_K = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.to_pure_dict(st) for _, st in splits])
  heads_Q, rels_Q = jnp.asarray(g.heads_Q), jnp.asarray(g.rels_Q)

  def tx(wd):
    return optax.adamw(spec.lr, b1=spec.b1, b2=spec.b2, weight_decay=wd)

  opt_K = jax.vmap(lambda p: tx(0.0).init(p))(params_K)  # the state's structure does not depend on wd

  def member_step(params, opt, wd, train_Q):
    loss, grads = jax.value_and_grad(lambda p: query_loss(nnx.merge(graphdef, p), g, train_Q))(params)
    updates, opt = tx(wd).update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def chunk(params_K, opt_K):
    def one(carry, _):
      p, o, loss_K = jax.vmap(member_step)(*carry, wd_K, train_KxQ)
      return (p, o), loss_K
    (params_K, opt_K), loss_SxK = jax.lax.scan(one, (params_K, opt_K), None, length=spec.eval_every)
    return params_K, opt_K, loss_SxK[-1]

  @jax.jit
  def evaluate(params_K):
    return jax.vmap(lambda p: correct(nnx.merge(graphdef, p)(heads_Q, rels_Q), g.answers_QxE))(params_K)

  losses = [jax.vmap(lambda p, m: query_loss(nnx.merge(graphdef, p), g, m))(params_K, train_KxQ)]
  corrects = [evaluate(params_K)]
  for _ in range(spec.steps // spec.eval_every):
    params_K, opt_K, loss_K = chunk(params_K, opt_K)
    corrects.append(evaluate(params_K))
    losses.append(loss_K)
  loss_KxC = np.stack([np.asarray(x) for x in losses], axis=1)
  if not np.isfinite(loss_KxC[:, -1]).all():
    raise FloatingPointError("link-predictor loss is not finite: lower the learning rate")
  correct_KxCxQ = np.stack([np.asarray(c, bool) for c in corrects], axis=1)
  steps_C = np.arange(len(corrects)) * spec.eval_every
  return Ensemble(graphdef, params_K, steps_C, correct_KxCxQ, np.asarray(train_KxQ, bool), np.asarray(test_KxQ, bool),
                  loss_KxC)

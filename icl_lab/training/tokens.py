"""Training small ensembles of TokenTransformers in memory on a task whose batches the host draws.

The knowledge-graph token tasks (`icl_lab.tasks.kg_tokens`, `icl_lab.tasks.kg_context`) hold data
that a `Config` does not name (a graph, its split, a pool of families), so they train here rather
than in run folders, like the MLP link predictors of `training.link`. K members (one init seed and
one weight decay each) share every batch and train as one vmapped, jitted step; the loss is the
task's own (`NextTokenTask.loss`: masked next-token cross-entropy).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from icl_lab.config import Config, ModelConfig, TrainConfig
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch


@dataclasses.dataclass(frozen=True)
class TokenTrain:
  layers: int = 2
  hidden: int = 64
  heads: int = 4
  lr: float = 1e-3
  b2: float = 0.98
  warmup: int = 100
  steps: int = 2000
  batch_size: int = 128
  eval_every: int = 500

  def __post_init__(self):
    if self.steps <= 0 or self.eval_every <= 0 or self.steps % self.eval_every:
      raise ValueError(f"steps={self.steps} must be a positive multiple of eval_every={self.eval_every}")

  def config(self) -> Config:
    """The lab Config that NextTokenTask.build_model reads (model shape and compute dtype only)."""
    return Config(preset="kg", model=ModelConfig(layers=self.layers, hidden=self.hidden, heads=self.heads),
                  train=TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr))


@dataclasses.dataclass(frozen=True)
class TokenEnsemble:
  graphdef: Any
  params_K: Any  # pure dict, every leaf (K, ...)
  loss_KxC: np.ndarray  # training loss at each evaluation (the first at step 0 is not trained)
  steps_C: np.ndarray
  evals: list  # what `evaluate(model, k)` returned per evaluation, [C][K]
  wall_s: float

  def model(self, k: int) -> nnx.Module:
    return nnx.merge(self.graphdef, jax.tree.map(lambda a: a[k], self.params_K))


def train_tokens(task: NextTokenTask, spec: TokenTrain, seeds, weight_decays,
                 batch_fn: Callable[[int], TokenBatch], evaluate: Callable[[Callable], Any],
                 log: Callable[[str], None] | None = print) -> TokenEnsemble:
  """Trains one member per (seed, weight decay) on batch_fn(step) (numpy, shared by the members);
  `evaluate(forward)` runs on each member every `eval_every` steps and at the end, with
  forward(ids_BxT) -> logits_BxTxV that member's jitted forward pass."""
  cfg = spec.config()
  seeds = [int(s) for s in seeds]
  wd_K = jnp.asarray(weight_decays, jnp.float32)
  if wd_K.shape != (len(seeds),):
    raise ValueError(f"{len(seeds)} seeds need {len(seeds)} weight decays")
  splits = [nnx.split(task.build_model(cfg, s)) for s in seeds]
  graphdef = splits[0][0]
  params_K = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.to_pure_dict(st) for _, st in splits])
  sched = optax.warmup_cosine_decay_schedule(0.0, spec.lr, max(spec.warmup, 1), max(spec.steps, spec.warmup + 1))

  def tx(wd):
    return optax.adamw(sched, b1=0.9, b2=spec.b2, weight_decay=wd)

  opt_K = jax.vmap(lambda p: tx(0.0).init(p))(params_K)  # the state's structure does not depend on wd

  def member_step(params, opt, wd, batch):
    loss, grads = jax.value_and_grad(lambda p: task.loss(nnx.merge(graphdef, p), batch, cfg, None, 0))(params)
    updates, opt = tx(wd).update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  @jax.jit
  def step_fn(params_K, opt_K, batch):
    return jax.vmap(member_step, in_axes=(0, 0, 0, None))(params_K, opt_K, wd_K, batch)

  @jax.jit
  def loss_fn(params_K, batch):
    return jax.vmap(lambda p: task.loss(nnx.merge(graphdef, p), batch, cfg, None, 0))(params_K)

  @jax.jit
  def forward(params, ids_BxT):
    return nnx.merge(graphdef, params)(ids_BxT)

  def evaluate_all(params_K):
    out = []
    for k in range(len(seeds)):
      params = jax.tree.map(lambda a, k=k: a[k], params_K)
      out.append(evaluate(lambda ids, p=params: forward(p, ids)))
    return out

  t0 = time.perf_counter()
  first = jax.tree.map(jnp.asarray, batch_fn(0))
  losses, evals, steps = [np.asarray(loss_fn(params_K, first))], [evaluate_all(params_K)], [0]
  for step in range(spec.steps):
    batch = jax.tree.map(jnp.asarray, batch_fn(step))
    params_K, opt_K, loss_K = step_fn(params_K, opt_K, batch)
    if (step + 1) % spec.eval_every == 0:
      loss_K = np.asarray(loss_K)
      if not np.isfinite(loss_K).all():
        raise FloatingPointError(f"token-transformer loss is {loss_K} at step {step + 1}: lower the learning rate")
      losses.append(loss_K)
      evals.append(evaluate_all(params_K))
      steps.append(step + 1)
      if log:
        log(f"  step {step + 1}: loss " + " ".join(f"{x:.3f}" for x in loss_K)
            + f" ({time.perf_counter() - t0:.0f} s)")
  return TokenEnsemble(graphdef, params_K, np.stack(losses, axis=1), np.asarray(steps), evals,
                       time.perf_counter() - t0)

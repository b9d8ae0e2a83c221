"""von Oswald et al. (2023): one linear self-attention layer that is one step of GD.

Tokens pair each example, zᵢ = [xᵢ, yᵢ] ∈ ℝᵈ⁺¹, and the query for pair j is qⱼ = [xⱼ, 0]. The
layer (no softmax, no LayerNorm; W_KQ = W_Kᵀ W_Q and W_PV = P W_V merged) writes

  outⱼ = qⱼ + W_PV Σ_{i<j} zᵢ (zᵢᵀ W_KQ qⱼ),    ŷⱼ = (outⱼ)_y  (the query's y slot starts at 0).

With W_KQ = [[I, 0], [0, 0]] and W_PV = η·e_y e_yᵀ, ŷⱼ = η Σ_{i<j} yᵢ xᵢᵀxⱼ: the prediction of
w₁ = ηXᵀy, one GD step from w₀ = 0 on ½‖Xw − y‖² with rate η. The lab's learners.gd(α)
steps on the summed squared loss with w = 2αXᵀy, so η = 2α; the match is exact up to
float rounding (the layer and the learner sum the same products in a different order).

The pairing of x and y in one token is von Oswald's format; with the lab's interleaved tokens
a first layer would have to bring yᵢ next to xᵢ (see gd.gd_program for that route).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from icl_lab.analysis import learners
from icl_lab.config import TaskConfig
from icl_lab.tasks import regression


class LinearSelfAttention(nnx.Module):
  """ŷⱼ for every j from the pairs before it, as one LSA layer (see the module docstring)."""

  def __init__(self, d: int, *, rngs: nnx.Rngs, init_std: float = 0.1):
    e = d + 1
    self.d = d
    self.w_kq = nnx.Param(init_std * jax.random.normal(rngs.params(), (e, e)))
    self.w_pv = nnx.Param(init_std * jax.random.normal(rngs.params(), (e, e)))

  def __call__(self, xs_BxNxD: jax.Array, ys_BxN: jax.Array) -> jax.Array:
    z_BxNxE = jnp.concatenate([xs_BxNxD, ys_BxN[..., None]], -1)
    q_BxNxE = jnp.concatenate([xs_BxNxD, jnp.zeros_like(ys_BxN)[..., None]], -1)
    n = xs_BxNxD.shape[1]
    # scores[b, j, i] = zᵢᵀ W_KQ qⱼ over the pairs i < j only.
    scores_BxNxN = jnp.einsum("bie,ef,bjf->bji", z_BxNxE, self.w_kq[...], q_BxNxE)
    scores_BxNxN = jnp.where(jnp.tril(jnp.ones((n, n), bool), -1), scores_BxNxN, 0)
    values_BxNxE = jnp.einsum("fe,bie->bif", self.w_pv[...], z_BxNxE)
    out_BxNxE = q_BxNxE + jnp.einsum("bji,bif->bjf", scores_BxNxN, values_BxNxE)
    return out_BxNxE[..., -1]


def gd_weights(d: int, eta: float) -> tuple[np.ndarray, np.ndarray]:
  """(W_KQ, W_PV) of the construction: one GD step with rate η from w₀ = 0."""
  w_kq = np.zeros((d + 1, d + 1))
  w_kq[:d, :d] = np.eye(d)
  w_pv = np.zeros((d + 1, d + 1))
  w_pv[d, d] = eta
  return w_kq, w_pv


def gd_layer(d: int, eta: float, dtype=jnp.float32) -> LinearSelfAttention:
  layer = LinearSelfAttention(d, rngs=nnx.Rngs(0))
  w_kq, w_pv = gd_weights(d, eta)
  layer.w_kq[...] = jnp.asarray(w_kq, dtype)
  layer.w_pv[...] = jnp.asarray(w_pv, dtype)
  return layer


def optimal_eta(d: int, context: int) -> float:
  """The GD rate minimising E(y − ηxᵀXᵀy)² at a query after `context` pairs, x ~ N(0, I),
  w ~ N(0, I), no noise: E[yŝ] = Nd and E[ŝ²] = E tr((XᵀX)²) = Nd(N + d + 1), so
  η* = 1/(N + d + 1)."""
  return 1.0 / (context + d + 1)


def optimal_gd_loss(d: int, context: int) -> float:
  """E(y − η*ŝ)² = d − Nd/(N + d + 1) = d(d + 1)/(N + d + 1)."""
  return d * (d + 1) / (context + d + 1)


def _cosine(a, b) -> float:
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def alignment(layer: LinearSelfAttention, eta: float) -> dict[str, float]:
  """How close a layer's weights are to the construction's, up to the W_KQ ↔ W_PV scale.

  Only W_KQ[:, :d] (the query's y slot is 0) and W_PV's y row act on ŷ; the construction
  puts I in the x-x block of W_KQ and η in W_PV's (y, y) entry, zero elsewhere.
  """
  d = layer.d
  w_kq, w_pv = np.asarray(layer.w_kq[...], np.float64), np.asarray(layer.w_pv[...], np.float64)
  # (W_KQ, W_PV) → (cW_KQ, W_PV/c) leaves the layer unchanged, c < 0 included: fix the sign
  # by W_PV's (y, y) entry before comparing directions.
  sign = 1.0 if w_pv[d, d] >= 0 else -1.0
  kq_used, pv_row = sign * w_kq[:, :d], sign * w_pv[d]
  ref_kq, ref_pv = gd_weights(d, eta)
  eff_DxD = w_pv[d, d] * w_kq[:d, :d]  # the effective ηI: the scale cancels here
  return dict(
      cos_kq=_cosine(kq_used, ref_kq[:, :d]),
      cos_pv=_cosine(pv_row, ref_pv[d]),
      eta_effective=float(np.trace(eff_DxD) / d),
      eta_construction=float(eta),
      rel_err_effective=float(np.linalg.norm(eff_DxD - eta * np.eye(d)) / np.linalg.norm(eta * np.eye(d))),
  )


def query_loss(layer: LinearSelfAttention, xs_BxNxD, ys_BxN) -> jax.Array:
  """Squared error at the last pair of each prompt, which sees the N − 1 before it."""
  return jnp.mean((layer(xs_BxNxD, ys_BxN)[:, -1] - ys_BxN[:, -1]) ** 2)


def train(d: int, n: int, *, steps: int = 2000, batch: int = 256, lr: float = 3e-2,
          seed: int = 0, init_std: float = 0.1) -> tuple[LinearSelfAttention, list[float]]:
  """Adam on the query loss from random init, fresh prompts every step (regression.sample_batch)."""
  cfg = TaskConfig(dim=d, num_exemplars=n)
  layer = LinearSelfAttention(d, rngs=nnx.Rngs(seed), init_std=init_std)
  graphdef, params = nnx.split(layer)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  opt_state = tx.init(params)

  def loss_fn(params, step):
    batch_data = regression.sample_batch(cfg, seed, step, batch)
    return query_loss(nnx.merge(graphdef, params), batch_data.xs_BxNxD, batch_data.ys_BxN)

  @jax.jit
  def run(params, opt_state):
    def body(carry, step):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, step)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(steps))
    return params, losses

  params, losses = run(params, opt_state)
  return nnx.merge(graphdef, params), [float(v) for v in np.asarray(losses)]


def study(d: int = 8, n: int = 16, *, steps: int = 2000, batch: int = 256, lr: float = 3e-2,
          eval_batch: int = 8192, seed: int = 0) -> dict[str, Any]:
  """Train an LSA layer, then compare it with the GD(η*) construction on fresh prompts."""
  trained, losses = train(d, n, steps=steps, batch=batch, lr=lr, seed=seed)
  eta = optimal_eta(d, n - 1)
  constructed = gd_layer(d, eta)
  cfg = TaskConfig(dim=d, num_exemplars=n)
  ev = regression.sample_batch(cfg, seed + 1, 0, eval_batch)  # a seed training never used
  pred_t = trained(ev.xs_BxNxD, ev.ys_BxN)[:, -1]
  pred_c = constructed(ev.xs_BxNxD, ev.ys_BxN)[:, -1]
  # The construction against the lab's GD learner at every prefix (float32): rounding only.
  gd_BxN = learners.gd(ev.xs_BxNxD, ev.ys_BxN, alpha=eta / 2).preds_BxN
  exact_err = float(jnp.max(jnp.abs(constructed(ev.xs_BxNxD, ev.ys_BxN) - gd_BxN)))
  return dict(
      d=d, n=n, steps=steps, batch=batch, optimizer=f"adam, lr {lr} with cosine decay to 0",
      eta_star=eta,
      loss_trained=float(jnp.mean((pred_t - ev.ys_BxN[:, -1]) ** 2)),
      loss_construction=float(jnp.mean((pred_c - ev.ys_BxN[:, -1]) ** 2)),
      loss_construction_theory=optimal_gd_loss(d, n - 1),
      spd_over_d_trained_vs_construction=float(jnp.mean((pred_t - pred_c) ** 2) / d),
      construction_vs_gd_max_abs_err_float32=exact_err,
      gd_pred_max_abs=float(jnp.max(jnp.abs(gd_BxN))),
      train_loss_curve=losses[:: max(1, steps // 100)],
      **alignment(trained, eta),
  )

"""Reference learners for in-context linear regression, vectorised over prompts and prefixes.

Every learner maps (xs_BxNxD, ys_BxN) to a LearnerOutput. preds_BxN[:, i] predicts yᵢ from
the first i pairs only (none at i = 0), evaluated at xᵢ, so a learner has the same causal
contract and call signature as `tasks.regression.predict`. weights_BxNxD[:, i] is the weight vector fitted
on those i pairs for learners that are linear in the query (None for k-NN).

Min-norm least squares (OLS) and ridge for all prefixes at once
----------------------------------------------------------------
One `lax.scan` over positions, batched over prompts, carries two factorisations that are each
backward stable, so float32 results keep an error of order κ(X)·eps:

1. An orthonormal basis Q of span(x₀..x_{i-1}), grown by Gram–Schmidt with one
   re-orthogonalisation pass ("twice is enough"). A new xᵢ opens a new basis direction only
   when its component outside the span exceeds rtol·‖xᵢ‖ with rtol = 10·d·eps. That is the
   rank decision, the analogue of pinv's relative singular-value cutoff. It sits at the
   rounding floor of the projection, so an ill-conditioned but full-rank prefix (i ≈ d, κ in
   the thousands) is still solved in full rather than truncated.
2. A Givens QR, R c = z, of the prefix expressed in basis coordinates ξⱼ = Qᵀxⱼ.

Since Q has orthonormal columns, ‖w‖ = ‖c‖, and the min-norm solution w = X⁺y lies in span(Q):
w = Q c with c the ordinary least-squares solution in basis coordinates, which have full
column rank by construction. Directions never seen keep exactly zero rows and columns, so
the singular case i < d needs no cutoff on computed singular values and cannot amplify
rounding noise. Ridge uses the same scan with R started at √λ·I, the QR of the augmented
system [√λI; X]; that is the stable form of (XᵀX + λI)⁻¹Xᵀy, which never forms XᵀX, so tiny
λ stays accurate and ridge → OLS as λ → 0. Cost is O(N·d²) per prompt, with no per-prefix
LAPACK call (batched per-prefix SVDs are dominated by call overhead on CPU; see
benchmarks/bench_learners.py).
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class LearnerOutput(NamedTuple):
  preds_BxN: jax.Array
  weights_BxNxD: jax.Array | None


Learner = Callable[[jax.Array, jax.Array], LearnerOutput]

FIG1_LEARNERS = ("ols", "ridge(0.1)", "ridge(0.5)", "gd(0.01)", "gd(0.02)", "sgd(0.01)",
                 "sgd(0.03)", "knn3_uniform", "knn3_weighted", "averaging")

# dMMSE with σ = 0 is the limit of a collapsing posterior; flooring σ keeps the softmax finite
# while a member that fits to float32 rounding (residual ~1e-7) still wins outright.
DMMSE_MIN_NOISE_STD = 1e-3


def preds_of(output: LearnerOutput | jax.Array) -> jax.Array:
  """preds_BxN from a LearnerOutput or a bare predictions array (e.g. `tasks.regression.predict`)."""
  return output.preds_BxN if isinstance(output, LearnerOutput) else output


# ---------------------------------------------------------------------------
# Validation


def _check_prompts(xs_BxNxD, ys_BxN) -> None:
  if jnp.ndim(xs_BxNxD) != 3:
    raise ValueError(f"xs_BxNxD must be 3-D (prompts, pairs, dim); got shape {jnp.shape(xs_BxNxD)}")
  if jnp.shape(ys_BxN) != jnp.shape(xs_BxNxD)[:2]:
    raise ValueError(f"ys_BxN must have shape {jnp.shape(xs_BxNxD)[:2]} to match xs_BxNxD "
                     f"{jnp.shape(xs_BxNxD)}; got {jnp.shape(ys_BxN)}")


def _is_concrete(value) -> bool:
  # Hyperparameters are normally Python numbers; an array (possibly traced) is left unchecked.
  return isinstance(value, numbers.Real)


def _check_alpha(alpha) -> None:
  if _is_concrete(alpha) and not alpha > 0:
    raise ValueError(f"alpha={alpha} must be > 0 (the gradient step size)")


def _check_count(name: str, value, what: str) -> None:
  if not (value >= 1 and int(value) == value):
    raise ValueError(f"{name}={value} must be an integer >= 1 ({what})")


def _check_lam(lam) -> None:
  if not _is_concrete(lam):
    return
  if not lam >= 0:
    raise ValueError(f"lam={lam} must be >= 0 (the ridge penalty λ)")
  if lam == 0:
    raise ValueError("lam=0 is unregularised least squares; use ols (the min-norm solution)")


def _check_noise(noise_std, weight_std=1.0) -> None:
  if _is_concrete(noise_std) and not noise_std >= 0:
    raise ValueError(f"noise_std={noise_std} must be >= 0 (σ, a standard deviation)")
  if _is_concrete(weight_std) and not weight_std > 0:
    raise ValueError(f"weight_std={weight_std} must be > 0 (τ, a standard deviation)")


def _linear(xs_BxNxD, weights_BxNxD) -> LearnerOutput:
  return LearnerOutput(jnp.einsum("bnd,bnd->bn", xs_BxNxD, weights_BxNxD), weights_BxNxD)


def _exclusive_cumsum(a_BxNx: jax.Array) -> jax.Array:
  """Sum over pairs j < i at index i (pairs 0..i-1 form prefix i).

  Shifted, not cumsum(a) − a: that subtraction cancels, which dMMSE's sharp likelihoods amplify.
  """
  shifted = jnp.concatenate([jnp.zeros_like(a_BxNx[:, :1]), a_BxNx[:, :-1]], axis=1)
  return jnp.cumsum(shifted, axis=1)


# ---------------------------------------------------------------------------
# Least squares: OLS (min-norm) and ridge, every prefix in one scan


def _lstsq_prefixes_NxD(xs_NxD: jax.Array, ys_N: jax.Array, lam: jax.Array) -> jax.Array:
  """w for every prefix of one prompt (see module docstring); lam = 0 gives min-norm OLS."""
  d = xs_NxD.shape[-1]
  dtype = xs_NxD.dtype
  rtol = 10 * d * jnp.finfo(dtype).eps
  slots_D = jnp.arange(d)

  def solve(q_DxD, r_DxD, z_D):
    # Back substitution; a zero diagonal marks a basis slot not yet opened, whose c is 0.
    def body(j, c_D):
      k = d - 1 - j
      diag = r_DxD[k, k]
      ck = (z_D[k] - r_DxD[k] @ c_D) / jnp.where(diag == 0, 1, diag)
      return c_D.at[k].set(jnp.where(diag == 0, 0, ck))
    return q_DxD @ jax.lax.fori_loop(0, d, body, jnp.zeros((d,), dtype))

  def givens(k, state):
    # Rotate row k of (R, z) against the incoming row (ξ, y) to zero ξ[k].
    r_DxD, z_D, xi_D, y = state
    a, b = r_DxD[k, k], xi_D[k]
    rho = jnp.hypot(a, b)
    safe = jnp.where(rho > 0, rho, 1)
    c, s = jnp.where(rho > 0, a / safe, 1), jnp.where(rho > 0, b / safe, 0)
    r_k, z_k = r_DxD[k], z_D[k]
    return (r_DxD.at[k].set(c * r_k + s * xi_D), z_D.at[k].set(c * z_k + s * y),
            c * xi_D - s * r_k, c * y - s * z_k)

  def step(carry, pair):
    q_DxD, r_DxD, z_D, rank = carry
    x_D, y = pair
    w_D = solve(q_DxD, r_DxD, z_D)  # fitted on the pairs before this one
    xi_D = q_DxD.T @ x_D
    e_D = x_D - q_DxD @ xi_D
    xi2_D = q_DxD.T @ e_D  # second pass restores orthogonality lost to cancellation
    e_D, xi_D = e_D - q_DxD @ xi2_D, xi_D + xi2_D
    e_norm = jnp.linalg.norm(e_D)
    is_new = (e_norm > rtol * jnp.linalg.norm(x_D)) & (rank < d)
    open_D = (slots_D == rank) & is_new
    q_DxD = q_DxD + jnp.outer(e_D / jnp.where(is_new, e_norm, 1), open_D)
    xi_D = xi_D + jnp.where(open_D, e_norm, 0)
    # Rows of unopened slots meet ξ = 0 and stay exactly as they were.
    r_DxD, z_D, _, _ = jax.lax.fori_loop(0, d, givens, (r_DxD, z_D, xi_D, y))
    return (q_DxD, r_DxD, z_D, rank + is_new), w_D

  init = (jnp.zeros((d, d), dtype), jnp.sqrt(lam).astype(dtype) * jnp.eye(d, dtype=dtype),
          jnp.zeros((d,), dtype), jnp.zeros((), jnp.int32))
  _, w_NxD = jax.lax.scan(step, init, (xs_NxD, ys_N))
  return w_NxD


@jax.jit
def _lstsq(xs_BxNxD: jax.Array, ys_BxN: jax.Array, lam: jax.Array) -> LearnerOutput:
  # λ is traced, so every ridge penalty shares one compilation per shape.
  w_BxNxD = jax.vmap(_lstsq_prefixes_NxD, (0, 0, None))(xs_BxNxD, ys_BxN, jnp.asarray(lam))
  return _linear(xs_BxNxD, w_BxNxD)


def ols(xs_BxNxD: jax.Array, ys_BxN: jax.Array) -> LearnerOutput:
  """Least squares, w = X⁺y: the minimum-norm interpolant while i < d."""
  _check_prompts(xs_BxNxD, ys_BxN)
  return _lstsq(xs_BxNxD, ys_BxN, 0.0)


def ridge(xs_BxNxD: jax.Array, ys_BxN: jax.Array, lam: float) -> LearnerOutput:
  """Ridge regression, w = (XᵀX + λI)⁻¹Xᵀy, λ > 0."""
  _check_lam(lam)
  _check_prompts(xs_BxNxD, ys_BxN)
  return _lstsq(xs_BxNxD, ys_BxN, lam)


def bayes(xs_BxNxD: jax.Array, ys_BxN: jax.Array, noise_std: float,
          weight_std: float = 1.0) -> LearnerOutput:
  """Posterior mean for w ~ N(0, τ²I), ε ~ N(0, σ²): ridge with λ = σ²/τ² (OLS when σ = 0)."""
  _check_noise(noise_std, weight_std)
  if noise_std == 0:
    return ols(xs_BxNxD, ys_BxN)
  return ridge(xs_BxNxD, ys_BxN, lam=float(noise_std) ** 2 / float(weight_std) ** 2)


# ---------------------------------------------------------------------------
# Gradient-based learners (α is traced: one compilation per shape serves every step size)


def gd(xs_BxNxD: jax.Array, ys_BxN: jax.Array, alpha: float, steps: int = 1) -> LearnerOutput:
  """`steps` steps of batch GD on the summed squared loss from w₀ = 0: w ← w − 2α(XᵀXw − Xᵀy)."""
  _check_alpha(alpha)
  _check_count("steps", steps, "number of GD steps")
  _check_prompts(xs_BxNxD, ys_BxN)
  return _gd(xs_BxNxD, ys_BxN, alpha, int(steps))


@functools.partial(jax.jit, static_argnames="steps")
def _gd(xs_BxNxD, ys_BxN, alpha, steps: int) -> LearnerOutput:
  # Prefix sufficient statistics: every prefix's gradient costs O(d²), not O(i·d).
  xty_BxNxD = _exclusive_cumsum(xs_BxNxD * ys_BxN[..., None])
  w_BxNxD = 2 * alpha * xty_BxNxD  # the first step from w₀ = 0
  if steps > 1:
    xtx_BxNxDxD = _exclusive_cumsum(jnp.einsum("bnd,bne->bnde", xs_BxNxD, xs_BxNxD))
    grad = lambda w: jnp.einsum("bnde,bne->bnd", xtx_BxNxDxD, w) - xty_BxNxD
    w_BxNxD = jax.lax.fori_loop(1, steps, lambda _, w: w - 2 * alpha * grad(w), w_BxNxD)
  return _linear(xs_BxNxD, w_BxNxD)


def sgd(xs_BxNxD: jax.Array, ys_BxN: jax.Array, alpha: float) -> LearnerOutput:
  """One pass of SGD, one pair at a time in order: wᵢ = wᵢ₋₁ − 2α(xxᵀwᵢ₋₁ − xy), w₀ = 0."""
  _check_alpha(alpha)
  _check_prompts(xs_BxNxD, ys_BxN)
  return _sgd(xs_BxNxD, ys_BxN, alpha)


@jax.jit
def _sgd(xs_BxNxD, ys_BxN, alpha) -> LearnerOutput:
  def step(w_BxD, pair):
    x_BxD, y_B = pair
    resid_B = jnp.einsum("bd,bd->b", x_BxD, w_BxD) - y_B
    return w_BxD - 2 * alpha * resid_B[:, None] * x_BxD, w_BxD

  w0_BxD = jnp.zeros(xs_BxNxD.shape[::2], xs_BxNxD.dtype)
  _, w_NxBxD = jax.lax.scan(step, w0_BxD, (xs_BxNxD.swapaxes(0, 1), ys_BxN.T))
  return _linear(xs_BxNxD, w_NxBxD.swapaxes(0, 1))


def averaging(xs_BxNxD: jax.Array, ys_BxN: jax.Array) -> LearnerOutput:
  """w = mean over context pairs of yⱼxⱼ (Garg et al.'s baseline); 0 with no context."""
  _check_prompts(xs_BxNxD, ys_BxN)
  return _averaging(xs_BxNxD, ys_BxN)


@jax.jit
def _averaging(xs_BxNxD, ys_BxN) -> LearnerOutput:
  n = xs_BxNxD.shape[1]
  xty_BxNxD = _exclusive_cumsum(xs_BxNxD * ys_BxN[..., None])
  count_N = jnp.maximum(jnp.arange(n), 1).astype(xs_BxNxD.dtype)
  return _linear(xs_BxNxD, xty_BxNxD / count_N[:, None])


# ---------------------------------------------------------------------------
# Non-parametric and discrete-prior learners


def knn(xs_BxNxD: jax.Array, ys_BxN: jax.Array, k: int = 3,
        weighting: str = "uniform") -> LearnerOutput:
  """k nearest context points; "uniform" or "inverse_sq" (∝ 1/dist²) weights.

  With fewer than k context points all are used; with none the prediction is 0. A context
  point at distance 0 takes all the weight under "inverse_sq" (the limit of 1/dist²).
  Memory is O(B·N²).
  """
  _check_count("k", k, "number of neighbours")
  if weighting not in ("uniform", "inverse_sq"):
    raise ValueError(f"weighting={weighting!r} is not accepted; use 'uniform' or 'inverse_sq'")
  _check_prompts(xs_BxNxD, ys_BxN)
  return _knn(xs_BxNxD, ys_BxN, int(k), weighting)


@functools.partial(jax.jit, static_argnames=("k", "weighting"))
def _knn(xs_BxNxD, ys_BxN, k: int, weighting: str) -> LearnerOutput:
  n = xs_BxNxD.shape[1]
  dist2_BxNxN = jnp.sum((xs_BxNxD[:, :, None] - xs_BxNxD[:, None]) ** 2, -1)
  in_context_NxN = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]  # [i, j]: j < i
  dist2_BxNxN = jnp.where(in_context_NxN, dist2_BxNxN, jnp.inf)
  neg_d2_BxNxK, idx_BxNxK = jax.lax.top_k(-dist2_BxNxN, min(k, n))
  d2_BxNxK = -neg_d2_BxNxK
  valid_BxNxK = jnp.isfinite(d2_BxNxK)
  y_BxNxK = jnp.take_along_axis(ys_BxN[:, None, :], idx_BxNxK, axis=2)
  if weighting == "uniform":
    wt_BxNxK = valid_BxNxK.astype(xs_BxNxD.dtype)
  else:
    exact_BxNxK = valid_BxNxK & (d2_BxNxK == 0)
    inv_BxNxK = jnp.where(valid_BxNxK, 1 / jnp.where(exact_BxNxK | ~valid_BxNxK, 1, d2_BxNxK), 0)
    wt_BxNxK = jnp.where(exact_BxNxK.any(-1, keepdims=True), exact_BxNxK, inv_BxNxK)
  total_BxN = wt_BxNxK.sum(-1)
  preds_BxN = (wt_BxNxK * y_BxNxK).sum(-1) / jnp.where(total_BxN > 0, total_BxN, 1)
  return LearnerOutput(preds_BxN, None)


def dmmse(xs_BxNxD: jax.Array, ys_BxN: jax.Array, pool_PxD: jax.Array,
          noise_std: float) -> LearnerOutput:
  """Posterior mean of w under a uniform prior over a finite pool and Gaussian noise σ.

  σ is floored at DMMSE_MIN_NOISE_STD, so σ = 0 gives the noiseless limit: the members
  that fit the context best (exactly, up to rounding) share the posterior.
  Memory is O(B·N·P).
  """
  _check_noise(noise_std)
  _check_prompts(xs_BxNxD, ys_BxN)
  if jnp.ndim(pool_PxD) != 2 or jnp.shape(pool_PxD)[1] != jnp.shape(xs_BxNxD)[2]:
    raise ValueError(f"pool_PxD must have shape (P, {jnp.shape(xs_BxNxD)[2]}); got {jnp.shape(pool_PxD)}")
  return _dmmse(xs_BxNxD, ys_BxN, pool_PxD, noise_std)


@jax.jit
def _dmmse(xs_BxNxD, ys_BxN, pool_PxD, noise_std) -> LearnerOutput:
  sigma = jnp.maximum(noise_std, DMMSE_MIN_NOISE_STD).astype(xs_BxNxD.dtype)
  pool_PxD = jnp.asarray(pool_PxD, xs_BxNxD.dtype)
  # Residuals rather than expanded Gram terms: no cancellation when the fit is near exact.
  resid_BxNxP = ys_BxN[..., None] - jnp.einsum("bnd,pd->bnp", xs_BxNxD, pool_PxD)
  sse_BxNxP = _exclusive_cumsum(resid_BxNxP**2)
  post_BxNxP = jax.nn.softmax(-sse_BxNxP / (2 * sigma**2), axis=-1)
  return _linear(xs_BxNxD, post_BxNxP @ pool_PxD)


# ---------------------------------------------------------------------------
# Name registry

_NUM = r"\s*([-+0-9.eE]+)\s*"
_ACCEPTED = ("ols, ridge(λ), bayes(σ,τ), gd(α), gd_k(α,k), sgd(α), knn{k}_uniform, "
             "knn{k}_weighted, averaging, dmmse (with pool_PxD= and noise_std=)")


def get_learner(name: str, **context) -> Learner:
  """A learner `(xs_BxNxD, ys_BxN) -> LearnerOutput` from its name, e.g. "ridge(0.1)".

  Context keywords a learner does not use are ignored, so one context can serve every name;
  "dmmse" needs pool_PxD and noise_std.
  """
  spec = name.replace(" ", "")
  if spec == "ols":
    return ols
  if spec == "averaging":
    return averaging
  if spec == "dmmse":
    if "pool_PxD" not in context or "noise_std" not in context:
      raise ValueError("dmmse needs keyword arguments pool_PxD=(P, d) array and noise_std=σ")
    _check_noise(context["noise_std"])
    return functools.partial(dmmse, pool_PxD=jnp.asarray(context["pool_PxD"]),
                             noise_std=float(context["noise_std"]))
  if m := re.fullmatch(r"knn(\d+)_(uniform|weighted)", spec):
    k = int(m.group(1))
    _check_count("k", k, "number of neighbours")
    weighting = "uniform" if m.group(2) == "uniform" else "inverse_sq"
    return functools.partial(knn, k=k, weighting=weighting)
  if m := re.fullmatch(r"(ridge|gd|sgd)\(" + _NUM + r"\)", spec):
    kind, value = m.group(1), _to_float(m.group(2), name)
    if kind == "ridge":
      _check_lam(value)
      return functools.partial(ridge, lam=value)
    _check_alpha(value)
    return functools.partial(gd if kind == "gd" else sgd, alpha=value)
  if m := re.fullmatch(r"gd_k\(" + _NUM + "," + _NUM + r"\)", spec):
    alpha, steps = _to_float(m.group(1), name), _to_float(m.group(2), name)
    _check_alpha(alpha)
    _check_count("steps", steps, "number of GD steps")
    return functools.partial(gd, alpha=alpha, steps=int(steps))
  if m := re.fullmatch(r"bayes\(" + _NUM + "," + _NUM + r"\)", spec):
    noise_std, weight_std = _to_float(m.group(1), name), _to_float(m.group(2), name)
    _check_noise(noise_std, weight_std)
    return functools.partial(bayes, noise_std=noise_std, weight_std=weight_std)
  raise ValueError(f"unknown learner {name!r}; accepted: {_ACCEPTED}")


def _to_float(raw: str, name: str) -> float:
  try:
    return float(raw)
  except ValueError:
    raise ValueError(f"learner {name!r}: {raw!r} is not a number; accepted: {_ACCEPTED}") from None

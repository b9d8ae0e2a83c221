"""Agreement metrics between in-context learners: SPD, MSPD, ILWD, implicit weights, error.

Conventions: index n of a length-N curve is the prefix length, the number of in-context
examples (n = 0 is the zero-context query, which the paper's loss includes, so it is counted
here too). Inputs may be JAX or NumPy arrays; every metric returns NumPy float64 arrays, or
Python floats for MSPD, because these are end-of-pipeline numbers bound for results files.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from icl_lab.analysis import learners
from icl_lab.analysis.learners import LearnerOutput, preds_of

PredictFn = Callable[[jax.Array, jax.Array], "LearnerOutput | jax.Array"]


def _f64(a) -> np.ndarray:
  return np.asarray(a, dtype=np.float64)


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray, ndim: int) -> None:
  if a.ndim != ndim or a.shape != b.shape:
    raise ValueError(f"{name_a} {a.shape} and {name_b} {b.shape} must have the same {ndim}-D shape")


def spd(preds_a_BxN, preds_b_BxN) -> np.ndarray:
  """spd_N: mean over prompts of the squared difference of two learners' predictions."""
  a_BxN, b_BxN = _f64(preds_of(preds_a_BxN)), _f64(preds_of(preds_b_BxN))
  _same_shape("preds_a_BxN", a_BxN, "preds_b_BxN", b_BxN, 2)
  return np.mean((a_BxN - b_BxN) ** 2, axis=0)


def spd_over_d(preds_a_BxN, preds_b_BxN, d: int) -> np.ndarray:
  """SPD divided by d, as plotted in the paper's figures."""
  return spd(preds_a_BxN, preds_b_BxN) / d


def mspd(spd_N, d: int) -> dict[str, float]:
  """Mean SPD over the under-determined prefixes n < d (n = 0 included) and over all n."""
  spd_N = _f64(spd_N)
  if spd_N.ndim != 1 or spd_N.size == 0:
    raise ValueError(f"spd_N must be a non-empty 1-D curve; got shape {spd_N.shape}")
  if d < 1:
    raise ValueError(f"d={d} must be >= 1")
  return {"underdetermined": float(spd_N[:d].mean()), "full": float(spd_N.mean())}


def ilwd(w_a_BxNxD, w_b_BxNxD) -> np.ndarray:
  """ilwd_N: mean over prompts of ‖w_a − w_b‖² at each prefix length."""
  a, b = _f64(w_a_BxNxD), _f64(w_b_BxNxD)
  _same_shape("w_a_BxNxD", a, "w_b_BxNxD", b, 3)
  return np.mean(np.sum((a - b) ** 2, axis=-1), axis=0)


def bootstrap_counts(b: int, num_boot: int, seed: int) -> np.ndarray:
  """counts_RxB: how often each of b prompts is drawn in each of num_boot resamples. Resampling
  counts instead of index arrays keeps memory at num_boot·B, not num_boot·B·N."""
  return np.random.default_rng(seed).multinomial(b, np.full(b, 1.0 / b), size=num_boot)


def error_vs_truth(preds_BxN, ys_BxN, seed: int = 0, num_boot: int = 1000,
                   ci: float = 0.95) -> dict[str, np.ndarray]:
  """Squared error against the targets per prefix length, with a bootstrap-over-prompts CI.

  Returns mean_N (the plain sample mean), low_N and high_N (percentile interval).
  """
  p_BxN, y_BxN = _f64(preds_of(preds_BxN)), _f64(ys_BxN)
  _same_shape("preds_BxN", p_BxN, "ys_BxN", y_BxN, 2)
  if not 0 < ci < 1:
    raise ValueError(f"ci={ci} must be in (0, 1)")
  if num_boot < 1:
    raise ValueError(f"num_boot={num_boot} must be >= 1")
  err_BxN = (p_BxN - y_BxN) ** 2
  b = err_BxN.shape[0]
  boot_RxN = bootstrap_counts(b, num_boot, seed) @ err_BxN / b
  low_N, high_N = np.quantile(boot_RxN, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
  return {"mean": err_BxN.mean(0), "low": low_N, "high": high_N}


# ---------------------------------------------------------------------------
# Implicit weights of a black-box learner


@jax.jit
def _probe_sequences(xs_BxNxD, ys_BxN, probes_QxD, pos_Q, prompt_Q):
  """Prompt `prompt_Q[q]` with x at position `pos_Q[q]` replaced by a probe.

  Positions after the probe keep their original tokens: a causal learner never reads them
  for the prediction at the probe, but the sequence must be full length.
  """
  xs_QxNxD = xs_BxNxD[prompt_Q]
  xs_QxNxD = xs_QxNxD.at[jnp.arange(pos_Q.shape[0]), pos_Q].set(probes_QxD)
  return xs_QxNxD, ys_BxN[prompt_Q]


def implicit_weights(predict_fn: PredictFn, xs_BxNxD, ys_BxN, key: jax.Array,
                     num_probes: int | None = None, chunk: int = 1024,
                     jit: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares linear fit ŷ ≈ wᵀx′ + b of a learner's predictions at probe queries.

  For every prompt and prefix length i the context (first i pairs) is fixed and `num_probes`
  probes x′ ~ N(0, I) (default 4d, at least d + 1) are queried at position i. Returns w_BxNxD
  (the intercept is fitted but not returned) and the fit's r2_BxN (1 where the predictions do
  not vary with x′ beyond rounding, std ≤ 64·eps·max|ŷ|, e.g. a zero-context linear learner). predict_fn is any causal
  `(xs_BxNxD, ys_BxN) -> LearnerOutput | preds_BxN`; it is evaluated on `chunk` sequences at a
  time (the last call padded to the same shape), so memory stays bounded. With jit=True it is
  wrapped in jax.jit (a transformer closed over its model compiles with its weights as
  constants); pass jit=False for a function that jits itself, as every icl_lab learner does,
  or that must not be traced.
  """
  xs_BxNxD, ys_BxN = jnp.asarray(xs_BxNxD), jnp.asarray(ys_BxN)
  if xs_BxNxD.ndim != 3 or ys_BxN.shape != xs_BxNxD.shape[:2]:
    raise ValueError(f"xs_BxNxD {xs_BxNxD.shape} must be 3-D and ys_BxN {ys_BxN.shape} "
                     f"must match its first two dimensions")
  b, n, d = xs_BxNxD.shape
  p = 4 * d if num_probes is None else num_probes
  if p < d + 1:
    raise ValueError(f"num_probes={p} must be >= d + 1 = {d + 1} to fit d weights and an intercept")
  if chunk < 1:
    raise ValueError(f"chunk={chunk} must be >= 1")
  fn = jax.jit(predict_fn) if jit else predict_fn
  chunk = min(chunk, n * b * p)

  # Query q = (i·B + prompt)·P + probe: prefix length major, so a chunk covers few positions.
  probes_NxBxPxD = jax.random.normal(key, (n, b, p, d), xs_BxNxD.dtype)
  probes_QxD = probes_NxBxPxD.reshape(-1, d)
  q_all = np.arange(n * b * p)
  pos_all, prompt_all = q_all // (b * p), (q_all // p) % b
  targets_Q = np.empty(n * b * p)
  pred_eps = 0.0
  for start in range(0, n * b * p, chunk):
    stop = min(start + chunk, n * b * p)
    idx = np.arange(start, start + chunk) % (n * b * p)  # pad the last chunk, keep one shape
    pos, prompt = jnp.asarray(pos_all[idx]), jnp.asarray(prompt_all[idx])
    seq_xs, seq_ys = _probe_sequences(xs_BxNxD, ys_BxN, probes_QxD[idx], pos, prompt)
    preds_QxN = preds_of(fn(seq_xs, seq_ys))
    preds_Q = jnp.take_along_axis(preds_QxN, pos[:, None], axis=1)[:, 0]
    pred_eps = float(jnp.finfo(preds_Q.dtype).eps)
    targets_Q[start:stop] = np.asarray(preds_Q)[: stop - start]

  # Fit in float64 with a QR per (prefix, prompt): design [x′, 1] is P × (d+1).
  z_MxPxE = np.concatenate([_f64(probes_NxBxPxD), np.ones((n, b, p, 1))], -1).reshape(n * b, p, d + 1)
  t_MxP = targets_Q.reshape(n * b, p)
  q_MxPxE, r_MxExE = np.linalg.qr(z_MxPxE)
  coef_MxE = np.linalg.solve(r_MxExE, np.einsum("mpe,mp->me", q_MxPxE, t_MxP)[..., None])[..., 0]
  resid_MxP = t_MxP - np.einsum("mpe,me->mp", z_MxPxE, coef_MxE)
  ss_res_M = np.sum(resid_MxP**2, -1)
  ss_tot_M = np.sum((t_MxP - t_MxP.mean(-1, keepdims=True)) ** 2, -1)
  # Predictions that vary with x′ only by rounding (e.g. k-NN averaging the same k points in a
  # different order) are constant: R² = 1, not a ratio of rounding noise to rounding noise.
  floor_M = p * (64 * pred_eps * np.abs(t_MxP).max(-1)) ** 2
  flat_M = ss_tot_M <= floor_M
  r2_M = np.where(flat_M, 1.0, 1 - ss_res_M / np.where(flat_M, 1, ss_tot_M))
  w_BxNxD = coef_MxE[:, :d].reshape(n, b, d).transpose(1, 0, 2)
  return w_BxNxD, r2_M.reshape(n, b).T


# ---------------------------------------------------------------------------
# Which of two reference learners is closer


def projection_a(preds_t_BxN, preds_r_BxN, preds_ref_BxN, *, seed: int = 0, num_boot: int = 1000,
                 ci: float = 0.95, prefixes: slice = slice(None)) -> dict:
  """a = E[(T − ref)(R − ref)] / SPD(R, ref), pooled over prompts and prefixes.

  When `ref` is the Bayes predictor (OLS in the noiseless task),
  SPD(T, R) − SPD(T, ref) = SPD(R, ref)·(1 − 2a), so T is closer to ref than to R exactly
  when a < 0.5; a = 1 means T behaves like R along the R − ref direction, and errors of T
  orthogonal to it do not count. Returns {"a", "ci95": [low, high]} with a percentile
  bootstrap over prompts.
  """
  t_BxN, r_BxN, o_BxN = (_f64(preds_of(p))[:, prefixes] for p in (preds_t_BxN, preds_r_BxN, preds_ref_BxN))
  _same_shape("preds_t_BxN", t_BxN, "preds_r_BxN", r_BxN, 2)
  _same_shape("preds_t_BxN", t_BxN, "preds_ref_BxN", o_BxN, 2)
  if not 0 < ci < 1:
    raise ValueError(f"ci={ci} must be in (0, 1)")
  dr_BxN = r_BxN - o_BxN
  num_B = np.sum((t_BxN - o_BxN) * dr_BxN, axis=1)
  den_B = np.sum(dr_BxN**2, axis=1)
  if den_B.sum() == 0:
    raise ValueError("R and ref predict the same values everywhere; a is undefined")
  b = num_B.shape[0]
  counts_RxB = bootstrap_counts(b, num_boot, seed)
  boot_R = (counts_RxB @ num_B) / (counts_RxB @ den_B)
  low, high = np.quantile(boot_R, [(1 - ci) / 2, (1 + ci) / 2])
  return {"a": float(num_B.sum() / den_B.sum()), "ci95": [float(low), float(high)]}


# λ from 1e-3 to 10 on a log grid (8 per decade), with OLS as λ = 0 in front: fine enough that the
# effective ridge is located to about ±15%, wide enough to bracket every noise level of Fig. 2.
LAMBDA_GRID = (0.0, *np.round(np.logspace(-3, 1, 33), 6).tolist())


def effective_ridge(preds_t_BxN, xs_BxNxD, ys_BxN, *, lams=LAMBDA_GRID, seed: int = 0, num_boot: int = 1000,
                    ci: float = 0.95) -> dict:
  """λ*: the ridge λ whose predictions are closest to T's, by MSPD/d over all prefixes (λ = 0 is
  the min-norm OLS). Returns {"lam", "ci95", "grid", "mspd_over_d"}; the interval is a percentile
  bootstrap over prompts of the argmin, so it is as coarse as the grid."""
  t_BxN = _f64(preds_of(preds_t_BxN))
  d = xs_BxNxD.shape[-1]
  if not 0 < ci < 1:
    raise ValueError(f"ci={ci} must be in (0, 1)")
  lams = [float(lam) for lam in lams]
  if len(lams) < 2 or any(lam < 0 for lam in lams) or lams != sorted(lams):
    raise ValueError(f"lams must be ≥ 2 increasing values ≥ 0; got {lams}")
  # Per-prompt SPD/d averaged over prefixes, one column per λ: bootstrapping rows is then cheap.
  spd_BxL = np.stack([
      np.mean((t_BxN - _f64(learners.ridge(xs_BxNxD, ys_BxN, lam).preds_BxN if lam > 0
                            else learners.ols(xs_BxNxD, ys_BxN).preds_BxN)) ** 2, axis=1) / d
      for lam in lams], axis=1)
  _same_shape("preds_t_BxN", t_BxN, "ys_BxN", _f64(ys_BxN), 2)
  b = spd_BxL.shape[0]
  boot_lam_R = np.asarray(lams)[np.argmin(bootstrap_counts(b, num_boot, seed) @ spd_BxL, axis=1)]
  low, high = np.quantile(boot_lam_R, [(1 - ci) / 2, (1 + ci) / 2], method="nearest")
  mean_L = spd_BxL.mean(0)
  return {"lam": lams[int(np.argmin(mean_L))], "ci95": [float(low), float(high)], "grid": lams,
          "mspd_over_d": mean_L.tolist()}

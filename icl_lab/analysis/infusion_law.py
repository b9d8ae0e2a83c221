"""The knowledge-infusion law (Lv et al. 2025): P(F) = a·F^b·exp(−c·F), its optimum F* = b/c, its
collapse point, and the power law of F* against model size.

- Fit: ln P = ln a + b·ln F − c·F is linear in (ln a, b, c): one least-squares solve per size,
  R² read in log space. P must be positive; a reading at or below chance is floored at `P_FLOOR`
  (the caller's choice of P; documented in docs/infusion.md).
- Collapse point (operational, the lab's definition): the F > F* where the fitted curve falls to
  half its peak, P(F) = P*/2, found by bisection on the log of the curve (decreasing beyond F*).
- Intervals: bootstrap over facts (the per-fact readings resampled with replacement, the same
  resample at every F), percentile 2.5–97.5.
- Scale: F* ∝ N^γ fitted on the smaller sizes (log-log least squares), predicting the largest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

P_FLOOR = 1e-3  # P at or below this (chance or worse) enters the log fit as this
COLLAPSE_FRACTION = 0.5


class Law(NamedTuple):
  a: float
  b: float
  c: float
  r2: float  # in log space

  @property
  def optimum(self) -> float:
    """F* = b/c (inf unless b > 0 and c > 0: without both the law has no interior maximum)."""
    return self.b / self.c if self.b > 0 and self.c > 0 else float("inf")

  @property
  def peak(self) -> float:
    """P* = a·(b/c)^b·e^(−b)."""
    return float(predict(self, self.optimum)) if np.isfinite(self.optimum) else float("nan")


def predict(law: Law, f) -> np.ndarray:
  f = np.asarray(f, np.float64)
  with np.errstate(all="ignore"):  # a degenerate fit (nan or overflow) plots as a gap
    return law.a * f ** law.b * np.exp(-law.c * f)


def fit(f, p) -> Law:
  """Least squares of ln P on [1, ln F, −F] (P floored at P_FLOOR)."""
  f = np.asarray(f, np.float64)
  y = np.log(np.maximum(np.asarray(p, np.float64), P_FLOOR))
  x = np.stack([np.ones_like(f), np.log(f), -f], axis=1)
  (ln_a, b, c), *_ = np.linalg.lstsq(x, y, rcond=None)
  resid = y - x @ np.array([ln_a, b, c])
  total = ((y - y.mean()) ** 2).sum()
  r2 = 1.0 - (resid ** 2).sum() / total if total > 0 else float("nan")
  return Law(float(np.exp(ln_a)), float(b), float(c), float(r2))


def collapse_point(law: Law, fraction: float = COLLAPSE_FRACTION, tol: float = 1e-12) -> float:
  """The F > F* with P(F) = fraction·P*, by bisection (inf when the law has no optimum)."""
  lo = law.optimum
  if not np.isfinite(lo) or law.b <= 0:
    return float("inf")
  # g(F) = ln P(F) − ln P* − ln fraction: 0 at the answer, positive at F*, decreasing beyond it.
  target = np.log(fraction) + law.b * np.log(lo) - law.c * lo
  g = lambda x: law.b * np.log(x) - law.c * x - target  # noqa: E731
  hi = 2.0 * lo
  while g(hi) > 0:
    hi *= 2.0
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if g(mid) > 0 else (lo, mid)
    if hi - lo <= tol * hi:
      break
  return 0.5 * (lo + hi)


def bootstrap(f, values_FxN, reduce: Callable[[np.ndarray], np.ndarray], n_boot: int = 1000,
              seed: int = 0) -> dict:
  """95% intervals of b, c, F* and the collapse point, resampling the N facts (columns) with
  replacement; `reduce` maps values_FxM to the P of each F."""
  values_FxN = np.asarray(values_FxN, np.float64)
  rng = np.random.default_rng(seed)
  n = values_FxN.shape[1]
  draws = []
  for _ in range(n_boot):
    law = fit(f, reduce(values_FxN[:, rng.integers(0, n, n)]))
    draws.append((law.b, law.c, law.optimum, collapse_point(law)))
  draws = np.asarray(draws)
  out = {}
  for i, name in enumerate(("b", "c", "optimum", "collapse")):
    finite = draws[:, i][np.isfinite(draws[:, i])]
    out[name] = [float(x) for x in np.percentile(finite, [2.5, 97.5])] if len(finite) else None
  return out


def summary(f, p, values_FxN=None, reduce=None, n_boot: int = 1000, seed: int = 0) -> dict:
  """One size's law as JSON: a, b, c, R², F*, P*, the collapse point, and bootstrap intervals."""
  law = fit(f, p)
  out = {"a": law.a, "b": law.b, "c": law.c, "r2": law.r2, "optimum": law.optimum, "peak": law.peak,
         "collapse": collapse_point(law)}
  if values_FxN is not None:
    out["intervals"] = bootstrap(f, values_FxN, reduce, n_boot, seed)
  return {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in out.items()}


def power_law(sizes, y) -> tuple[float, float]:
  """(k, γ) of y = k·size^γ by least squares in log-log space."""
  gamma, ln_k = np.polyfit(np.log(np.asarray(sizes, np.float64)), np.log(np.asarray(y, np.float64)), 1)
  return float(np.exp(ln_k)), float(gamma)


def extrapolate(sizes, y) -> float:
  """The largest size's y predicted from the power law of the others (sizes ascending)."""
  k, gamma = power_law(sizes[:-1], y[:-1])
  return float(k * float(sizes[-1]) ** gamma)


def interpolate_log(f, p, at: float) -> float:
  """Measured P at F = `at`, linear in ln F between the measured points (clamped at the ends)."""
  return float(np.interp(np.log(at), np.log(np.asarray(f, np.float64)), np.asarray(p, np.float64)))


def crossing(f, p, level: float = 0.5) -> float | None:
  """The smallest F at which the measured P first reaches `level`, linear in ln F between the two
  measured points around that first crossing; None when P never reaches it. A model-free reading of
  how many exposures a size needs, for curves that rise and saturate (which the law's exp(−cF)
  then bends into a spurious optimum)."""
  f_F, p_F = np.asarray(f, np.float64), np.asarray(p, np.float64)
  (hits,) = np.nonzero(p_F >= level)
  if not len(hits):
    return None
  i = int(hits[0])
  if i == 0:
    return float(f_F[0])
  t = (level - p_F[i - 1]) / (p_F[i] - p_F[i - 1])
  return float(np.exp(np.log(f_F[i - 1]) + t * (np.log(f_F[i]) - np.log(f_F[i - 1]))))

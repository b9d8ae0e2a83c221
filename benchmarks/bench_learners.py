"""All-prefix OLS and ridge: the vectorised learners against a per-prefix NumPy loop.

The original release fits one least-squares model per prompt and per prefix in a Python loop;
that loop is the baseline here (np.linalg.lstsq for OLS, np.linalg.solve on the normal
equations for ridge, or scikit-learn's Ridge where it is installed). A batched per-prefix SVD
in JAX, the obvious vectorisation, is timed too. Every method is checked against the loop.

  .venv/bin/python benchmarks/bench_learners.py [--quick] [--batch 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from icl_lab.analysis import learners
from icl_lab.config import TaskConfig
from icl_lab.tasks import regression


def best_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def loop_weights(xs, ys, lam: float):
  """One fit per prompt and prefix, in float64, as the original release does."""
  try:
    from sklearn.linear_model import Ridge  # only if present; not a dependency
  except ImportError:
    Ridge = None
  x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    for i in range(1, n):
      xi, yi = x[p, :i], y[p, :i]
      if lam == 0:
        w[p, i] = np.linalg.lstsq(xi, yi, rcond=None)[0]
      elif Ridge is not None:
        w[p, i] = Ridge(alpha=lam, fit_intercept=False).fit(xi, yi).coef_
      else:
        w[p, i] = np.linalg.solve(xi.T @ xi + lam * np.eye(d), xi.T @ yi)
  return w


@jax.jit
def svd_all_prefixes(xs_BxNxD, ys_BxN, lam):
  """Masked design per prefix (rows ≥ i zeroed) and one LAPACK SVD each: B·N small SVDs."""
  b, n, d = xs_BxNxD.shape
  in_prefix_NxN = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
  xm = jnp.where(in_prefix_NxN[None, :, :, None], xs_BxNxD[:, None], 0)
  ym = jnp.where(in_prefix_NxN[None], ys_BxN[:, None], 0)
  u, s, vt = jnp.linalg.svd(xm, full_matrices=False)
  keep = s > max(n, d) * jnp.finfo(s.dtype).eps * s[..., :1]
  filt = jnp.where(keep, s / jnp.where(keep, s**2 + lam, 1), 0)
  return jnp.einsum("...kd,...k->...d", vt, filt * jnp.einsum("...nk,...n->...k", u, ym))


def rel_err(w, w_ref):
  err = np.linalg.norm(np.asarray(w, np.float64) - w_ref, axis=-1)
  return err / np.maximum(np.linalg.norm(w_ref, axis=-1), 1e-12)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="128 prompts, 3 repeats")
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  b, repeats = (128, 3) if args.quick else (args.batch, args.repeats)
  n, d = 40, 8
  xs, ys, _ = regression.sample_batch(TaskConfig(dim=d, num_exemplars=n), seed=0, step=0, batch_size=b)
  print(f"device: {jax.devices()[0].platform}, batch {b}, d = {d}, N = {n}, best of {repeats}")
  print(f"{'learner':<12}{'method':<28}{'time (ms)':>11}{'speed-up':>10}"
        f"{'median rel err':>16}{'max rel err':>13}")
  for name, lam in (("ols", 0.0), ("ridge(0.1)", 0.1)):
    fn = learners.get_learner(name)
    w_ref = loop_weights(xs, ys, lam)
    # Default arguments bind this iteration's learner and λ into each timed closure.
    loop_s = best_time(lambda lam=lam: loop_weights(xs, ys, lam), max(1, repeats // 2))
    fn(xs, ys).preds_BxN.block_until_ready()  # compile
    lab_s = best_time(lambda fn=fn: fn(xs, ys).preds_BxN.block_until_ready(), repeats)
    svd_all_prefixes(xs, ys, lam).block_until_ready()
    svd_s = best_time(lambda lam=lam: svd_all_prefixes(xs, ys, lam).block_until_ready(), repeats)
    # Prefix 0 has w = 0 in every method; i = d is where Gaussian prefixes are ill-conditioned.
    rows = [("NumPy loop (float64)", loop_s, None),
            ("icl_lab scan (float32)", lab_s, fn(xs, ys).weights_BxNxD),
            ("batched SVD (float32)", svd_s, svd_all_prefixes(xs, ys, lam))]
    for method, secs, w in rows:
      errs = rel_err(w, w_ref)[:, 1:] if w is not None else None
      err_txt = f"{np.median(errs):>16.1e}{errs.max():>13.1e}" if errs is not None else ""
      print(f"{name:<12}{method:<28}{1e3 * secs:>11.1f}{loop_s / secs:>9.1f}x{err_txt}")


if __name__ == "__main__":
  main()

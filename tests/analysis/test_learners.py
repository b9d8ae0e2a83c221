"""Reference learners against independent float64 NumPy loops, plus their defining properties.

The lab runs in float32 (x64 stays off); the references loop over every prompt and prefix in
float64 with np.linalg, so they share no code or precision with the vectorised learners.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab.analysis import learners as L

EPS32 = float(np.finfo(np.float32).eps)

# (N, d): under-determined throughout, square, and over-determined prompts.
SHAPES = [(6, 10), (8, 8), (20, 5)]


def make_prompts(n: int, d: int, noise: float, b: int = 6, seed: int = 0):
  """float32 prompts; the references read the same float32 values, promoted to float64."""
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((b, n, d)).astype(np.float32)
  w = rng.standard_normal((b, d))
  ys = (np.einsum("bnd,bd->bn", xs.astype(np.float64), w)
        + noise * rng.standard_normal((b, n))).astype(np.float32)
  return xs, ys


def f64(a):
  return np.asarray(a, np.float64)


# ---------------------------------------------------------------------------
# float64 references, one prefix at a time


def ref_ridge_loop(xs, ys, lam):
  """lam = 0: np.linalg.pinv (min-norm). lam > 0: the SVD filter form s/(s²+λ), exact for tiny λ."""
  x, y = f64(xs), f64(ys)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    for i in range(1, n):
      if lam == 0:
        w[p, i] = np.linalg.pinv(x[p, :i]) @ y[p, :i]
      else:
        u, s, vt = np.linalg.svd(x[p, :i], full_matrices=False)
        w[p, i] = vt.T @ (s / (s**2 + lam) * (u.T @ y[p, :i]))
  return w


def lstsq_tolerance(xs, ys, w_ref):
  """Per-prefix relative tolerance on w from least-squares perturbation theory.

  A backward-stable solver in precision eps has relative error ≲ c·eps·(κ + κ²·‖r‖/(‖X‖‖w‖))
  (Golub & Van Loan §5.3), κ = σ_max/σ_min over the nonzero singular values of the prefix.
  We allow c = 10; measured errors stay below 2·eps·κ. For a well-conditioned prefix
  (κ ≤ 100) this is ≤ 1.2e-4. Near i ≈ d a Gaussian prefix is genuinely ill-conditioned
  (κ in the thousands happens), and the bound grows with it instead of being loosened for all.
  """
  x, y = f64(xs), f64(ys)
  b, n, _ = x.shape
  tol = np.ones((b, n))
  for p in range(b):
    for i in range(1, n):
      s = np.linalg.svd(x[p, :i], compute_uv=False)
      s = s[s > s[0] * 1e-12]
      kappa = s[0] / s[-1]
      resid = np.linalg.norm(x[p, :i] @ w_ref[p, i] - y[p, :i])
      wn = max(np.linalg.norm(w_ref[p, i]), 1e-30)
      tol[p, i] = 10 * EPS32 * (kappa + kappa**2 * resid / (s[0] * wn))
  return tol


def assert_w_close(w, w_ref, tol_BxN):
  w, w_ref = f64(w), f64(w_ref)
  err = np.linalg.norm(w - w_ref, axis=-1)
  scale = np.maximum(np.linalg.norm(w_ref, axis=-1), 1e-6)
  worst = np.max(err / scale / tol_BxN)
  assert worst <= 1, f"relative error exceeds tolerance by {worst:.2f}x"


def ref_gd_loop(xs, ys, alpha, steps):
  x, y = f64(xs), f64(ys)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    for i in range(1, n):
      wi = np.zeros(d)
      for _ in range(steps):
        wi = wi - 2 * alpha * (x[p, :i].T @ (x[p, :i] @ wi) - x[p, :i].T @ y[p, :i])
      w[p, i] = wi
  return w


def ref_sgd_loop(xs, ys, alpha):
  x, y = f64(xs), f64(ys)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    wi = np.zeros(d)
    for i in range(n):
      w[p, i] = wi
      wi = wi - 2 * alpha * (x[p, i] * (x[p, i] @ wi) - x[p, i] * y[p, i])
  return w


def ref_knn_loop(xs, ys, k, weighting):
  x, y = f64(xs), f64(ys)
  b, n, _ = x.shape
  preds = np.zeros((b, n))
  for p in range(b):
    for i in range(1, n):
      dist2 = np.sum((x[p, :i] - x[p, i]) ** 2, -1)
      near = np.argsort(dist2)[:k]
      wt = np.ones(len(near)) if weighting == "uniform" else 1 / dist2[near]
      preds[p, i] = wt @ y[p, near] / wt.sum()
  return preds


def ref_averaging_loop(xs, ys):
  x, y = f64(xs), f64(ys)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    for i in range(1, n):
      w[p, i] = np.mean(y[p, :i, None] * x[p, :i], axis=0)
  return w


def ref_dmmse_loop(xs, ys, pool, sigma):
  x, y, pool = f64(xs), f64(ys), f64(pool)
  b, n, d = x.shape
  w = np.zeros((b, n, d))
  for p in range(b):
    for i in range(n):
      loglik = np.array([-np.sum((y[p, :i] - x[p, :i] @ wm) ** 2) / (2 * sigma**2) for wm in pool])
      post = np.exp(loglik - loglik.max())
      w[p, i] = (post / post.sum()) @ pool
  return w


def preds_from(xs, w):
  return np.einsum("bnd,bnd->bn", f64(xs), f64(w))


# ---------------------------------------------------------------------------
# Against the references


@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("n,d", SHAPES)
def test_ols_matches_float64_pinv(n, d, noise):
  xs, ys = make_prompts(n, d, noise)
  out = L.ols(jnp.asarray(xs), jnp.asarray(ys))
  assert out.preds_BxN.dtype == jnp.float32
  w_ref = ref_ridge_loop(xs, ys, 0.0)
  assert_w_close(out.weights_BxNxD, w_ref, lstsq_tolerance(xs, ys, w_ref))
  np.testing.assert_allclose(out.preds_BxN, preds_from(xs, out.weights_BxNxD), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out.weights_BxNxD[:, 0], 0)


@pytest.mark.parametrize("lam", [1e-6, 0.1, 0.5])
@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("n,d", SHAPES)
def test_ridge_matches_float64(n, d, noise, lam):
  xs, ys = make_prompts(n, d, noise, seed=1)
  out = L.ridge(jnp.asarray(xs), jnp.asarray(ys), lam=lam)
  w_ref = ref_ridge_loop(xs, ys, lam)
  # Ridge is never worse conditioned than OLS on the same prefix, so OLS's bound applies.
  assert_w_close(out.weights_BxNxD, w_ref, lstsq_tolerance(xs, ys, ref_ridge_loop(xs, ys, 0.0)))


def test_ols_rank_deficient_inputs_match_pinv():
  """Zero coordinates (as under the curriculum) and repeated points: rank below min(i, d)."""
  xs, ys = make_prompts(16, 8, 0.3, seed=2)
  xs[:, :, 5:] = 0  # only 5 active dimensions
  xs[:, 9] = xs[:, 2]  # an exact repeat with a different noisy y
  out = L.ols(jnp.asarray(xs), jnp.asarray(ys))
  w_ref = ref_ridge_loop(xs, ys, 0.0)
  assert_w_close(out.weights_BxNxD, w_ref, lstsq_tolerance(xs, ys, w_ref))
  np.testing.assert_array_equal(out.weights_BxNxD[..., 5:], 0)


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("n,d", SHAPES)
def test_gd_matches_loop(n, d, steps):
  xs, ys = make_prompts(n, d, 0.5, seed=3)
  out = L.gd(jnp.asarray(xs), jnp.asarray(ys), alpha=0.01, steps=steps)
  w_ref = ref_gd_loop(xs, ys, 0.01, steps)
  np.testing.assert_allclose(out.weights_BxNxD, w_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out.preds_BxN, preds_from(xs, w_ref), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("n,d", SHAPES)
def test_sgd_and_averaging_match_loops(n, d, noise):
  xs, ys = make_prompts(n, d, noise, seed=4)
  sgd = L.sgd(jnp.asarray(xs), jnp.asarray(ys), alpha=0.03)
  np.testing.assert_allclose(sgd.weights_BxNxD, ref_sgd_loop(xs, ys, 0.03), rtol=1e-4, atol=1e-5)
  avg = L.averaging(jnp.asarray(xs), jnp.asarray(ys))
  np.testing.assert_allclose(avg.weights_BxNxD, ref_averaging_loop(xs, ys), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(avg.preds_BxN, preds_from(xs, ref_averaging_loop(xs, ys)),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weighting", ["uniform", "inverse_sq"])
@pytest.mark.parametrize("n,d", SHAPES)
def test_knn_matches_loop(n, d, weighting):
  xs, ys = make_prompts(n, d, 0.5, seed=5)
  out = L.knn(jnp.asarray(xs), jnp.asarray(ys), k=3, weighting=weighting)
  assert out.weights_BxNxD is None
  np.testing.assert_allclose(out.preds_BxN, ref_knn_loop(xs, ys, 3, weighting), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("n,d", SHAPES)
def test_dmmse_matches_loop(n, d, noise):
  rng = np.random.default_rng(6)
  pool = rng.standard_normal((5, d)).astype(np.float32)
  xs, _ = make_prompts(n, d, 0.0, seed=6)
  ws = pool[rng.integers(0, 5, xs.shape[0])]
  ys = (np.einsum("bnd,bd->bn", f64(xs), f64(ws)) + noise * rng.standard_normal(xs.shape[:2])).astype(np.float32)
  out = L.dmmse(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(pool), noise_std=noise)
  sigma = max(noise, L.DMMSE_MIN_NOISE_STD)
  w_ref = ref_dmmse_loop(xs, ys, pool, sigma)
  np.testing.assert_allclose(out.weights_BxNxD, w_ref, rtol=1e-4, atol=1e-4)
  if noise == 0:  # noiseless: one pair already singles out the true member
    np.testing.assert_allclose(out.weights_BxNxD[:, 1:], np.broadcast_to(ws[:, None], w_ref[:, 1:].shape),
                               atol=1e-5)


# ---------------------------------------------------------------------------
# Defining properties


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_ols_interpolates_context_below_d(noise):
  n, d = 10, 8
  xs, ys = make_prompts(n, d, noise, seed=7)
  w = f64(L.ols(jnp.asarray(xs), jnp.asarray(ys)).weights_BxNxD)
  for i in range(1, d + 1):
    fit = np.einsum("bjd,bd->bj", f64(xs[:, :i]), w[:, i])
    # A backward-stable solve interpolates to rounding level even when w itself is ill-conditioned.
    scale = np.linalg.norm(xs[:, :i], axis=(1, 2)) * np.linalg.norm(w[:, i], axis=-1)
    assert np.all(np.abs(fit - ys[:, :i]).max(-1) <= 1e-5 * scale + 1e-6)


def test_ridge_tends_to_ols():
  xs, ys = make_prompts(12, 8, 0.5, seed=8)
  args = jnp.asarray(xs), jnp.asarray(ys)
  w_ols = f64(L.ols(*args).weights_BxNxD)
  gaps = [np.median(np.linalg.norm(f64(L.ridge(*args, lam=lam).weights_BxNxD) - w_ols, axis=-1))
          for lam in (1.0, 1e-2, 1e-4, 1e-8)]
  assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
  assert gaps[-1] < 1e-4


def test_bayes_is_ridge_with_noise_ratio_and_ols_without_noise():
  xs, ys = make_prompts(12, 8, 0.5, seed=9)
  args = jnp.asarray(xs), jnp.asarray(ys)
  np.testing.assert_allclose(L.bayes(*args, noise_std=0.5, weight_std=1.5).weights_BxNxD,
                             L.ridge(*args, lam=0.5**2 / 1.5**2).weights_BxNxD, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(L.bayes(*args, noise_std=0.0).weights_BxNxD, L.ols(*args).weights_BxNxD)


def test_gd_with_tiny_step_is_proportional_to_xty():
  xs, ys = make_prompts(12, 8, 0.5, seed=10)
  args = jnp.asarray(xs), jnp.asarray(ys)
  xty = np.cumsum(f64(xs) * f64(ys)[..., None], axis=1) - f64(xs) * f64(ys)[..., None]
  alpha = 1e-6
  np.testing.assert_allclose(L.gd(*args, alpha=alpha).weights_BxNxD / (2 * alpha), xty, rtol=1e-4, atol=1e-4)
  # k steps of a tiny step barely move off the first direction: k times the one-step update.
  np.testing.assert_allclose(L.gd(*args, alpha=alpha, steps=5).weights_BxNxD / (10 * alpha), xty,
                             rtol=1e-3, atol=1e-3)


def test_sgd_first_step_equals_gd_and_knn_edge_cases():
  xs, ys = make_prompts(6, 4, 0.5, seed=11)
  args = jnp.asarray(xs), jnp.asarray(ys)
  np.testing.assert_allclose(L.sgd(*args, alpha=0.03).weights_BxNxD[:, 1],
                             L.gd(*args, alpha=0.03).weights_BxNxD[:, 1], rtol=1e-6)
  knn = L.knn(*args, k=3, weighting="uniform").preds_BxN
  np.testing.assert_array_equal(knn[:, 0], 0)  # no context
  np.testing.assert_allclose(knn[:, 2], ys[:, :2].mean(-1), rtol=1e-6)  # fewer than k: all of them
  dup = xs.copy()
  dup[:, 4] = dup[:, 1]  # a context point at distance 0 takes all the inverse-square weight
  weighted = L.knn(jnp.asarray(dup), args[1], k=3, weighting="inverse_sq").preds_BxN
  np.testing.assert_allclose(weighted[:, 4], ys[:, 1], rtol=1e-6)


def test_learners_are_causal():
  """Changing pair i and later leaves every prediction at positions <= i unchanged."""
  xs, ys = make_prompts(10, 4, 0.5, seed=12)
  xs2, ys2 = xs.copy(), ys.copy()
  xs2[:, 6:] += 1.0
  ys2[:, 6:] -= 2.0
  ys2[:, 5] += 3.0  # y at the query position is never read for that query
  pool = jnp.asarray(np.random.default_rng(0).standard_normal((4, 4)), jnp.float32)
  for name in L.FIG1_LEARNERS + ("bayes(0.5,1.0)", "gd_k(0.01,3)", "dmmse"):
    fn = L.get_learner(name, pool_PxD=pool, noise_std=0.5)
    a = fn(jnp.asarray(xs), jnp.asarray(ys)).preds_BxN
    b = fn(jnp.asarray(xs2), jnp.asarray(ys2)).preds_BxN
    np.testing.assert_array_equal(a[:, :6], b[:, :6], err_msg=name)


# ---------------------------------------------------------------------------
# Registry and validation


def test_registry_parses_every_form():
  xs, ys = make_prompts(10, 4, 0.0)  # the causality test's shapes: compilations are reused
  pool = np.ones((4, 4), np.float32)
  names = L.FIG1_LEARNERS + ("bayes(0.5,1.0)", "bayes(0, 1)", "gd_k(0.01,5)", "knn5_uniform", "dmmse")
  for name in names:
    out = L.get_learner(name, pool_PxD=pool, noise_std=0.0)(xs, ys)
    assert out.preds_BxN.shape == ys.shape, name
    assert (out.weights_BxNxD is None) == name.startswith("knn"), name
  for name in ("ridge(0.1)", "gd_k(0.01,5)", "knn3_weighted", "dmmse"):  # traceable as returned
    fn = L.get_learner(name, pool_PxD=pool, noise_std=0.0)
    np.testing.assert_allclose(jax.jit(fn)(xs, ys).preds_BxN, fn(xs, ys).preds_BxN, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(L.get_learner("gd_k(0.01,5)")(xs, ys).weights_BxNxD,
                                L.gd(xs, ys, alpha=0.01, steps=5).weights_BxNxD)
  out = L.ols(xs, ys)
  assert L.preds_of(out) is out.preds_BxN and L.preds_of(ys) is ys


@pytest.mark.parametrize("name,match", [
    ("lasso(0.1)", "unknown learner.*accepted: ols, ridge"),
    ("ridge(abc)", "unknown learner"),
    ("ridge(0)", "use ols"),
    ("ridge(-0.1)", "lam=-0.1 must be >= 0"),
    ("gd(0)", "alpha=0.0 must be > 0"),
    ("sgd(-0.01)", "alpha=-0.01 must be > 0"),
    ("gd_k(0.01,0)", "steps=0.0 must be an integer >= 1"),
    ("knn0_uniform", "k=0 must be an integer >= 1"),
    ("bayes(-1,1)", "noise_std=-1.0 must be >= 0"),
    ("bayes(0.5,0)", "weight_std=0.0 must be > 0"),
    ("dmmse", "dmmse needs keyword arguments pool_PxD"),
])
def test_registry_rejects_bad_names(name, match):
  with pytest.raises(ValueError, match=match):
    L.get_learner(name)


def test_direct_calls_validate_arguments_and_shapes():
  xs, ys = make_prompts(10, 4, 0.0)
  with pytest.raises(ValueError, match="alpha=-1 must be > 0"):
    L.gd(xs, ys, alpha=-1)
  with pytest.raises(ValueError, match="alpha=0 must be > 0"):
    L.sgd(xs, ys, alpha=0)
  with pytest.raises(ValueError, match="use ols"):
    L.ridge(xs, ys, lam=0.0)
  with pytest.raises(ValueError, match="lam=-1 must be >= 0"):
    L.ridge(xs, ys, lam=-1)
  with pytest.raises(ValueError, match="k=0 must be an integer >= 1"):
    L.knn(xs, ys, k=0)
  with pytest.raises(ValueError, match="weighting='cosine'"):
    L.knn(xs, ys, weighting="cosine")
  with pytest.raises(ValueError, match="xs_BxNxD must be 3-D"):
    L.ols(xs[0], ys[0])
  with pytest.raises(ValueError, match=r"ys_BxN must have shape \(6, 10\)"):
    L.averaging(xs, ys[:, :-1])
  with pytest.raises(ValueError, match=r"pool_PxD must have shape \(P, 4\)"):
    L.dmmse(xs, ys, np.ones((3, 5), np.float32), noise_std=0.1)

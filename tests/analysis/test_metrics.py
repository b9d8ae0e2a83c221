"""SPD, MSPD, ILWD, implicit weights and bootstrap error on inputs with known answers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab.analysis import learners as L
from icl_lab.analysis import metrics as M


def prompts(b=4, n=8, d=4, noise=0.0, seed=0):
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((b, n, d)).astype(np.float32)
  ys = (np.einsum("bnd,bd->bn", xs, rng.standard_normal((b, d)))
        + noise * rng.standard_normal((b, n))).astype(np.float32)
  return jnp.asarray(xs), jnp.asarray(ys)


def test_spd_and_ilwd_on_known_inputs():
  a_BxN = np.zeros((3, 5))
  b_BxN = np.array([[1.0] * 5, [2.0] * 5, [3.0] * 5]) * np.arange(5)
  expected_N = np.mean(np.array([1, 4, 9])[:, None] * np.arange(5) ** 2, axis=0)
  np.testing.assert_allclose(M.spd(a_BxN, b_BxN), expected_N)
  np.testing.assert_allclose(M.spd_over_d(a_BxN, b_BxN, d=4), expected_N / 4)
  assert M.spd(jnp.ones((3, 5)), L.LearnerOutput(jnp.ones((3, 5)), None)).dtype == np.float64
  w_a = np.zeros((2, 3, 2))
  w_b = np.stack([np.full((3, 2), 1.0), np.full((3, 2), 2.0)])  # ‖·‖² = 2 and 8
  np.testing.assert_allclose(M.ilwd(w_a, w_b), [5.0, 5.0, 5.0])
  with pytest.raises(ValueError, match="same 2-D shape"):
    M.spd(np.zeros((3, 5)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="same 3-D shape"):
    M.ilwd(w_a, w_b[:, :2])


def test_mspd_ranges_include_zero_context():
  spd_N = np.arange(10.0)
  assert M.mspd(spd_N, d=4) == {"underdetermined": 1.5, "full": 4.5}  # n = 0..3, and 0..9
  assert M.mspd(spd_N[:3], d=8) == {"underdetermined": 1.0, "full": 1.0}  # N < d: all are n < d
  with pytest.raises(ValueError, match="d=0 must be >= 1"):
    M.mspd(spd_N, d=0)


LINEAR = ("ols", "ridge(0.1)", "bayes(0.5,1.0)", "gd(0.02)", "gd_k(0.01,3)", "sgd(0.03)",
          "averaging", "dmmse")


@pytest.mark.parametrize("name", LINEAR)
def test_implicit_weights_recover_linear_learners(name):
  xs, ys = prompts(noise=0.3)
  pool = jax.random.normal(jax.random.key(1), (5, 4))
  fn = L.get_learner(name, pool_PxD=pool, noise_std=0.3)
  # Learners jit internally with α and λ traced, so jit=False shares one compilation across names.
  w_fit, r2 = M.implicit_weights(fn, xs, ys, jax.random.key(0), jit=False)
  w_true = np.asarray(fn(xs, ys).weights_BxNxD, np.float64)
  scale = np.maximum(np.linalg.norm(w_true, axis=-1, keepdims=True), 1.0)
  np.testing.assert_allclose(w_fit / scale, w_true / scale, atol=1e-5)
  np.testing.assert_allclose(r2, 1.0, atol=1e-8)
  assert w_fit.shape == xs.shape and r2.shape == ys.shape


def test_implicit_weights_chunking_and_nonlinear_learner():
  xs, ys = prompts(noise=0.3)
  knn = L.get_learner("knn3_uniform")
  w_big, r2_big = M.implicit_weights(knn, xs, ys, jax.random.key(0))  # default: wrapped in jit
  w_small, r2_small = M.implicit_weights(knn, xs, ys, jax.random.key(0), chunk=37,
                                         jit=False)  # padded tail
  # Equal up to float32 rounding of reductions whose order depends on the batch size.
  np.testing.assert_allclose(w_small, w_big, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(r2_small, r2_big, rtol=1e-5, atol=1e-5)
  # With at most k context points k-NN averages all of them: constant in x′, so R² = 1 ...
  np.testing.assert_array_equal(r2_big[:, :4], 1.0)
  # ... beyond that it is piecewise constant in x′, far from linear.
  assert r2_big[:, 5:].mean() < 0.9


def test_implicit_weights_of_the_transformer_and_bare_preds():
  """A nonlinear learner returning bare preds_BxN: the weights and R² equal a float64 lstsq refit of
  its predictions at the same probes, each query built and predicted one at a time here."""
  from icl_lab import config
  from icl_lab.tasks import regression as model  # the transformer's `predict` returns bare preds_BxN
  cfg = config.get_preset("tiny")
  net = model.build_model(cfg.model, cfg.task, seed=0)
  b, n, d, p = 2, cfg.task.num_exemplars, cfg.task.dim, 3 * cfg.task.dim
  xs, ys = prompts(b=b, n=n, d=d)
  key = jax.random.key(0)
  w, r2 = M.implicit_weights(lambda a, c: model.predict(net, a, c), xs, ys, key, num_probes=p)

  # The probes implicit_weights documents: x′ ~ N(0, I) from `key`, indexed (prefix, prompt, probe).
  probes_NxBxPxD = np.asarray(jax.random.normal(key, (n, b, p, d), xs.dtype))
  xs_np = np.asarray(xs)
  for j in range(b):
    for i in range(n):
      seqs_PxNxD = np.repeat(xs_np[j][None], p, axis=0)
      seqs_PxNxD[:, i] = probes_NxBxPxD[i, j]  # probe at the query position, context 0..i-1 kept
      t_P = np.asarray(model.predict(net, seqs_PxNxD, np.repeat(np.asarray(ys)[j][None], p, 0)), np.float64)[:, i]
      z_PxE = np.concatenate([probes_NxBxPxD[i, j].astype(np.float64), np.ones((p, 1))], -1)
      coef_E = np.linalg.lstsq(z_PxE, t_P, rcond=None)[0]
      r2_ref = 1 - np.sum((t_P - z_PxE @ coef_E) ** 2) / np.sum((t_P - t_P.mean()) ** 2)
      np.testing.assert_allclose(w[j, i], coef_E[:d], rtol=1e-4, atol=1e-4 * np.abs(coef_E[:d]).max())
      assert r2[j, i] == pytest.approx(r2_ref, abs=1e-4)
  # The model is far from linear in x′ at init, so these R² are a real test, not the flat-case 1.
  assert 0.3 < r2.min() and r2.max() < 0.99


def test_implicit_weights_validates_probes():
  xs, ys = prompts()
  with pytest.raises(ValueError, match="num_probes=4 must be >= d \\+ 1 = 5"):
    M.implicit_weights(L.ols, xs, ys, jax.random.key(0), num_probes=4)
  with pytest.raises(ValueError, match="chunk=0"):
    M.implicit_weights(L.ols, xs, ys, jax.random.key(0), chunk=0)


def test_bootstrap_ci_matches_the_normal_interval_of_a_known_distribution():
  """Squared errors of 1 or 9 with equal weight: mean 5, standard deviation 4, so with B = 1600
  prompts the 95% interval of the mean is 5 ± 1.96·4/√1600 = [4.804, 5.196]."""
  b = 1600
  err_B = np.where(np.arange(b) % 2 == 0, 1.0, 3.0)  # |pred − y|: squared, half 1 and half 9
  sign_B = np.where(np.arange(b) % 4 < 2, 1.0, -1.0)
  ys = np.zeros((b, 2))
  preds = np.stack([sign_B * err_B, 2.0 * np.ones(b)], axis=1)  # column 1: every error is 4
  out = M.error_vs_truth(preds, ys, seed=1, num_boot=4000)
  np.testing.assert_allclose(out["mean"], [5.0, 4.0])
  half = 1.96 * 4.0 / np.sqrt(b)
  np.testing.assert_allclose([out["low"][0], out["high"][0]], [5.0 - half, 5.0 + half], atol=0.02)
  # A constant error has no sampling spread: the interval collapses onto it.
  assert out["low"][1] == out["high"][1] == 4.0
  # A 50% interval is the normal one with z = 0.674.
  mid = M.error_vs_truth(preds, ys, seed=1, num_boot=4000, ci=0.5)
  np.testing.assert_allclose(mid["high"][0] - mid["low"][0], 2 * 0.674 * 4.0 / np.sqrt(b), rtol=0.1)
  with pytest.raises(ValueError, match="ci=1.5"):
    M.error_vs_truth(np.zeros((2, 3)), np.zeros((2, 3)), ci=1.5)
  with pytest.raises(ValueError, match="num_boot=0"):
    M.error_vs_truth(np.zeros((2, 3)), np.zeros((2, 3)), num_boot=0)


def test_projection_a_recovers_a_known_mix_and_decides_the_closer_learner():
  rng = np.random.default_rng(0)
  o_BxN = rng.normal(size=(400, 12))
  r_BxN = o_BxN + rng.normal(size=(400, 12))
  for a_true in (0.2, 0.5, 0.9):
    t_BxN = o_BxN + a_true * (r_BxN - o_BxN)
    out = M.projection_a(t_BxN, r_BxN, o_BxN)
    assert out["a"] == pytest.approx(a_true, abs=1e-12)
    assert out["ci95"][0] == pytest.approx(a_true, abs=1e-9) and out["ci95"][1] == pytest.approx(a_true, abs=1e-9)
  # The identity behind the measure: SPD(T, R) - SPD(T, O) = SPD(R, O)(1 - 2a), any T.
  t_BxN = o_BxN + 0.7 * (r_BxN - o_BxN) + rng.normal(size=(400, 12))
  a = M.projection_a(t_BxN, r_BxN, o_BxN)["a"]
  lhs = M.spd(t_BxN, r_BxN).mean() - M.spd(t_BxN, o_BxN).mean()
  assert lhs == pytest.approx(M.spd(r_BxN, o_BxN).mean() * (1 - 2 * a), rel=1e-10)
  lo, hi = M.projection_a(t_BxN, r_BxN, o_BxN)["ci95"]
  assert lo < a < hi and hi - lo < 0.2
  with pytest.raises(ValueError, match="a is undefined"):
    M.projection_a(t_BxN, o_BxN, o_BxN)


def test_effective_ridge_recovers_the_lambda_of_a_ridge_learner_and_ols():
  xs, ys = prompts(b=256, n=12, d=4)
  for lam in (0.0, 0.1, M.LAMBDA_GRID[20]):
    preds = L.ols(xs, ys).preds_BxN if lam == 0 else L.ridge(xs, ys, lam).preds_BxN
    r = M.effective_ridge(preds, xs, ys, num_boot=200)
    assert r["lam"] == pytest.approx(lam) and r["ci95"] == pytest.approx([lam, lam])
    assert min(r["mspd_over_d"]) == pytest.approx(0.0, abs=1e-10)
  # Halfway (in predictions) between ridge(0.1) and ridge(1.0): λ* falls strictly between them.
  mid = 0.5 * (np.asarray(L.ridge(xs, ys, 0.1).preds_BxN) + np.asarray(L.ridge(xs, ys, 1.0).preds_BxN))
  r = M.effective_ridge(mid, xs, ys, num_boot=200)
  assert 0.1 < r["lam"] < 1.0 and r["ci95"][0] <= r["lam"] <= r["ci95"][1]
  with pytest.raises(ValueError, match="increasing"):
    M.effective_ridge(mid, xs, ys, lams=(0.5, 0.1))

"""The sampler is a pure function of (seed, step) with independent x, w and noise streams."""

import dataclasses

import jax.numpy as jnp
import numpy as np

from icl_lab.config import TaskConfig
from icl_lab.tasks import regression

CFG = TaskConfig(dim=5, num_exemplars=7, noise_std=0.5, weight_std=1.5)


def test_sampling_is_deterministic_in_seed_and_step():
  a = regression.sample_batch(CFG, 3, 11, 16)
  b = regression.sample_batch(CFG, 3, 11, 16)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  c = regression.sample_batch(CFG, 3, 12, 16)
  d = regression.sample_batch(CFG, 4, 11, 16)
  assert not np.allclose(a.xs_BxNxD, c.xs_BxNxD) and not np.allclose(a.xs_BxNxD, d.xs_BxNxD)


def test_streams_are_independent():
  """Changing σ leaves x and w untouched; the noise is exactly y − wᵀx and scales with σ."""
  quiet = regression.sample_batch(dataclasses.replace(CFG, noise_std=0.0), 0, 5, 32)
  noisy = regression.sample_batch(CFG, 0, 5, 32)
  np.testing.assert_array_equal(quiet.xs_BxNxD, noisy.xs_BxNxD)
  np.testing.assert_array_equal(quiet.ws_BxD, noisy.ws_BxD)
  np.testing.assert_allclose(quiet.ys_BxN, np.einsum("bnd,bd->bn", quiet.xs_BxNxD, quiet.ws_BxD), atol=1e-5)
  eps = np.asarray(noisy.ys_BxN - quiet.ys_BxN)
  assert 0.4 < eps.std() < 0.6
  # The three streams are not copies of one another.
  x_flat = np.asarray(quiet.xs_BxNxD).ravel()[:32]
  w_flat = np.asarray(quiet.ws_BxD).ravel()[:32] / CFG.weight_std
  assert abs(np.corrcoef(x_flat, w_flat)[0, 1]) < 0.6


def test_moments_match_the_task():
  big = regression.sample_batch(CFG, 1, 0, 4096)
  assert abs(float(big.ws_BxD.std()) - 1.5) < 0.05
  assert abs(float(big.xs_BxNxD.std()) - 1.0) < 0.02
  zero_mse = regression.zero_predictor_mse(CFG)
  assert abs(float(jnp.mean(big.ys_BxN**2)) - zero_mse) < 0.05 * zero_mse


def test_skewed_covariance_keeps_trace():
  cfg = dataclasses.replace(CFG, x_cov="skewed", skew_power=1.0, noise_std=0.0)
  b = regression.sample_batch(cfg, 0, 0, 8192)
  var_D = np.asarray(b.xs_BxNxD).reshape(-1, cfg.dim).var(0)
  assert var_D[0] > 2 * var_D[-1]
  assert abs(var_D.sum() - cfg.dim) < 0.1


def test_task_pool_draws_from_a_fixed_set():
  cfg = dataclasses.replace(CFG, task_pool_size=3)
  ws = np.concatenate([np.asarray(regression.sample_batch(cfg, 2, s, 64).ws_BxD) for s in range(3)])
  assert len(np.unique(ws.round(6), axis=0)) == 3
  np.testing.assert_allclose(np.unique(ws.round(6), axis=0),
                             np.unique(np.asarray(regression.task_pool_PxD(cfg, 2)).round(6), axis=0))


def test_ones_weights_for_control_model():
  b = regression.sample_batch(dataclasses.replace(CFG, weights="ones"), 0, 0, 4)
  np.testing.assert_array_equal(b.ws_BxD, 1.0)


def test_curriculum_masks_trailing_dims_then_uses_all():
  cfg = dataclasses.replace(CFG, curriculum_start_dim=2, curriculum_steps=100)
  early = regression.sample_batch(cfg, 0, 0, 8)
  assert np.all(np.asarray(early.xs_BxNxD)[..., 2:] == 0)
  late = regression.sample_batch(cfg, 0, 100, 8)
  assert np.all(np.asarray(late.xs_BxNxD)[..., -1] != 0)
  assert int(regression.active_dims(cfg, 50)) == 3


def test_paper_token_format_interleaves_with_a_flag_slot():
  b = regression.sample_batch(CFG, 0, 0, 2)
  tok = np.asarray(regression.encode(b.xs_BxNxD, b.ys_BxN, "paper"))
  assert tok.shape == (2, 14, 6)
  np.testing.assert_array_equal(tok[:, 0::2, 0], 0.0)
  np.testing.assert_array_equal(tok[:, 0::2, 1:], b.xs_BxNxD)
  np.testing.assert_array_equal(tok[:, 1::2, 0], b.ys_BxN)
  np.testing.assert_array_equal(tok[:, 1::2, 1:], 0.0)
  garg = np.asarray(regression.encode(b.xs_BxNxD, b.ys_BxN, "garg"))
  assert garg.shape == (2, 14, 5)
  np.testing.assert_array_equal(garg[:, 0::2], b.xs_BxNxD)
  np.testing.assert_array_equal(garg[:, 1::2, 0], b.ys_BxN)

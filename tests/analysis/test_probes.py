"""Probes: targets match the learners, decoding works when (and only when) the state holds the target."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from icl_lab.analysis import learners, probes
from icl_lab.config import ModelConfig, TaskConfig
from icl_lab.studies import fig4
from icl_lab.tasks import regression

TASK = TaskConfig(dim=4, num_exemplars=8)

# Synthetic states: layer 0 is noise, layer 1 holds the target linearly (plus noise) at every
# token, layer 2 holds it only at a token the probe may not read (after the query x̃ᵢ₊₁).
L, B_TRAIN, B_TEST, T, H, D = 3, 512, 256, 10, 16, 3
PREFIXES = (2, 4)  # the probes may read tokens 0..4 and 0..8
SYN_CFG = probes.ProbeConfig(head="linear", proj_dim=32, steps=300, batch_size=64, steps_per_call=100)


def _synthetic(seed=0):
  rng = np.random.default_rng(seed)
  b = B_TRAIN + B_TEST
  y_BxPxD = rng.normal(size=(b, len(PREFIXES), D)).astype(np.float32)
  mix_PxDxH = rng.normal(size=(len(PREFIXES), D, H))
  signal_BxH = np.einsum("bpd,pdh->bh", y_BxPxD, mix_PxDxH)
  h_LxBxTxH = rng.normal(size=(L, b, T, H)).astype(np.float32)
  h_LxBxTxH[1] += 3 * signal_BxH[:, None, :]
  h_LxBxTxH[2, :, T - 1] += 3 * signal_BxH  # token 9 > 2·4: never readable
  split = lambda a, axis: (np.take(a, range(B_TRAIN), axis), np.take(a, range(B_TRAIN, b), axis))
  return split(h_LxBxTxH, 1), split(y_BxPxD, 0)


@pytest.fixture(scope="module")
def synthetic_fit():
  (h_tr, h_te), (y_tr, y_te) = _synthetic()
  fit = probes.train_probes(h_tr, y_tr, PREFIXES, SYN_CFG)
  return fit, probes.score_probes(fit, h_te, y_te, y_tr)


# ---------------------------------------------------------------------------
# Targets


def test_targets_match_learners_and_float64_numpy():
  b = regression.sample_batch(TASK, 3, 0, 6, use_curriculum=False)
  names = ["xty", "w_ols", "w", "ridge(0.1)", "gd(0.01)"]
  out = probes.probe_targets(*b, names)
  xs, ys, ws = (np.asarray(a, np.float64) for a in b)
  n, d = TASK.num_exemplars, TASK.dim
  for name in names:
    assert out[name].shape == (6, n, d)
  for i in range(n):
    x_BxIxD, y_BxI = xs[:, :i], ys[:, :i]
    xty_BxD = np.einsum("bid,bi->bd", x_BxIxD, y_BxI)
    np.testing.assert_allclose(out["xty"][:, i], xty_BxD, rtol=1e-5, atol=1e-5)
    ols_BxD = np.stack([np.linalg.pinv(x) @ y for x, y in zip(x_BxIxD, y_BxI)]) if i else 0 * xty_BxD
    np.testing.assert_allclose(out["w_ols"][:, i], ols_BxD, rtol=1e-4, atol=1e-4)
    gram_BxDxD = np.einsum("bid,bie->bde", x_BxIxD, x_BxIxD) + 0.1 * np.eye(d)
    ridge_BxD = np.linalg.solve(gram_BxDxD, xty_BxD[..., None])[..., 0]
    np.testing.assert_allclose(out["ridge(0.1)"][:, i], ridge_BxD, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["gd(0.01)"][:, i], 2 * 0.01 * xty_BxD, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["w"][:, i], ws, rtol=0, atol=0)
  # The same arrays the learners library hands out.
  np.testing.assert_array_equal(out["w_ols"], learners.ols(b.xs_BxNxD, b.ys_BxN).weights_BxNxD)
  np.testing.assert_array_equal(out["ridge(0.1)"], learners.ridge(b.xs_BxNxD, b.ys_BxN, 0.1).weights_BxNxD)


def test_target_without_weights_is_refused():
  b = regression.sample_batch(TASK, 0, 0, 2, use_curriculum=False)
  with pytest.raises(ValueError, match="no weight vector"):
    probes.probe_targets(*b, ["knn3_uniform"])


# ---------------------------------------------------------------------------
# Hidden states and the attention mask


def test_collect_hidden_matches_one_forward_pass_in_chunks():
  m = regression.build_model(ModelConfig(layers=2, hidden=16, heads=2), TASK, seed=0)
  b = regression.sample_batch(TASK, 0, 0, 5, use_curriculum=False)
  h_LxBxTxH = probes.collect_hidden(m, b.xs_BxNxD, b.ys_BxN, chunk_size=2)  # 2 + 2 + 1 (padded)
  assert h_LxBxTxH.shape == (3, 5, 2 * TASK.num_exemplars, 16)
  _, ref = m(regression.encode(b.xs_BxNxD, b.ys_BxN), return_hidden=True)
  np.testing.assert_allclose(h_LxBxTxH, ref, rtol=1e-5, atol=1e-5)


def test_attention_never_reads_disallowed_positions():
  allowed_PxT = probes.allowed_positions([0, 2, 4], T)
  np.testing.assert_array_equal(allowed_PxT.sum(1), [1, 5, 9])
  with pytest.raises(ValueError):
    probes.allowed_positions([5], T)  # token 10 does not exist
  cfg = probes.ProbeConfig(head="mlp", proj_dim=8)
  params = probes.init_probe(jax.random.key(0), H, T, D, cfg)
  # Random scores, so the check does not rest on the uniform start.
  params["query_H"] = jax.random.normal(jax.random.key(1), (H,))
  params["pos_T"] = 3 * jax.random.normal(jax.random.key(2), (T,))
  h_BxTxH = jax.random.normal(jax.random.key(3), (4, T, H))
  apply = jax.jit(lambda h, allowed: probes.apply_probe(params, h, allowed, "mlp"))
  grad_fn = jax.jit(jax.grad(lambda h, allowed: apply(h, allowed)[0].sum()))
  for i in (0, 2, 4):
    allowed_T = probes.allowed_positions([i], T)[0]
    pred_BxD, attn_BxT = apply(h_BxTxH, allowed_T)
    assert pred_BxD.shape == (4, D) and attn_BxT.shape == (4, T)
    np.testing.assert_array_equal(attn_BxT[:, 2 * i + 1:], 0.0)
    np.testing.assert_allclose(attn_BxT.sum(-1), 1.0, rtol=1e-6)
    grad = grad_fn(h_BxTxH, allowed_T)
    np.testing.assert_array_equal(grad[:, 2 * i + 1:], 0.0)
    assert np.abs(np.asarray(grad[:, : 2 * i + 1])).sum() > 0


# ---------------------------------------------------------------------------
# Decoding


def test_linear_probe_decodes_a_linearly_held_target(synthetic_fit):
  _, sc = synthetic_fit
  assert sc.mse_LxP.shape == sc.r2_LxP.shape == (L, len(PREFIXES))
  assert (sc.r2_LxP[1] > 0.95).all(), sc.r2_LxP


def test_probe_scores_zero_on_states_without_the_target(synthetic_fit):
  _, sc = synthetic_fit
  # Layer 0 is independent noise; layer 2 has the target only after the query token.
  assert (sc.r2_LxP[0] < 0.1).all() and (sc.r2_LxP[2] < 0.1).all(), sc.r2_LxP
  assert (sc.r2_LxP[[0, 2]] > -0.2).all(), sc.r2_LxP  # near the mean predictor, not broken
  np.testing.assert_array_equal(sc.attn_mean_LxPxT[:, 0, 2 * PREFIXES[0] + 1:], 0.0)


def test_last_token_ridge_baseline():
  (h_tr, h_te), (y_tr, y_te) = _synthetic()
  sc = probes.last_token_ridge(h_tr, y_tr, h_te, y_te, PREFIXES)
  assert (sc.r2_LxP[1] > 0.95).all() and (sc.r2_LxP[[0, 2]] < 0.1).all(), sc.r2_LxP


def test_last_token_ridge_is_exact_on_a_linear_target_and_blind_to_a_shuffled_one():
  """States at the query token 2i that are an exact affine map of the target: R² = 1 up to the tiny
  penalty. The same targets shuffled across prompts carry nothing: R² ≈ 0 (−H/B from overfitting)."""
  rng = np.random.default_rng(1)
  b = B_TRAIN + B_TEST
  h_LxBxTxH = rng.normal(size=(1, b, T, H))
  map_PxHxD = rng.normal(size=(len(PREFIXES), H, D))
  tok_P = 2 * np.asarray(PREFIXES)
  y_BxPxD = np.einsum("bph,phd->bpd", h_LxBxTxH[0][:, tok_P], map_PxHxD) + 5.0  # offset: the intercept is fitted
  tr, te = slice(0, B_TRAIN), slice(B_TRAIN, b)
  sc = probes.last_token_ridge(h_LxBxTxH[:, tr], y_BxPxD[tr], h_LxBxTxH[:, te], y_BxPxD[te], PREFIXES, lam=1e-9)
  # The baseline is the held-out MSE per coordinate of the training-set mean, by hand.
  base_P = ((y_BxPxD[te] - y_BxPxD[tr].mean(0)) ** 2).mean((0, 2))
  np.testing.assert_allclose(sc.baseline_mse_P, base_P, rtol=1e-12)
  np.testing.assert_allclose(sc.r2_LxP, 1.0, atol=1e-6)
  np.testing.assert_allclose(sc.mse_LxP, 0.0, atol=1e-6 * base_P.max())
  shuffled = y_BxPxD[rng.permutation(B_TRAIN)]
  sc = probes.last_token_ridge(h_LxBxTxH[:, tr], shuffled, h_LxBxTxH[:, te], y_BxPxD[te], PREFIXES, lam=1e-9)
  assert (np.abs(sc.r2_LxP) < 0.1).all(), sc.r2_LxP
  np.testing.assert_allclose(sc.r2_LxP, 1 - sc.mse_LxP / base_P, rtol=1e-12)


def test_first_layer_reaching_on_hand_values():
  assert probes.first_layer_reaching([0.1, 0.9, 0.95, 0.5]) == {"layer": 1, "best_layer": 2, "best_r2": 0.95}
  # Just below the threshold does not count; NaN layers are skipped for the best.
  assert probes.first_layer_reaching([np.nan, 0.8999, 0.3]) == {"layer": None, "best_layer": 1, "best_r2": 0.8999}
  assert probes.first_layer_reaching([0.2, 0.5], threshold=0.5) == {"layer": 1, "best_layer": 1, "best_r2": 0.5}
  assert probes.first_layer_reaching([np.nan, np.nan]) == {"layer": None, "best_layer": None, "best_r2": None}


def test_training_is_deterministic_given_the_seed(synthetic_fit):
  fit, _ = synthetic_fit
  (h_tr, _), (y_tr, _) = _synthetic()
  again = probes.train_probes(h_tr, y_tr, PREFIXES, SYN_CFG)
  for a, b in zip(jax.tree.leaves(fit.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(fit.loss_curve, again.loss_curve)
  other = probes.train_probes(h_tr, y_tr, PREFIXES, dataclasses.replace(SYN_CFG, seed=1))
  assert not np.array_equal(fit.params["proj_HxP"], other.params["proj_HxP"])


def test_probe_study_json_and_figure(tmp_path):
  """The experiment's per-model study on a tiny untrained model: structure, then the figure."""
  m = regression.build_model(ModelConfig(layers=2, hidden=16, heads=2), TASK, seed=0)
  cfg = probes.ProbeConfig(proj_dim=16, steps=20, batch_size=32, steps_per_call=20)
  heads = ("mlp", probes.RIDGE_HEAD)  # the linear head's path is covered above
  study = probes.probe_study(m, TASK, targets=["xty", "w_ols"], prefixes=[3, 7], probe_cfg=cfg,
                             heads=heads, num_train=48, num_test=48, num_attn_prompts=4)
  assert study["layers"] == [0, 1, 2] and study["prefix"] == 7
  # The baselines, by hand: held-out MSE of the training-set mean, on batches 0 and 1 of seed 1234.
  (xs_tr, ys_tr, _), (xs_te, ys_te, _) = (
      (np.asarray(a, np.float64) for a in regression.sample_batch(TASK, 1234, step, 48, use_curriculum=False))
      for step in (0, 1))
  for target, fn in (("xty", lambda x, y, i: np.einsum("bid,bi->bd", x[:, :i], y[:, :i])),
                     ("w_ols", lambda x, y, i: np.stack([np.linalg.pinv(a[:i]) @ c[:i] for a, c in zip(x, y)]))):
    for i in (3, 7):
      base = ((fn(xs_te, ys_te, i) - fn(xs_tr, ys_tr, i).mean(0)) ** 2).mean()
      assert study["baseline_mse_by_prefix"][target][str(i)] == pytest.approx(base, rel=1e-4)
    assert study["baseline_mse"][target] == study["baseline_mse_by_prefix"][target]["7"]
  for target in ("xty", "w_ols"):
    for head in heads:
      entry = study["results"][target][head]
      assert len(entry["mse"]) == len(entry["r2"]) == 3 and set(entry["by_prefix"]) == {"3", "7"}
      assert entry["by_prefix"]["7"]["r2"] == entry["r2"]
      for i in ("3", "7"):  # R² = 1 − MSE / baseline at every layer and prefix
        by = entry["by_prefix"][i]
        np.testing.assert_allclose(by["r2"], 1 - np.asarray(by["mse"]) / study["baseline_mse_by_prefix"][target][i],
                                   rtol=1e-9)
      r2 = entry["r2"]
      hits = [l for l, v in enumerate(r2) if v >= 0.9]
      assert study["first_layer_r2_ge_0.9"][target][head] == {
          "layer": hits[0] if hits else None, "best_layer": int(np.argmax(r2)), "best_r2": max(r2)}
    att = study["attention"][target]
    assert np.shape(att["mean_by_layer"]) == (3, 16) and np.shape(att["best_layer_prompts"]) == (4, 16)
    # Attention weights are distributions over the tokens 0..14 the probe may read.
    np.testing.assert_allclose(np.sum(att["mean_by_layer"], -1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sum(att["best_layer_prompts"], -1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(att["best_layer_prompts"])[:, 15:] == 0)  # ỹ₈ is after the query x̃₈
    assert np.all(np.asarray(att["mean_by_layer"])[:, 15:] == 0)
  payload = {**study, "d": 4, "control": study}
  path = tmp_path / "fig4_probes.json"
  path.write_text(json.dumps(payload))
  paths = fig4.plot(path)
  assert {p.name for p in paths} == {"fig4_probes.png", "fig4_probes.pdf"}
  assert all(p.stat().st_size > 0 for p in paths)


def test_fig4_configs_train_on_all_four_dims():
  """The quick probing model and its control reach d = 4 inside their run (curriculum at 40%)."""
  for control, cfg in zip((False, True), fig4.model_configs("quick")):
    assert (cfg.task.dim, cfg.model.layers, cfg.task.curriculum_steps) == (4, 8, 3200)
    assert cfg.task.curriculum_steps < cfg.train.steps
    assert cfg.task.weights == ("ones" if control else "gaussian")

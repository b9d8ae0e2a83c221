"""The figure studies run end to end on tiny models and leave results a reader can check."""

import subprocess
import sys

import numpy as np
import pytest

from icl_lab import config, learners, manifest, plotting, sweeps
from icl_lab.io import read_json

FAST = ["train.steps=40", "train.checkpoint_every=20"]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
  root = tmp_path_factory.mktemp("rep")
  proc = subprocess.run([sys.executable, "-m", "icl_lab.cli", "replicate", "--preset", "tiny",
                         "--runs-dir", str(root / "runs"), "--out", str(root / "figs")],
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr
  return root, proc.stdout


def test_replicate_writes_fig1_and_fig6_with_shared_keys(replicated):
  root, stdout = replicated
  fig1 = read_json(root / "figs" / "fig1_noiseless_tiny.json")
  n = len(fig1["prefix_lengths"])
  assert fig1["prefix_lengths"] == list(range(n))
  for key in ("spd_over_d", "ilwd", "error_vs_truth"):
    names = set(fig1[key]) - {"transformer"}
    assert names == set(learners.FIG1_LEARNERS), key
    assert all(len(v) == n for v in fig1[key].values())
  assert "transformer" in fig1["error_vs_truth"]
  # The table marks the learner with the lowest full-range MSPD/d, as stored.
  best = min(fig1["mspd_over_d"], key=lambda k: fig1["mspd_over_d"][k]["full"])
  assert fig1["closest_learner"] == best
  # The projection a, recomputed from its definition, decides OLS vs each ridge consistently.
  for name, p in fig1["projection_a"].items():
    assert p["ref"] == "ols" and p["ci95"][0] <= p["a"] <= p["ci95"][1]
    mspd = fig1["mspd_over_d"]
    assert (p["a"] < 0.5) == (mspd["ols"]["full"] < mspd[name]["full"])
  assert f"{best}" in [l.split()[0] for l in stdout.splitlines() if "<- closest" in l]
  fig6 = read_json(root / "figs" / "fig6_linearity_tiny.json")
  assert len(fig6["r2_mean"]) == n and all(-1.0 <= r <= 1.0 + 1e-9 for r in fig6["r2_mean"])
  entry = read_json(root / "figs" / "MANIFEST.json")["fig1_noiseless_tiny"]
  assert {"command", "preset", "git_commit", "seeds", "wall_clock_s", "device"} <= set(entry)
  assert entry["preset"] == "tiny" and entry["wall_clock_s"] > 0
  for ext in ("png", "pdf"):
    assert (root / "figs" / f"fig1_noiseless_tiny.{ext}").stat().st_size > 1000


def test_spd_in_results_matches_a_recomputation(replicated):
  """SPD/d to OLS, recomputed from the saved model on the same held-out prompts."""
  root, _ = replicated
  from icl_lab import evaluate, metrics, train
  fig1 = read_json(root / "figs" / "fig1_noiseless_tiny.json")
  cfg, model = train.load_model(root / "runs" / fig1["run"])
  batch = evaluate.eval_batch(cfg.task, fig1["num_prompts"])
  preds = evaluate.predict_in_chunks(evaluate.model_predict_fn(model), batch.xs_BxNxD, batch.ys_BxN)
  ols = learners.ols(batch.xs_BxNxD, batch.ys_BxN).preds_BxN
  np.testing.assert_allclose(fig1["spd_over_d"]["ols"], metrics.spd_over_d(preds, ols, cfg.task.dim), rtol=1e-5)


def test_figures_redraw_from_json_alone(replicated, tmp_path):
  root, _ = replicated
  for f in (root / "figs").glob("*.json"):
    (tmp_path / f.name).write_text(f.read_text())
  drawn = plotting.redraw_all(tmp_path)
  assert {p.name for p in drawn} >= {"fig1_noiseless_tiny.png", "fig1_noiseless_tiny.pdf",
                                     "fig6_linearity_tiny.png", "fig6_linearity_tiny.pdf"}


def test_fig2_and_fig3_sweeps_run_on_tiny_models(tmp_path):
  base = config.apply_overrides(config.get_preset("tiny"), FAST)
  grid = ((0.0, 1.0), (0.5, 1.0))
  r2 = sweeps.run_fig2(base, "fig2_noise_test", tmp_path / "runs", tmp_path, num_prompts=64,
                       grid=grid, rows=("ols", "ridge(0.25)"))
  assert r2["noise_ratios"] == [0.0, 0.25] and r2["bayes_row"] == [0, 1]
  assert np.asarray(r2["mspd_over_d_full"]).shape == (2, 2)
  r3 = sweeps.run_fig3(base, "fig3_test", tmp_path / "runs", tmp_path, seeds=(0, 1), depths=(1,),
                       widths=(16,), num_prompts=64, learner_names=("ols", "gd(0.02)"))
  spread = r3["depth"]["mspd_over_d"]["ols"]
  assert spread["min"][0] <= spread["mean"][0] <= spread["max"][0]
  assert len(r3["depth"]["runs"]) == 2  # two seeds: two distinct runs
  assert len(set(r3["depth"]["runs"])) == 2
  man = read_json(tmp_path / "MANIFEST.json")
  assert {"fig2_noise_test", "fig3_test"} <= set(man)
  assert (tmp_path / "fig2_noise_test.png").exists() and (tmp_path / "fig3_test.pdf").exists()


def test_results_stem_never_overwrites_committed_names():
  quick = config.get_preset("quick")
  # Fig. 1's headline files come from the cpu preset; the quick smoke run writes beside them.
  assert manifest.results_stem("fig1_noiseless", config.get_preset("cpu"), False) == "fig1_noiseless"
  assert manifest.results_stem("fig1_noiseless", quick, customized=False) == "fig1_noiseless_quick"
  assert manifest.results_stem("fig2_noise", quick, customized=False) == "fig2_noise"
  assert manifest.results_stem("fig1_noiseless", config.get_preset("paper"), False) == "fig1_noiseless_paper"
  custom = config.apply_overrides(quick, ["model.layers=2"])
  assert manifest.results_stem("fig1_noiseless", custom, True) == f"fig1_noiseless_{custom.run_name()}"

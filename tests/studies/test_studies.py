"""The studies run end to end on tiny models, write where the results rule says, and leave results
(criteria, figures, README tables) a reader can check against their own data."""

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icl_lab import cli, results, studies
from icl_lab.analysis import learners
from icl_lab.config import ConfigError
from icl_lab.io import read_json, write_json
from icl_lab.studies import fig2, fig3, readme
from icl_lab.studies.base import RunRequest, settings_for

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / "figures"
# The quick Fig. 2 and Fig. 3 results, kept as experiments since their headline became the cpu preset.
QUICK_FIG2 = REPO / "experiments" / "fig2_quick" / "fig2_noise.json"
QUICK_FIG3 = REPO / "experiments" / "fig3_quick" / "fig3_depth_width.json"


def icl_lab(*args, cwd=None, timeout=900):
  return subprocess.run([sys.executable, "-m", "icl_lab.cli", *args], capture_output=True, text=True,
                        timeout=timeout, cwd=cwd)


# ---------------------------------------------------------------------------
# The registry


def test_registry_lists_every_study_and_owns_every_committed_results_file():
  assert list(studies.STUDIES) == ["fig1", "fig2", "fig3", "fig4", "constructions", "knowledge_entropy",
                                  "knowledge_capacity", "kg_phase", "kg_universality", "kg_stitching", "kg_cone",
                                  "kg_transformer", "kg_in_context", "infusion"]
  for name, study in studies.STUDIES.items():
    assert study.name == name and "tiny" in study.presets and study.headline_preset in study.presets
    assert set(studies.MODULES[name].SETTINGS) == set(study.presets)
  assert studies.STUDIES["fig1"].results_stems == ("fig1_noiseless", "fig6_linearity")
  for path in FIGURES.glob("*.json"):
    if path.name != "MANIFEST.json":
      assert studies.output_for(path.stem) is not None, path
  with pytest.raises(ConfigError, match="unknown study 'fig9'"):
    studies.get("fig9")


def test_quick_settings_reproduce_the_committed_run_names():
  """The per-preset settings collected in the study modules train exactly the committed models."""
  fig2_runs = read_json(QUICK_FIG2)["runs"]
  assert [c.run_name() for c in fig2.configs("quick")] == fig2_runs
  f3 = read_json(QUICK_FIG3)
  sweeps = fig3.sweep_configs("quick")
  for panel in ("depth", "width"):
    assert [c.run_name() for cfgs in sweeps[panel] for c in cfgs] == f3[panel]["runs"]
  f4 = read_json(FIGURES / "fig4_probes.json")["runs"]
  assert [c.run_name() for c in studies.MODULES["fig4"].configs("quick")] == [f4["main"]["run"],
                                                                              f4["control"]["run"]]


def test_fig3_seed_summary_and_closest_on_a_case_computed_by_hand():
  s = fig3.seed_summary([[1.0, 3.0], [2.0, 2.0], [0.5, 4.5]])
  assert s == {"mean": [2.0, 2.0, 2.5], "min": [1.0, 2.0, 0.5], "max": [3.0, 2.0, 4.5],
               "per_seed": [[1.0, 3.0], [2.0, 2.0], [0.5, 4.5]]}
  by = {"ols": {"mean": [0.3, 0.1]}, "ridge(0.1)": {"mean": [0.2, 0.4]}}
  assert [fig3.closest(by, 0), fig3.closest(by, 1)] == ["ridge(0.1)", "ols"]
  r = {"depth": {"values": [1, 8], "mspd_over_d": by}}
  (c,) = fig3.criteria(r)
  assert (c.value, c.met, c.target) == ("ols", True, "ols") and "L = 8" in c.name


def test_fig2_bayes_hits_on_a_case_computed_by_hand():
  m = [[0.1, 5.0, 5.0], [0.2, 0.1, 0.3], [0.3, 0.2, 0.2]]  # minima on rows 0, 1, 2 (tie-free)
  assert fig2.bayes_hits(m, [0, 1, 2]) == 3 and fig2.bayes_hits(m, [0, 2, 1]) == 1
  (c,) = fig2.criteria({"noise_ratios": [0, 0.1, 0.2], "bayes_row": [0, 2, 1], "mspd_over_d_full": m})
  assert (c.value, c.met, c.target) == (1, False, "≥ 2 of 3")


# ---------------------------------------------------------------------------
# Criteria


def test_committed_results_carry_criteria_computed_from_their_own_data():
  for path in sorted(FIGURES.glob("*.json")):
    if path.name == "MANIFEST.json":
      continue
    crit = studies.criteria_of(path)
    assert crit, path
    for c in crit:
      assert set(c) - {"inconclusive"} == {"name", "value", "target", "met"} and isinstance(c["met"], bool)
      assert c.get("inconclusive", True) is True and not (c["met"] and c.get("inconclusive"))
      assert isinstance(c["name"], str) and isinstance(c["target"], str)
    # `icl-lab criteria --write` stored them; they must still agree with the data, to rounding: a
    # least-squares fit (the infusion law's) can differ in its last bits from one process to another.
    assert _same_to_rounding(read_json(path).get("criteria"), crit), f"{path}: run `icl-lab criteria --write`"


def _same_to_rounding(a, b) -> bool:
  if isinstance(a, float) or isinstance(b, float):
    return a is not None and b is not None and not isinstance(a, bool | str) and a == pytest.approx(b, rel=1e-9,
                                                                                                       abs=1e-12)
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(_same_to_rounding(a[k], b[k]) for k in a)
  if isinstance(a, list) and isinstance(b, list):
    return len(a) == len(b) and all(_same_to_rounding(x, y) for x, y in zip(a, b))
  return a == b


def test_criteria_agree_to_rounding_but_not_past_it():
  stored = [{"name": "fit", "value": [[0.85, -4.6540757962131486e-05]], "target": "c > 0", "met": False}]
  again = [{"name": "fit", "value": [[0.85, -4.654075796228785e-05]], "target": "c > 0", "met": False}]
  assert _same_to_rounding(stored, again)
  assert not _same_to_rounding(stored, [{**again[0], "value": [[0.85, -4.66e-05]]}])
  assert not _same_to_rounding(stored, [{**again[0], "met": True}])
  assert not _same_to_rounding(stored, [{**again[0], "value": [[0.85]]}])


def test_fig1_criteria_without_projection_report_null_and_missed():
  r = {"mspd_over_d": {"ols": {"full": 0.01}, "ridge(0.1)": {"full": 0.02}}}
  closest, proj = studies.fig1.criteria_fig1(r)
  assert (closest.value, closest.met) == ("ols", True)
  assert (proj.value, proj.met) == (None, False)
  r["projection_a"] = {"ridge(0.1)": {"a": 0.4, "ci95": [0.3, 0.55], "ref": "ols"}}
  assert studies.fig1.criteria_fig1(r)[1].met is False  # the interval reaches past 0.5
  r["projection_a"]["ridge(0.1)"]["ci95"] = [0.3, 0.49]
  assert studies.fig1.criteria_fig1(r)[1].to_dict() == {
      "name": proj.name, "value": 0.4, "target": proj.target, "met": True}


def test_add_criteria_changes_no_other_key(tmp_path):
  payload = read_json(QUICK_FIG2)
  payload.pop("criteria", None)
  write_json(tmp_path / "fig2_noise.json", payload)
  assert studies.add_criteria(tmp_path) == [tmp_path / "fig2_noise.json"]
  after = read_json(tmp_path / "fig2_noise.json")
  assert list(after) == list(payload) + ["criteria"]
  assert {k: after[k] for k in payload} == payload
  assert studies.add_criteria(tmp_path) == []  # idempotent


# ---------------------------------------------------------------------------
# The results rule and writer


def test_results_rule_everything_to_results_and_figures_only_when_promoted():
  head = results.destination("quick", "quick")
  assert (head.folder, head.suffix, head.headline, head.promote, head.reproduces) == \
      (Path("results"), "", True, False, True)
  promoted = results.destination("quick", "quick", promote=True)
  assert (promoted.folder, promoted.suffix, promoted.promote, promoted.reproduces) == (Path("figures"), "", True, False)
  other = results.destination("paper", "quick")
  assert (other.folder, other.suffix, other.headline, other.reproduces) == (Path("results"), "_paper", False, False)
  custom = results.destination("quick", "quick", ["model.layers=2"])
  assert custom.folder == Path("results") and custom.suffix.startswith("_quick-custom-") and not custom.headline
  assert custom.suffix == results.destination("quick", "quick", ["model.layers=2"]).suffix
  assert custom.suffix != results.destination("quick", "quick", ["model.layers=4"]).suffix
  # Fig. 1's headline is the cpu preset: the quick smoke run writes beside it, in results/.
  assert results.destination("quick", studies.fig1.HEADLINE_PRESET).path("fig1_noiseless") == \
      Path("results/fig1_noiseless_quick.json")
  for args, kw in ((("tiny", "quick"), {"promote": True}), (("quick", "quick", ["train.steps=5"]), {"promote": True}),
                   (("quick", "quick"), {"promote": True, "out": "elsewhere"})):
    with pytest.raises(ConfigError, match="promote"):
      results.destination(*args, **kw)


def test_writer_never_writes_non_headline_results_into_figures(tmp_path, monkeypatch):
  for folder in (FIGURES, Path("figures")):
    with pytest.raises(ConfigError, match="only a study's headline preset"):
      results.destination("tiny", "quick", out=folder)
    with pytest.raises(ConfigError, match="only a study's headline preset"):
      results.write(results.Destination(folder, "_tiny", headline=False), "fig2_noise", {}, preset="tiny",
                    seeds=results.Seeds(), wall_s=0.0)
  monkeypatch.chdir(tmp_path)  # figures/ relative to where the command runs is refused too
  with pytest.raises(ConfigError):
    results.destination("quick", "quick", ["train.steps=10"], out="figures")
  assert not (tmp_path / "figures").exists() and not (FIGURES / "fig2_noise_tiny.json").exists()


def test_run_fig2_tiny_writes_to_results_not_figures(tmp_path):
  proc = icl_lab("run", "fig2", "--preset", "tiny", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  r = read_json(tmp_path / "results" / "fig2_noise_tiny.json")
  assert not (tmp_path / "figures").exists()
  assert r["noise_ratios"] == [0.0, 0.25] and r["bayes_row"] == [0, 1]
  assert np.asarray(r["mspd_over_d_full"]).shape == (2, 2)
  assert [c["name"] for c in r["criteria"]] == [c.name for c in fig2.criteria(r)]
  # Each model's projection against its neighbour decides the same way as the full-range MSPD:
  # a < 0.5 exactly when the Bayes row is closer (SPD(T, R) − SPD(T, B) = SPD(R, B)(1 − 2a)).
  full = np.asarray(r["mspd_over_d_full"])
  for j, p in enumerate(r["projection_a"]):
    assert p["bayes"] == r["rows"][r["bayes_row"][j]] and len(p["vs"]) == 1
    (nb, v), = p["vs"].items()
    assert (v["a"] < 0.5) == (full[r["bayes_row"][j], j] < full[r["rows"].index(nb), j])
    assert v["ci95"][0] <= v["a"] <= v["ci95"][1]
  entry = read_json(tmp_path / "results" / "MANIFEST.json")["fig2_noise_tiny"]
  assert entry["seeds"] == {"model_init": [0], "train_data": [0], "eval_data": 1_000_003, "other": {}}
  for ext in ("png", "pdf"):
    assert (tmp_path / "results" / f"fig2_noise_tiny.{ext}").stat().st_size > 1000


def test_run_fig3_tiny_trains_one_run_per_seed(tmp_path):
  paths = studies.run("fig3", RunRequest("tiny", ("study.learners=ols,gd(0.02)",), tmp_path / "runs",
                                         tmp_path / "out"))
  assert paths[0].name.startswith("fig3_depth_width_tiny-custom-")
  r = read_json(paths[0])
  assert len(r["depth"]["runs"]) == 2 and len(set(r["depth"]["runs"])) == 2  # two seeds: two runs
  assert r["seeds"] == [0, 1] and r["learners"] == ["ols", "gd(0.02)"]
  per_seed = np.asarray(r["depth"]["mspd_over_d"]["ols"]["per_seed"])
  np.testing.assert_allclose(r["depth"]["mspd_over_d"]["ols"]["mean"], per_seed.mean(1))


def test_study_config_errors_exit_2_with_one_line(tmp_path):
  for args, msg in ((["run", "fig2", "--preset", "tiny_lm"], "study fig2 has no preset 'tiny_lm'"),
                    (["run", "fig2", "--preset", "tiny", "--set", "study.bogus=1"], "unknown key study.bogus"),
                    (["run", "fig2", "--preset", "tiny", "--set", "model.layers=0"], "model.layers=0")):
    proc = icl_lab(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("icl-lab: config error:") and msg in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_study_that_builds_its_own_models_refuses_model_and_train_keys():
  for name, module in studies.MODULES.items():
    settings_type = type(next(iter(module.SETTINGS.values())))
    req = RunRequest(next(iter(module.SETTINGS)), ("model.layers=2",))
    if "config_overrides" in {f.name for f in dataclasses.fields(settings_type)}:
      assert settings_for(name, module.SETTINGS, req).config_overrides == module.SETTINGS[req.preset].config_overrides
    else:
      with pytest.raises(ConfigError, match=rf"study {name} takes study.\* keys only, not model.layers=2"):
        settings_for(name, module.SETTINGS, req)


# ---------------------------------------------------------------------------
# Fig. 1 and the commands around a trained run


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
  assert fig1["criteria"][0]["value"] == best and fig1["criteria"][0]["met"] == (best == "ols")
  # The projection a, recomputed from its definition, decides OLS vs each ridge consistently.
  for name, p in fig1["projection_a"].items():
    assert p["ref"] == "ols" and p["ci95"][0] <= p["a"] <= p["ci95"][1]
    mspd = fig1["mspd_over_d"]
    assert (p["a"] < 0.5) == (mspd["ols"]["full"] < mspd[name]["full"])
  assert f"{best}" in [l.split()[0] for l in stdout.splitlines() if "<- closest" in l]
  fig6 = read_json(root / "figs" / "fig6_linearity_tiny.json")
  assert len(fig6["r2_mean"]) == n and all(-1.0 <= r <= 1.0 + 1e-9 for r in fig6["r2_mean"])
  assert fig6["criteria"][0]["value"] == pytest.approx(min(fig6["r2_mean"][2:]))
  entry = read_json(root / "figs" / "MANIFEST.json")["fig1_noiseless_tiny"]
  assert {"command", "preset", "git_commit", "seeds", "wall_clock_s", "device"} <= set(entry)
  assert entry["preset"] == "tiny" and entry["wall_clock_s"] > 0
  assert set(entry["seeds"]) == {"model_init", "train_data", "eval_data", "other"}
  for ext in ("png", "pdf"):
    assert (root / "figs" / f"fig1_noiseless_tiny.{ext}").stat().st_size > 1000


def test_spd_in_results_matches_a_recomputation(replicated):
  """SPD/d to OLS, recomputed from the saved model on the same held-out prompts."""
  root, _ = replicated
  from icl_lab.analysis import evaluate, metrics
  from icl_lab.training import train
  fig1 = read_json(root / "figs" / "fig1_noiseless_tiny.json")
  cfg, model = train.load_model(root / "runs" / fig1["run"])
  batch = evaluate.eval_batch(cfg.task, fig1["num_prompts"])
  preds = evaluate.predict_in_chunks(evaluate.model_predict_fn(model), batch.xs_BxNxD, batch.ys_BxN)
  ols = learners.ols(batch.xs_BxNxD, batch.ys_BxN).preds_BxN
  np.testing.assert_allclose(fig1["spd_over_d"]["ols"], metrics.spd_over_d(preds, ols, cfg.task.dim), rtol=1e-5)


def test_eval_prints_the_table_for_another_task_and_writes_to_results(replicated, tmp_path):
  root, _ = replicated
  run_dir = root / "runs" / read_json(root / "figs" / "fig1_noiseless_tiny.json")["run"]
  proc = icl_lab("eval", str(run_dir), "--set", "task.noise_std=0.5", "--set", "task.x_cov=skewed",
                 "--learners", "ols,ridge(0.25)", "--num-prompts", "64", "--weights-prompts", "4", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  table = [line for line in proc.stdout.splitlines() if line.startswith(("ols ", "ridge(0.25) "))]
  assert len(table) == 2 and sum("<- closest" in line for line in table) == 1
  (out,) = (tmp_path / "results").glob("eval_*.json")
  r = read_json(out)
  assert r["eval_task"]["noise_std"] == 0.5 and r["eval_task"]["x_cov"] == "skewed"
  assert set(r["mspd_over_d"]) == {"ols", "ridge(0.25)"}
  bad = icl_lab("eval", str(run_dir), "--set", "task.dim=8", cwd=tmp_path, timeout=300)
  assert bad.returncode == 2 and bad.stderr.startswith("icl-lab: config error:")
  broken = tmp_path / "broken_run"
  shutil.copytree(run_dir, broken)
  (broken / "config.json").write_text('{"task": {"dim": 4,')  # cut off mid-write
  proc = icl_lab("eval", str(broken), cwd=tmp_path, timeout=300)
  assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert str(broken / "config.json") in proc.stderr and "unreadable" in proc.stderr


def test_reproducing_a_headline_writes_results_and_compares_with_the_committed_file(
    replicated, tmp_path, monkeypatch, capsys):
  """With tiny as Fig. 1's headline: the run goes to results/, figures/ is untouched, and the
  comparison names each criterion and key number; --promote then replaces figures/."""
  root, _ = replicated
  monkeypatch.setitem(studies.STUDIES, "fig1", dataclasses.replace(studies.STUDIES["fig1"], headline_preset="tiny"))
  monkeypatch.chdir(tmp_path)
  (tmp_path / "figures").mkdir()
  committed = read_json(root / "figs" / "fig1_noiseless_tiny.json")
  committed["projection_a"]["ridge(0.1)"].update(a=9.0, ci95=[8.5, 9.5])  # a committed file that disagrees
  write_json(tmp_path / "figures" / "fig1_noiseless.json", committed)
  before = (tmp_path / "figures" / "fig1_noiseless.json").read_bytes()
  studies.run("fig1", RunRequest("tiny", (), root / "runs"))  # the run is reused, not retrained
  out = capsys.readouterr().out
  assert (tmp_path / "results" / "fig1_noiseless.json").exists()
  assert (tmp_path / "figures" / "fig1_noiseless.json").read_bytes() == before
  assert "against the committed figures/fig1_noiseless.json" in out
  assert "projection a vs ridge(0.1):" in out and "| NO" in out and "differs: " in out
  assert "projection a vs ridge(0.5):" in out
  studies.run("fig1", RunRequest("tiny", (), root / "runs", promote=True))
  assert read_json(tmp_path / "figures" / "fig1_noiseless.json")["projection_a"]["ridge(0.1)"]["a"] != 9.0


def test_compare_agreement_rule_on_hand_values():
  from icl_lab.studies import compare
  assert compare.agree(0.4, (0.35, 0.45), 0.44, (0.42, 0.5))  # overlapping intervals
  assert not compare.agree(0.4, (0.35, 0.45), 0.5, (0.46, 0.55))
  assert compare.agree(0.4, (0.35, 0.45), 0.41, None) and not compare.agree(0.4, (0.35, 0.45), 0.46, None)
  assert compare.agree(0.012345, None, 0.012349, None) and not compare.agree(0.0123, None, 0.0125, None)


def test_compare_of_a_partial_study_reports_it_incomplete_without_judging_it():
  """Fig. 2 with a unit record missing: its own criteria would read the missing unit's None entries;
  the comparison shows the incomplete criterion instead, no key numbers, and no "reproduced"."""
  from icl_lab.studies import compare
  out = studies.get("fig2").outputs[0]
  full = {"noise_ratios": [0.0, 0.25], "rows": ["ridge(0)", "ridge(0.25)"], "bayes_row": [0, 1],
          "mspd_over_d_full": [[0.1, 0.3], [0.2, 0.2]], "num_units": 2, "num_models": 2,
          "lambda_star": [{"bayes_lambda": 0.0, "lambda_star": 0.01}, {"bayes_lambda": 0.25, "lambda_star": 0.3}]}
  partial = {**full, "mspd_over_d_full": [[0.1, None], [0.2, None]], "missing_units": ["cpu-x"],
             "lambda_star": [full["lambda_star"][0], None]}
  text = compare.render(out, partial, full, Path("new.json"), Path("old.json"))
  assert "models with an evaluation record (incomplete: the study's own criteria are not judged): missed (1 of 2)" \
      in text
  assert "columns whose minimum (full-range MSPD/d) is the Bayes ridge λ = σ²/τ²: absent | met (2)" in text
  assert text.splitlines()[-1] == "incomplete: not compared until every unit is recorded"
  assert "reproduced" in compare.render(out, full, full, Path("new.json"), Path("old.json")).splitlines()[-1]
  # A complete run against a partial committed file reproduces nothing: it is new.
  assert compare.render(out, full, partial, Path("new.json"), Path("old.json")).splitlines()[-1].startswith("new: ")


def test_studies_command_lists_presets_and_criteria(capsys, tmp_path):
  assert cli.main(["studies"]) == 0
  out = capsys.readouterr().out
  for name, study in studies.STUDIES.items():
    assert f"{name}: {study.description}" in out
  assert "tiny ~30 s CPU" in out and "paper GPU" in out and "cpu (headline)" in out
  assert "fig4_probes: met: first layer where a probe decodes XᵀY" in out
  # Every criterion of every committed file is listed with its own verdict (met, missed or inconclusive).
  for study in studies.STUDIES.values():
    for stem, crit in studies.status(study).items():
      for c in crit or []:
        assert f"{stem}: {results.verdict(c)}: {c['name']} = " in out, (stem, c["name"])
  assert "infusion_law: missed:" in out and "fig2_noise: met:" in out  # at least one of each
  assert not re.search(r"\.\d{9,}", out), "criteria values are printed to 4 significant digits"
  assert results.fmt_value([-0.021974319236349515, 0.0172119140625]) == "[-0.02197, 0.01721]"
  assert results.fmt_value(None) == "null" and results.fmt_value(3) == "3"
  assert results.fmt_value({"infused": {"F*": [None, 8466.807133847664], "sign": "none"}}) == \
      "{infused: {F*: [null, 8467], sign: none}}"
  assert cli.main(["studies", "--figures", str(tmp_path)]) == 0
  empty = capsys.readouterr().out
  assert empty.count(": not run") == sum(len(s.results_stems) for s in studies.STUDIES.values())


# ---------------------------------------------------------------------------
# Figures and README tables


def test_figures_redraw_from_json_alone_byte_identically(replicated, tmp_path):
  root, _ = replicated
  for f in (root / "figs").glob("*.json"):
    (tmp_path / f.name).write_text(f.read_text())
  drawn, failures = studies.redraw_all(tmp_path)
  assert not failures
  assert {p.name for p in drawn} >= {"fig1_noiseless_tiny.png", "fig1_noiseless_tiny.pdf",
                                     "fig6_linearity_tiny.png", "fig6_linearity_tiny.pdf"}
  first = {p: p.read_bytes() for p in drawn}
  studies.redraw_all(tmp_path)
  assert all(p.read_bytes() == b for p, b in first.items())  # no creation dates in the files


def test_one_broken_results_file_does_not_stop_the_others(replicated, tmp_path, capsys):
  root, _ = replicated
  (tmp_path / "fig6_linearity_tiny.json").write_text((root / "figs" / "fig6_linearity_tiny.json").read_text())
  (tmp_path / "fig2_noise.json").write_text("{}")  # sorts first, and has none of its keys
  drawn, failures = studies.redraw_all(tmp_path)
  assert {p.name for p in drawn} == {"fig6_linearity_tiny.png", "fig6_linearity_tiny.pdf"}
  assert len(failures) == 1 and "fig2_noise.json" in failures[0]
  assert cli.main(["figures", "--out", str(tmp_path)]) == 1
  assert "could not redraw" in capsys.readouterr().err


def test_readme_and_docs_agree_with_the_committed_json():
  """Every <!-- results:NAME --> section of README.md and docs/*.md matches its JSON; the README
  is short, carries the scoreboard, and every study has its docs page."""
  docs = readme.documents(REPO)
  assert {d.name for d in docs} >= {"README.md", *(f"{name}.md" for name in studies.STUDIES)}
  for doc in docs:
    assert readme.check(doc, FIGURES) == [], f"{doc}: run `icl-lab readme` to regenerate it"
  text = (REPO / "README.md").read_text()
  assert len(text.splitlines()) <= 220 and "<!-- results:scoreboard -->" in text
  for section in readme.sections():  # each study's tables live in its docs page
    assert any(f"<!-- results:{section} -->" in d.read_text() for d in docs if d.parent.name == "docs"), section


def test_scoreboard_counts_criteria_met_from_the_files(tmp_path):
  payload = read_json(QUICK_FIG2)
  payload["mspd_over_d_full"] = np.eye(5)[::-1].tolist()  # every column's minimum off the Bayes row...
  write_json(tmp_path / "fig2_noise.json", payload)
  board = readme.scoreboard(tmp_path)
  assert "| [fig2](docs/fig2.md) | `fig2_noise` | 0 of 1 | columns whose minimum" in board
  payload["mspd_over_d_full"] = (1 - np.eye(5)).tolist()  # ...then every one on it
  write_json(tmp_path / "fig2_noise.json", payload)
  assert "| `fig2_noise` | 1 of 1 |  |" in readme.scoreboard(tmp_path)
  assert "| [fig1](docs/fig1.md) | `fig1_noiseless` | not run | |" in readme.scoreboard(tmp_path)


def test_readme_rewrite_fills_and_then_agrees(tmp_path):
  text = ("# x\n<!-- results:fig2 -->\nold\n<!-- /results:fig2 -->\ntail\n"
          "<!-- results:fig4 -->\n<!-- /results:fig4 -->\n")
  path = tmp_path / "README.md"
  path.write_text(text)
  assert readme.check(path, FIGURES) == ["fig2", "fig4"]
  assert readme.update(path, FIGURES) == ["fig2", "fig4"]
  new = path.read_text()
  assert new.startswith("# x\n<!-- results:fig2 -->\n(generated from") and "\ntail\n" in new
  assert "| ridge(0.4444) |" in new and "| XᵀY | MLP probe | layer 2" in new
  assert readme.check(path, FIGURES) == []
  assert set(readme.sections()) == {"fig1", "fig6", "fig2", "fig3", "fig4", "constructions",
                                    "knowledge_entropy_decay", "knowledge_acquisition", "knowledge_resuscitation",
                                    "knowledge_capacity", "kg_phase", "kg_universality", "kg_stitching", "kg_cone",
                                    "kg_transformer", "kg_in_context", "infusion_curves", "infusion_law"}

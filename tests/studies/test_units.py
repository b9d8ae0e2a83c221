"""Studies that run in units: one unit per invocation, records reused, incomplete results never met."""

import shutil

import numpy as np
import pytest

from icl_lab import results, studies
from icl_lab.config import ConfigError, get_preset
from icl_lab.io import read_json
from icl_lab.studies import fig1, fig2, fig3, units
from icl_lab.studies.base import RunRequest

SPLIT = ("study.ensemble=false",)  # tiny Fig. 2 as two units, one per noise level


@pytest.fixture(scope="module")
def one_unit(tmp_path_factory):
  """Fig. 2 tiny with only its first unit trained."""
  root = tmp_path_factory.mktemp("units")
  studies.run("fig2", RunRequest("tiny", SPLIT, root / "runs", root / "out", unit="0"))
  return root


def test_unit_trains_exactly_one_unit_and_the_results_are_incomplete(one_unit):
  root = one_unit
  unit_list, _ = fig2.plan(RunRequest("tiny", SPLIT))
  assert len(unit_list) == 2
  assert sorted(p.name for p in (root / "runs").iterdir()) == [unit_list[0].name]
  assert sorted(p.stem for p in (root / "out" / "units").glob("*.json")) == [unit_list[0].name]
  (path,) = (root / "out").glob("fig2_noise_tiny-custom-*.json")
  r = read_json(path)
  assert r["missing_units"] == [unit_list[1].name] and r["num_models"] == 2
  assert r["criteria"] == [{"name": r["criteria"][0]["name"], "value": "1 of 2", "target": "all 2", "met": False}]
  assert r["mspd_over_d_full"][0][1] is None and r["mspd_over_d_full"][0][0] > 0  # the missing column is null
  assert studies.criteria_of(path) == r["criteria"]
  assert "not yet run" in fig2.readme(r) and "Incomplete: 1 of 2 models" in fig2.readme(r)


def test_a_later_invocation_reuses_the_record_and_trains_only_the_missing_unit(one_unit, tmp_path):
  root = tmp_path / "copy"
  shutil.copytree(one_unit, root)
  unit_list, _ = fig2.plan(RunRequest("tiny", SPLIT))
  first = (root / "out" / "units" / f"{unit_list[0].name}.json").read_bytes()
  shutil.rmtree(root / "runs" / unit_list[0].name)  # the record alone must be enough for unit 0
  (path,) = studies.run("fig2", RunRequest("tiny", SPLIT, root / "runs", root / "out"))[:1]
  assert sorted(p.name for p in (root / "runs").iterdir()) == [unit_list[1].name]
  assert (root / "out" / "units" / f"{unit_list[0].name}.json").read_bytes() == first
  r = read_json(path)
  assert r["missing_units"] == [] and [c["name"] for c in r["criteria"]] == [c.name for c in fig2.criteria(r)]
  assert all(v is not None for row in r["mspd_over_d_full"] for v in row)
  # A fresh clone holding the records (and no runs): assembling trains nothing and agrees.
  clone = tmp_path / "clone"
  shutil.copytree(root / "out" / "units", clone / "out" / "units")
  (again,) = studies.run("fig2", RunRequest("tiny", SPLIT, clone / "runs", clone / "out", train_missing=False))[:1]
  assert not (clone / "runs").exists()
  assert read_json(again)["mspd_over_d_full"] == r["mspd_over_d_full"]


def test_a_record_holds_what_every_study_needs(one_unit):
  unit_list, spec = fig2.plan(RunRequest("tiny", SPLIT))
  rec = read_json(one_unit / "out" / "units" / f"{unit_list[0].name}.json")
  assert set(units.RECORD_LEARNERS) <= set(rec["eval"]["learners"]) and spec.served_by(rec["eval"])
  assert not units.EvalSpec(("ols", "knn7_uniform")).served_by(rec["eval"])
  lam = rec["result"]["lambda_star"]
  assert lam["ci95"][0] <= lam["lam"] <= lam["ci95"][1] and lam["grid"][0] == 0.0
  assert rec["heldout"]["seed"] == units.HELDOUT_SEED and "lambda_star" in rec["heldout"]
  assert [c["step"] for c in rec["lambda_star_curve"]] == [20, 40]  # every kept checkpoint
  # A view is what compare would return for fewer learners and another projection reference.
  view = units.view(rec, ["ols", "ridge(0.25)"], projection_ref="ridge(0.25)")
  assert set(view["mspd_over_d"]) == {"ols", "ridge(0.25)"} and set(view["spd_over_d"]) == {"ols", "ridge(0.25)"}
  assert set(view["error_vs_truth"]) == {"ols", "ridge(0.25)", "transformer"}
  assert view["projection_a"]["ols"]["ref"] == "ridge(0.25)"
  assert view["closest_learner"] == min(view["mspd_over_d"], key=lambda k: view["mspd_over_d"][k]["full"])
  # The projection against a reference R of learner L and of R against L add to 1 (T − R = T − L + L − R).
  a_lr = rec["result"]["projections"]["ridge(0.25)"]["ols"]["a"]
  a_rl = rec["result"]["projections"]["ols"]["ridge(0.25)"]["a"]
  assert a_lr + a_rl == pytest.approx(1.0, abs=1e-9)


def test_cpu_units_that_equal_fig1s_model_share_its_run_name():
  fig1_run = get_preset("cpu").run_name()
  assert fig1.plan(RunRequest("cpu"))[0][0].name == fig1_run
  assert fig2.plan(RunRequest("cpu"))[0][0].name == fig1_run  # the noiseless column
  names = [u.name for u in fig3.plan(RunRequest("cpu"))[0]]
  assert fig1_run in names and len(names) == len(set(names)) == 14  # 16 points, L4/H64 shared by both panels
  assert all(len(u.cfgs) == 1 for u in fig3.plan(RunRequest("cpu"))[0])


def test_gpu_units_are_the_cpu_models_grouped_as_ensembles():
  cpu2, gpu2 = (fig2.plan(RunRequest(p))[0] for p in ("cpu", "gpu"))
  assert len(gpu2) == 1 and [c.hash() for c in gpu2[0].cfgs] == [u.cfgs[0].hash() for u in cpu2]
  assert gpu2[0].name.startswith("gpu-")  # GPU records never stand in for the CPU ones
  cpu3, gpu3 = (fig3.plan(RunRequest(p))[0] for p in ("cpu", "gpu"))
  assert len(gpu3) == 7 and all(len(u.cfgs) == 2 for u in gpu3)  # a point's two seeds per unit
  assert sorted(c.hash() for u in gpu3 for c in u.cfgs) == sorted(u.cfgs[0].hash() for u in cpu3)


def test_unknown_unit_is_refused_naming_the_choices():
  unit_list, _ = fig2.plan(RunRequest("tiny", SPLIT))
  assert units.select(unit_list, "1") == [unit_list[1]] and units.select(unit_list, unit_list[0].name) == [unit_list[0]]
  with pytest.raises(ConfigError, match="give 0 to 1 or one of"):
    units.select(unit_list, "7")


def test_unit_flags_on_a_study_that_does_not_run_in_units_are_refused_before_any_training(tmp_path):
  for kwargs, flags in (({"unit": "0"}, "--unit"), ({"train_missing": False}, "--no-train"),
                        ({"unit": "1", "fresh": True}, "--unit/--fresh")):
    req = RunRequest("tiny", (), tmp_path / "runs", tmp_path / "out", **kwargs)
    with pytest.raises(ConfigError, match=f"^{flags}: study kg_phase does not run in units .*fig1, fig2, fig3"):
      studies.run("kg_phase", req)
  assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_fig3_phase_order_criterion_on_hand_values():
  base = {"depth": {"values": [1, 2, 4, 8], "mspd_over_d": {"ols": {"mean": [3.0, 2.0, 1.0, 0.1]},
                                                             "gd(0.01)": {"mean": [0.1, 1.0, 2.0, 3.0]}}}}
  for phases, met in ((["GD", "GD", "ridge", "OLS"], True), (["GD", "ridge", "GD", "OLS"], False),
                      (["GD", "ridge", "ridge", "ridge"], False), (["ridge", "ridge", "OLS", "OLS"], False)):
    (crit,) = [c for c in fig3.criteria({**base, "phase_by_depth": phases}) if c.name.startswith("phase")]
    assert crit.met == met and crit.value == " → ".join(phases), phases
  assert [fig3.phase_of(n) for n in ("ols", "ridge(0.1)", "gd_k(0.02,3)", "sgd(0.03)", "knn3_uniform")] == \
      ["OLS", "ridge", "GD", "GD", "other"]


def test_fig2_lambda_star_criterion_on_hand_values():
  r = {"noise_ratios": [0, 0.1, 0.2, 0.3, 0.4], "bayes_row": [0, 1, 2, 3, 4], "mspd_over_d_full": np.eye(5)[::-1],
       "lambda_star": [{"bayes_lambda": q, "lambda_star": s} for q, s in
                       ((0.0, 0.01), (0.1, 0.2), (0.2, 0.41), (0.3, 0.15), (0.4, 0.1))]}
  (_, lam) = fig2.criteria(r)
  assert (lam.value, lam.met, lam.target) == (2, False, "≥ 3 of 4")  # 0.2/0.1 = 2 and 0.15/0.3 = 0.5 count
  r["lambda_star"][4]["lambda_star"] = 0.8
  assert fig2.criteria(r)[1].met


def test_committed_records_carry_their_own_criteria():
  from pathlib import Path
  folder = Path(__file__).resolve().parents[2] / "figures" / "units"
  records = sorted(folder.glob("*.json"))
  assert records
  for path in records:
    rec = read_json(path)
    assert rec["criteria"] == [c.to_dict() for c in units.criteria(rec)], path


def test_record_criteria_on_hand_values():
  def rec(sigma, tau, lam):
    return {"config": {"task": {"noise_std": sigma, "weight_std": tau}}, "result": {"lambda_star": {"lam": lam}}}
  assert [(c.value, c.met) for c in units.criteria(rec(0.0, 1.0, 0.01))] == [(0.01, True)]
  assert [c.met for c in units.criteria(rec(0.0, 1.0, 0.0133))] == [False]
  (c,) = units.criteria(rec(0.5, 1.0, 0.5))  # Bayes λ = 0.25: ratio 2 is inside, 2.01 outside
  assert (c.value, c.met, c.target) == (2.0, True, "within 2× of 1")
  assert not units.criteria(rec(0.5, 1.0, 0.12))[0].met and units.criteria(rec(0.5, 1.0, 0.125))[0].met


def test_an_incomplete_study_counts_models_not_units():
  # Fig. 3 on a GPU: seven units of two seeds each, with one unit (two models) recorded.
  payload = {"num_units": 7, "num_models": 14, "missing_units": [f"gpu-{i}" for i in range(12)]}
  (crit,) = results.criteria_for(payload, lambda p: [])
  assert (crit.value, crit.target, crit.met) == ("2 of 14", "all 14", False)


def test_fig3_in_progress_shows_each_point_whose_seeds_are_all_recorded(tmp_path):
  # Tiny Fig. 3 with depths 1 and 2: units of two seeds each, L1/H32 and L2/H32 (the depth panel) and
  # L1/H16 (the width panel); only the first is trained.
  req = RunRequest("tiny", ("study.depths=1,2",), tmp_path / "runs", tmp_path / "out", unit="0")
  (path,) = studies.run("fig3", req)[:1]
  r = read_json(path)
  assert r["missing_units"] == r["depth"]["runs"][2:] + r["width"]["runs"] and not r["criteria"][0]["met"]
  assert r["depth"]["closest"][0] in ("ols", "gd(0.02)") and r["depth"]["closest"][1] is None
  assert r["width"]["closest"] == [None]
  table = fig3.readme(r)
  assert "| L2/H32 | not yet run |" in table and "| L1/H32 | not yet run |" not in table

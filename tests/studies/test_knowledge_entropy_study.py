"""The knowledge-entropy study: its criteria on hand-made results, and the tiny preset end to end."""

import subprocess
import sys

import numpy as np
import pytest

from icl_lab import results, studies
from icl_lab.io import read_json
from icl_lab.studies import knowledge_entropy as study

STEMS = (study.DECAY, study.ACQUISITION, study.RESUSCITATION)


def test_registered_with_presets_settings_and_three_outputs():
  s = studies.get("knowledge_entropy")
  assert s.results_stems == STEMS and set(s.presets) == {"tiny", "quick", "pressure", "gpu"} == set(study.SETTINGS)
  assert s.presets["gpu"] is None and s.presets["tiny"] <= 60 and s.presets["quick"] <= 3600
  for stem in STEMS:
    assert studies.output_for(f"{stem}_tiny")[0] is s
  # The pretraining checkpoints the study needs are all kept.
  for preset, cfg in study.PRETRAIN.items():
    assert cfg.model.mlp == "swiglu" and cfg.task.kind == "fact_lm"
    assert cfg.train.keep_checkpoints * cfg.train.checkpoint_every == cfg.train.steps, preset


def test_decay_criteria_on_hand_values():
  r = {"steps": [0, 10, 20, 30, 40], "entropy": [5.0, 6.0, 5.5, 5.2, 5.1], "total_steps": 40, "decay_from": 0.25,
       "per_layer": [[2, 3], [3, 3], [2.8, 2.7], [2.6, 2.6], [2.5, 2.6]]}
  rho, layers = study.criteria_decay(r)
  assert rho.value == pytest.approx(-1.0) and rho.met  # the rise before 25% is left out
  assert (layers.value, layers.met) == (2, True)
  r["per_layer"][-1] = [2.5, 3.1]
  assert study.criteria_decay(r)[1].to_dict()["met"] is False


def test_acquisition_and_resuscitation_criteria_on_hand_values():
  rows = [{"step": 20, "entropy": 9.0, "A": 0.4, "F": 0.10}, {"step": 50, "entropy": 8.5, "A": 0.35, "F": 0.12},
          {"step": 100, "entropy": 8.0, "A": 0.30, "F": 0.20}]
  trend = {"dA_ci95": [-0.15, -0.05], "dF_ci95": [0.05, 0.15]}
  a, f, pa, pf = study.criteria_acquisition({"sources": rows, "trend": trend})
  assert a.value == pytest.approx(0.75) and a.met and f.value == pytest.approx(2.0) and f.met
  assert pa.value == pytest.approx(np.corrcoef([9, 8.5, 8], [0.4, 0.35, 0.3])[0, 1]) and pa.met and pf.met
  r = {"p": 0.5, "base": {"A": 0.3, "F": 0.2, "entropy": 8.0},
       "settings": [{"q": 1.0, "A": 0.35, "F": 0.1, "entropy_before": 8.0, "entropy_after": 8.2,
                     "dA_ci95": [0.01, 0.09], "dF_ci95": [-0.2, -0.01]},
                    {"q": 0.5, "A": 0.25, "F": 0.3, "entropy_before": 8.0, "entropy_after": 8.1,
                     "dA_ci95": [-0.1, -0.01]}]}
  q1, q2, q05, rises = study.criteria_resuscitation(r)
  assert q1.met and q1.value == pytest.approx([0.05, -0.1])
  assert (q2.value, q2.met) == (None, False)  # q = 2 was not run
  assert q05.met and rises.value == 2 and rises.met


def test_directional_criteria_are_inconclusive_unless_the_interval_excludes_zero():
  """A point estimate on the stated side is met only when its interval is on that side too."""
  rows = [{"step": 20, "entropy": 9.0, "A": 0.4, "F": 0.10}, {"step": 100, "entropy": 8.0, "A": 0.30, "F": 0.20}]
  def verdicts(trend):
    return [results.verdict(c) for c in study.criteria_acquisition({"sources": rows, "trend": trend})[:2]]
  assert verdicts({"dA_ci95": [-0.2, -0.01], "dF_ci95": [0.01, 0.2]}) == ["met", "met"]
  assert verdicts({"dA_ci95": [-0.2, 0.01], "dF_ci95": [-0.01, 0.2]}) == ["inconclusive", "inconclusive"]
  assert verdicts({"dA_ci95": [0.01, 0.2], "dF_ci95": [-0.2, -0.01]}) == ["inconclusive", "inconclusive"]
  # Without a stored paired interval (files written before it) the rows' own intervals must be disjoint.
  old = [{**rows[0], "A_ci95": [0.38, 0.42], "F_ci95": [0.05, 0.15]},
         {**rows[1], "A_ci95": [0.28, 0.32], "F_ci95": [0.12, 0.25]}]
  a, f = study.criteria_acquisition({"sources": old})[:2]
  assert (results.verdict(a), results.verdict(f)) == ("met", "inconclusive")
  assert a.to_dict().keys() == {"name", "value", "target", "met"} and f.to_dict()["inconclusive"] is True
  # A point estimate on the wrong side is missed, not inconclusive, whatever its interval.
  rows[1].update(A=0.5, F=0.05)
  assert verdicts({"dA_ci95": [0.05, 0.15], "dF_ci95": [-0.1, -0.01]}) == ["missed", "missed"]
  base = {"A": 0.3, "F": 0.2, "entropy": 8.0}
  def q05(dA, ci):
    r = {"p": 0.5, "base": base, "settings": [{"q": 0.5, "A": 0.3 + dA, "F": 0.2, "entropy_before": 8.0,
                                                "entropy_after": 8.1, "dA_ci95": ci}]}
    return results.verdict(study.criteria_resuscitation(r)[2])
  assert q05(-1.3e-5, [-0.017, 0.017]) == "inconclusive"  # the quick run's q = 0.5 case
  assert q05(-0.02, [-0.03, -0.01]) == "met" and q05(0.01, [0.005, 0.02]) == "missed"
  assert q05(-0.02, None) == "inconclusive"  # no interval at all: not judged met
  both = {"p": 0.5, "base": base, "settings": [{"q": 1.0, "A": 0.35, "F": 0.1, "entropy_before": 8.0,
                                                 "entropy_after": 8.2, "dA_ci95": [0.01, 0.09],
                                                 "dF_ci95": [-0.2, 0.01]}]}
  assert results.verdict(study.criteria_resuscitation(both)[0]) == "inconclusive"  # ΔF's interval reaches 0


def test_run_tiny_writes_three_results_files_to_results_not_figures(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "icl_lab.cli", "run", "knowledge_entropy", "--preset", "tiny"],
                        capture_output=True, text=True, timeout=600, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not (tmp_path / "figures").exists()
  out = tmp_path / "results"
  for stem in STEMS:
    r = read_json(out / f"{stem}_tiny.json")
    assert r["criteria"] and all({"name", "value", "target", "met"} <= set(c) <= {"name", "value", "target", "met",
                                                                                 "inconclusive"} for c in r["criteria"])
    assert r["interval"].startswith("hierarchical bootstrap")
    assert [c["name"] for c in r["criteria"]] == [c.name for c in studies.output_for(stem)[1].criteria(r)]
    for ext in ("png", "pdf"):
      assert (out / f"{stem}_tiny.{ext}").stat().st_size > 1000
  decay = read_json(out / f"{study.DECAY}_tiny.json")
  assert decay["steps"] == [0, *range(40, 201, 40)]
  assert np.asarray(decay["per_layer"]).shape == (6, 2)
  assert all(0 < h <= decay["max_entropy"] for h in decay["entropy"])
  # P per checkpoint (the fraction of world 0's facts answered), with its interval.
  assert len(decay["P"]) == len(decay["P_ci95"]) == 6 and all(0 <= p <= 1 for p in decay["P"])
  assert all(lo <= p <= hi for p, (lo, hi) in zip(decay["P"], decay["P_ci95"]))
  acq = read_json(out / f"{study.ACQUISITION}_tiny.json")
  assert [x["step"] for x in acq["sources"]] == [40, 200]
  for x in acq["sources"]:  # A's parts beside it, and P before and after
    assert x["A"] == pytest.approx((x["K_cl"] - x["K_pt"]) / abs(x["K_pt"]))
    assert 0 <= x["acc_new_cl"] <= 1 and 0 <= x["acc_new_pt"] <= 1 and 0 <= x["P_cl"] <= 1
    assert x["P_pt"] == decay["P"][decay["steps"].index(x["step"])]
    assert "_boot" not in x and x["A_ci95_items"] and x["A_seeds"]
  da = acq["sources"][1]["A"] - acq["sources"][0]["A"]
  assert acq["trend"]["from"] == 40 and acq["trend"]["dA"] == pytest.approx(da)
  res = read_json(out / f"{study.RESUSCITATION}_tiny.json")
  assert [x["q"] for x in res["settings"]] == [1.0] and res["base"]["A"] == acq["sources"][-1]["A"]
  assert all(len(x["dA_ci95"]) == len(x["dF_ci95"]) == 2 for x in res["settings"] + res["earlier"])
  assert "K_cl" in res["settings"][0] and "P_cl" in res["settings"][0]
  manifest = read_json(out / "MANIFEST.json")
  assert {f"{stem}_tiny" for stem in STEMS} <= set(manifest)
  assert "A =" in proc.stdout and "H =" in proc.stdout


def test_scores_bootstrap_is_paired_and_centred_on_a_and_f():
  rng = np.random.default_rng(0)
  lp_pt = {"paraphrase_memorisation": rng.normal(-3, 1, 40), "once_memorisation": rng.normal(-4, 1, 30)}
  lp_cl = {k: v + 0.5 for k, v in lp_pt.items()}  # every fact gains exactly 0.5 nats
  hits_pt = rng.random(200) < 0.8
  hits_cl = hits_pt & (rng.random(200) < 0.9)
  def scores(lp, hits):
    return {"K": float(np.mean([v.mean() for v in lp.values()])), "K_by_probe": {k: v.mean() for k, v in lp.items()},
            "P": hits.mean(), "_items": {"K": lp, "P": hits}}
  pt, cl = scores(lp_pt, hits_pt), scores(lp_cl, hits_cl)
  out = study.scores_vs(pt, cl, num_boot=400)
  assert out["A"] == pytest.approx(0.5 / abs(pt["K"])) and out["F"] == pytest.approx(1 - hits_cl.sum() / hits_pt.sum())
  a_R, f_R = out["_boot"]["A"], out["_boot"]["F"]
  # A constant gain is measured without spread only because the resample is paired.
  assert np.quantile(a_R, 0.025) < out["A"] < np.quantile(a_R, 0.975)
  assert np.all(a_R > 0) and np.quantile(f_R, 0.025) < out["F"] < np.quantile(f_R, 0.975)
  assert "_items" not in study.public(pt)


def test_control_criteria_use_only_its_checkpoints_before_the_decay():
  r = {"steps": [0, 10, 20, 30, 40], "entropy": [5.0, 4.9, 4.8, 4.7, 4.6], "total_steps": 40, "decay_from": 0.25,
       "per_layer": [[2, 3], [2, 2.9], [2, 2.8], [1.9, 2.8], [1.9, 2.7]],
       "control": {"steps": [0, 10, 20, 30, 40], "entropy": [5.0, 4.9, 4.8, 4.7, 9.9], "decay_start": 30}}
  rho, _, control = study.criteria_decay(r)
  assert rho.met and control.value == pytest.approx(-1.0) and control.met  # the decaying step 40 is left out
  r["control"]["entropy"] = [5.0, 4.9, 4.95, 5.0, 4.0]
  assert study.criteria_decay(r)[2].met is False
  rows = [{"step": 20, "entropy": 9.0, "A": 0.4, "F": 0.1}, {"step": 100, "entropy": 8.0, "A": 0.3, "F": 0.2}]
  trend = {"dA_ci95": [-0.15, -0.05], "dF_ci95": [0.05, 0.15]}
  crit = study.criteria_acquisition({"sources": rows, "control_sources": rows[:1] + [{**rows[1], "A": 0.5}],
                                     "control_trend": trend})
  assert len(crit) == 6 and crit[4].name.startswith("WSD control") and crit[4].met is False and crit[5].met
  text = study.readme_acquisition({"sources": rows, "control_sources": rows})
  assert text.count("| WSD control |") == 2


def test_pressure_world_exceeds_the_measured_capacity_with_multi_token_names():
  """The pressure preset's world holds ≥ 1.5x the model's capacity at the most bits per parameter
  the capacity study measured, in names of several tokens (no per-person embedding row)."""
  from pathlib import Path

  from icl_lab import tasks
  from icl_lab.analysis import capacity
  from icl_lab.tasks import fact_world

  measured = read_json(Path(__file__).resolve().parents[2] / "figures" / "knowledge_capacity.json")
  best = max(w["bits_per_param"] for size in measured["sizes"] for w in size["worlds"])
  assert study.BITS_PER_PARAM == pytest.approx(best, abs=5e-4)
  cfg = study.pretrain_config("pressure", study.SETTINGS["pressure"])
  assert cfg.model == study.PRETRAIN["quick"].model  # the quick model, so the two worlds compare
  params = capacity.non_embedding_params(tasks.get_task(cfg).build_model(cfg, 0))
  assert study.capacity_ratio(cfg, params) >= 1.5 and cfg.facts.name_tokens in (2, 3)
  assert fact_world.name_table(cfg.facts).shape == (2 * fact_world.persons_per_world(cfg.facts), 2)
  # Persons by inverse CDF (13,500 Gumbels a sentence would dominate the step), in the continual
  # runs too; the committed quick preset keeps the categorical stream.
  cl = study.continual_config(cfg, study.SETTINGS["pressure"], Path("ke_pressure-source"), 0)
  assert cfg.facts.person_draw == cl.facts.person_draw == "inverse_cdf"
  assert study.PRETRAIN["quick"].facts.person_draw == "categorical"
  # P on a fixed sample of persons: the same facts for every model.
  fc = cfg.facts
  a, b = fact_world.known_probe(fc, persons=50), fact_world.known_probe(fc, persons=50)
  assert len(a.target_N) == 50 * fc.relations * fc.templates and (a.ids_NxL == b.ids_NxL).all()

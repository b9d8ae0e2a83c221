"""The kg_phase study: phase labels and criteria on hand-made results, and the tiny preset end to end."""

import numpy as np
import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import kg_phase
from icl_lab.studies.base import RunRequest

STEPS = np.arange(0, 1100, 100)


def _curve(at: int, lo=0.0, hi=1.0):
  return np.where(STEPS >= at, hi, lo)


@pytest.mark.parametrize("train,test,label", [
    (_curve(200), _curve(200), "comprehension"),
    (_curve(300), _curve(200, hi=0.85), "comprehension"),
    (_curve(200), _curve(300), "grokking"),  # a lag of exactly grok_gap of the steps
    (_curve(100), _curve(800), "grokking"),
    (_curve(100), _curve(300, hi=0.6), "memorisation"),
    (_curve(100, hi=0.85), _curve(100), "confusion"),
])
def test_phase_labels(train, test, label):
  assert kg_phase.phase(train, test, STEPS, fit=0.9, gen=0.8, grok_gap=0.1) == label


def _cell(width, wd, train, test):
  return {"width": width, "weight_decay": wd, "train": train, "test": test, "phase": "confusion",
          "train_curve": [train], "test_curve": [test]}


def _results(best=0.95, memo=(1.0, 0.3), confused=0.5, shared=0.6, single=0.4):
  cells = [_cell(8, 0.0, 1.0, 0.2), _cell(64, 0.0, *memo), _cell(8, 3.0, 1.0, best), _cell(64, 3.0, 1.0, 0.5),
           _cell(8, 10.0, 0.1, 0.0), _cell(64, 10.0, confused, 0.1)]
  return {"cells": cells, "ablation": {"phi": 0.5, "shared": shared, "single": single}}


def test_criteria_met_and_missed_at_their_thresholds():
  met = [c.met for c in kg_phase.criteria(_results())]
  assert met == [True, True, True, True]
  crit = kg_phase.criteria(_results(best=0.89, memo=(0.98, 0.3), confused=0.9, shared=0.5, single=0.41))
  assert [c.met for c in crit] == [False, False, False, False]
  assert crit[1].value == [0.98, 0.3] and crit[2].value == 0.9
  assert [c.met for c in kg_phase.criteria(_results(memo=(1.0, 0.71), shared=0.55, single=0.4))] == [
      True, False, True, True]


def test_tiny_preset_end_to_end(tmp_path):
  assert studies.get("kg_phase").headline_preset == "quick"
  paths = studies.run("kg_phase", RunRequest("tiny", out=tmp_path))
  assert {p.name for p in paths} == {"kg_phase_tiny.json", "kg_phase_tiny.png", "kg_phase_tiny.pdf"}
  r = read_json(tmp_path / "kg_phase_tiny.json")
  s = kg_phase.SETTINGS["tiny"]
  assert len(r["cells"]) == len(s.widths) * len(s.weight_decays)
  assert all(c["phase"] in kg_phase.PHASES for c in r["cells"])
  assert len(r["ablation"]["per_relation"]) == 12 and len(r["criteria"]) == 4
  assert r["ablation"]["test_queries"] == sum(p["test_queries"] for p in r["ablation"]["per_relation"])
  assert "| width \\ weight decay |" in kg_phase.readme(r)
  assert studies.criteria_of(tmp_path / "kg_phase_tiny.json") == r["criteria"]


@pytest.mark.parametrize("args,msg", [
    (["--set", "study.phi=1.5"], "study.phi=1.5 must be in (0, 1]"),
    (["--set", "study.steps=250"], "multiple of study.eval_every"),
    (["--set", "study.weight_decays=-1"], "must be ≥ 0"),
    (["--set", "model.layers=2"], "takes study.* keys only"),
    (["--preset", "gpu"], "has no preset 'gpu'"),
])
def test_bad_settings_fail_as_one_line_config_errors(args, msg, tmp_path, capsys):
  from icl_lab import cli

  argv = ["run", "kg_phase", "--out", str(tmp_path)] + (args if "--preset" in args else ["--preset", "tiny", *args])
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("icl-lab: config error:") and msg in err and len(err.strip().splitlines()) == 1
  assert not list(tmp_path.iterdir())

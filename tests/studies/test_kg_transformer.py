"""The kg_transformer study: MLP ↔ transformer scores on synthetic representations, criteria on
hand-made results, and the tiny preset end to end."""

import dataclasses

import numpy as np
import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import kg_transformer as kt
from icl_lab.studies.base import RunRequest


def test_affine_copies_score_one_and_independent_representations_do_not():
  rng = np.random.default_rng(0)
  s = kt.Settings(dim=4, seeds=(0, 1), layers=1, hidden=16, gen_wd=1.0, mlp_gen_wd=1.0)
  base_ExD = rng.normal(size=(90, 4))
  mlps = [{"weight_decay": wd, "seed": seed} for wd in (1.0, 0.0) for seed in (0, 1)]
  tfs = [{"weight_decay": wd, "seed": seed} for wd in (1.0, 0.0) for seed in (0, 1)]
  mlp_embs = [base_ExD @ rng.normal(size=(4, 4)) for _ in range(2)] + [rng.normal(size=(90, 4)) for _ in range(2)]
  # A generalising transformer: the same 4-D structure embedded in 16 dims (layer 0 and layer 1).
  tf_states = [np.stack([base_ExD @ rng.normal(size=(4, 16))] * 2) for _ in range(2)]
  tf_states += [rng.normal(size=(2, 90, 16)) for _ in range(2)]
  rows = kt.compare(mlps, mlp_embs, tfs, tf_states, s, layer=0)
  assert len(rows) == 8  # per kind: 2 pairs of different seeds, both directions
  g = kt.summary(rows)
  assert g["generalising"]["median_score"] == pytest.approx(1.0)
  assert g["memorising"]["median_score"] < 0.3 and g["null"]["median_score"] < 0.3
  proj, share = kt.top_components(tf_states[0][0], 4)
  assert proj.shape == (90, 4) and share == pytest.approx(1.0)


def _result(test=0.85, gen=0.95, memo=0.2, null=0.1):
  groups = {"generalising": {"pairs": 4, "median_score": gen}, "memorising": {"pairs": 4, "median_score": memo},
            "null": {"pairs": 4, "median_score": null}}
  return {"settings": {"gen_wd": 1.0, "rep_layer": 0},
          "transformers": [{"weight_decay": 1.0, "test": test}, {"weight_decay": 0.0, "test": 0.1}], "groups": groups}


def test_criteria_on_hand_made_results():
  assert [c.met for c in kt.criteria(_result())] == [True, True, True, True]
  crit = kt.criteria(_result(test=0.79, gen=0.89, memo=0.51, null=0.6))
  assert [c.met for c in crit] == [False] * 4 and crit[0].value == 0.79


def test_tiny_preset_end_to_end(tmp_path):
  assert studies.get("kg_transformer").headline_preset == "quick"
  paths = studies.run("kg_transformer", RunRequest("tiny", out=tmp_path, runs_dir=tmp_path / "runs"))
  assert {p.name for p in paths} == {"kg_transformer_tiny.json", "kg_transformer_tiny.png", "kg_transformer_tiny.pdf"}
  r = read_json(tmp_path / "kg_transformer_tiny.json")
  s = kt.SETTINGS["tiny"]
  assert len(r["transformers"]) == len(r["mlps"]) == 2 * len(s.seeds) and len(r["criteria"]) == 4
  assert [lay["layer"] for lay in r["layers"]] == list(range(s.layers + 1))
  assert r["groups"]["generalising"]["pairs"] == 4 and len(r["transformers"][0]["test_curve"]) == len(r["steps"])
  assert "| layer | generalising |" in kt.readme(r)
  assert studies.criteria_of(tmp_path / "kg_transformer_tiny.json") == r["criteria"]


def test_transformer_run_key_names_every_setting_that_shapes_the_transformers():
  left_out = {"rep_layer", "dim", "mlp_width", "mlp_gen_wd", "mlp_steps", "fit_fraction", "map_seed", "cpu_s"}
  fields = {f.name for f in dataclasses.fields(kt.Settings)}
  assert set(kt.TRANSFORMER_KEYS) | left_out == fields and not set(kt.TRANSFORMER_KEYS) & left_out
  s = kt.SETTINGS["tiny"]
  assert kt.transformer_key(dataclasses.replace(s, mlp_steps=7)) == kt.transformer_key(s)
  assert kt.transformer_key(dataclasses.replace(s, steps=90)) != kt.transformer_key(s)


def test_bad_settings_fail_as_one_line_errors(tmp_path, capsys):
  from icl_lab import cli

  assert cli.main(["run", "kg_transformer", "--out", str(tmp_path), "--preset", "tiny", "--set",
                   "study.rep_layer=3"]) == 2
  err = capsys.readouterr().err
  assert "study.rep_layer=3 must be in [0, study.layers=1]" in err and len(err.strip().splitlines()) == 1

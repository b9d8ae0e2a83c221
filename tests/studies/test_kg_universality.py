"""The kg_universality study: pair scores against ground truth, criteria on hand-made results, and the
tiny preset end to end."""

import types

import numpy as np
import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import kg_universality as ku
from icl_lab.studies.base import RunRequest


def _model(width, wd, seed, emb_ExD):
  ens = types.SimpleNamespace(params_K={"entity": np.asarray(emb_ExD)[None]})
  return ku.Model(width, wd, seed, 1.0, 0.9 if wd else 0.2, ens, 0)


def test_exact_affine_copies_score_one_and_independent_embeddings_do_not():
  rng = np.random.default_rng(0)
  base_ExD = rng.normal(size=(120, 6))
  gens = [_model(w, 1.0, seed, base_ExD @ rng.normal(size=(6, 6)) + rng.normal(size=6))
          for w, seed in ((16, 0), (32, 1), (64, 2))]
  memos = [_model(w, 0.0, seed, rng.normal(size=(120, 6))) for w, seed in ((16, 0), (32, 1), (64, 2))]
  s = ku.Settings(dim=6)
  rows = ku.compare(gens + memos, s)
  assert len(rows) == 12  # 6 ordered pairs of each kind, all differing in width and seed
  gen = [r for r in rows if r["kind"] == "generalising"]
  assert all(r["r2"] == pytest.approx(1.0) and r["score"] == pytest.approx(1.0) for r in gen)
  assert all(r["cka"] == pytest.approx(ku.rep.linear_cka(base_ExD, gens[0].embeddings()), abs=0.2) for r in gen)
  memo = [r for r in rows if r["kind"] == "memorising"]
  assert max(r["score"] for r in memo) < 0.3
  groups = ku.summary(rows, gens + memos, s)
  assert groups["generalising"]["median_score"] == pytest.approx(1.0)
  assert groups["null"]["median_score"] < 0.3 and groups["null"]["median_cka"] < 0.3
  assert [c.met for c in ku.criteria({"groups": groups})] == [True, True, True]


def test_pairs_differ_in_width_and_seed():
  e = np.zeros((30, 2))
  models = [_model(w, wd, seed, e) for w in (8, 16) for wd in (0.0, 1.0) for seed in (0, 1)]
  for kind in ("generalising", "memorising"):
    pairs = ku.pairs(models, kind)
    assert len(pairs) == 4 and all(a.width != b.width and a.seed != b.seed and a.kind == b.kind == kind
                                   for a, b in pairs)


def test_score_subtracts_only_a_positive_null():
  assert ku.score(0.95, -0.4) == 0.95 and ku.score(0.95, 0.2) == pytest.approx(0.75)


def _groups(gen=0.95, memo=0.3, null=-0.2):
  g = {"pairs": 4, "median_r2": 0, "median_null_r2": 0, "median_cka": 0}
  return {"groups": {"generalising": {**g, "median_score": gen}, "memorising": {**g, "median_score": memo},
                     "null": {**g, "median_score": null}}}


def test_criteria_met_and_missed_at_their_thresholds():
  assert [c.met for c in ku.criteria(_groups())] == [True, True, True]
  assert [c.met for c in ku.criteria(_groups(gen=0.9, memo=0.5, null=0.5))] == [True, True, True]
  crit = ku.criteria(_groups(gen=0.89, memo=0.51, null=0.6))
  assert [c.met for c in crit] == [False, False, False] and crit[0].value == 0.89


def test_tiny_preset_end_to_end(tmp_path):
  assert studies.get("kg_universality").headline_preset == "quick"
  paths = studies.run("kg_universality", RunRequest("tiny", out=tmp_path))
  assert {p.name for p in paths} == {"kg_universality_tiny.json", "kg_universality_tiny.png",
                                     "kg_universality_tiny.pdf"}
  r = read_json(tmp_path / "kg_universality_tiny.json")
  s = ku.SETTINGS["tiny"]
  assert len(r["models"]) == 2 * len(s.widths) * len(s.seeds) and len(r["criteria"]) == 3
  assert r["groups"]["generalising"]["pairs"] == r["groups"]["memorising"]["pairs"] == 4
  assert len(r["english_italian"]["models"]) == len(s.seeds)
  assert [(w["weight_decay"], w["pairs"]) for w in r["wd_sweep"]] == [(1.0, 2), (3.0, 2)]
  assert "Weight-decay sweep" in ku.readme(r)
  assert "| pairs | count |" in ku.readme(r) and "English → Italian" in ku.readme(r)
  assert studies.criteria_of(tmp_path / "kg_universality_tiny.json") == r["criteria"]


@pytest.mark.parametrize("args,msg", [
    (["--set", "study.phi=1"], "study.phi=1.0 must be in (0, 1)"),
    (["--set", "study.seeds=0"], "need two values each"),
    (["--set", "study.ei_dim=4"], "at most 2 dims"),
    (["--set", "study.founders=1", "--set", "study.generations=1", "--set", "study.dim=8"],
     "affine fit from 8 dims needs >= 27 fitting entities"),
    (["--set", "model.layers=2"], "takes study.* keys only"),
])
def test_bad_settings_fail_as_one_line_errors(args, msg, tmp_path, capsys):
  from icl_lab import cli

  assert cli.main(["run", "kg_universality", "--out", str(tmp_path), "--preset", "tiny", *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith("icl-lab:") and msg in err and len(err.strip().splitlines()) == 1
  assert not list(tmp_path.iterdir())

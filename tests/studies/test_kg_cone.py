"""The kg_cone study: its criterion on hand-made results, and the tiny preset end to end."""

import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import kg_cone
from icl_lab.studies.base import RunRequest


def _variant(inputs, width, scores):
  models = [{"seed": k, "score": x, "accuracy": 1.0} for k, x in enumerate(scores)]
  return {"inputs": inputs, "width": width, "models": models, "cones": sum(x >= 0.95 for x in scores)}


def test_criterion_counts_the_best_variants_seeds():
  seven = [0.95] * 7 + [0.5, 0.6]
  six = [0.99] * 6 + [0.949, 0.5, 0.6]
  crit = kg_cone.criteria({"variants": [_variant("concat", 8, six), _variant("difference", 64, seven)]})
  assert [c.met for c in crit] == [True] and crit[0].value == "7 of 9" and "difference, width 64" in crit[0].name
  crit = kg_cone.criteria({"variants": [_variant("concat", 8, six)]})
  assert [c.met for c in crit] == [False] and crit[0].target == "≥ 7 of 9"


def test_tiny_preset_end_to_end(tmp_path):
  assert studies.get("kg_cone").headline_preset == "quick"
  paths = studies.run("kg_cone", RunRequest("tiny", out=tmp_path))
  assert {p.name for p in paths} == {"kg_cone_tiny.json", "kg_cone_tiny.png", "kg_cone_tiny.pdf"}
  r = read_json(tmp_path / "kg_cone_tiny.json")
  s = kg_cone.SETTINGS["tiny"]
  assert r["nodes"] == 15 and r["descendant_pairs"] == 34
  assert len(r["variants"]) == len(s.inputs) * len(s.widths)
  assert all(0.5 <= m["score"] <= 1.0 and len(m["embedding"]) == 15 for v in r["variants"] for m in v["models"])
  assert "| MLP input | width |" in kg_cone.readme(r)
  assert studies.criteria_of(tmp_path / "kg_cone_tiny.json") == r["criteria"]


@pytest.mark.parametrize("args,msg", [
    (["--set", "study.inputs=sum"], "each must be one of concat, difference"),
    (["--set", "study.widths=0"], "≥ 1"),
    (["--set", "model.layers=2"], "takes study.* keys only"),
])
def test_bad_settings_fail_as_one_line_errors(args, msg, tmp_path, capsys):
  from icl_lab import cli

  assert cli.main(["run", "kg_cone", "--out", str(tmp_path), "--preset", "tiny", *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith("icl-lab:") and msg in err and len(err.strip().splitlines()) == 1

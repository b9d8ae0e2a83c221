"""The knowledge-capacity study: its runs' exposures, its criteria on hand-made results, and the tiny
preset end to end (a smaller model stores fewer bits of the same world)."""

import subprocess
import sys

import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import knowledge_capacity as study


def test_registered_with_tiny_and_quick_presets_and_one_output():
  s = studies.get("knowledge_capacity")
  assert s.results_stems == ("knowledge_capacity",) and set(s.presets) == {"tiny", "quick"} == set(study.SETTINGS)
  assert s.presets["tiny"] <= 60 and s.presets["quick"] <= 1200 and s.headline_preset == "quick"
  assert studies.output_for("knowledge_capacity_tiny")[0] is s


def test_quick_runs_see_each_fact_about_100_times_with_multi_token_names():
  cfgs = study.configs("quick")
  s = study.SETTINGS["quick"]
  assert len(cfgs) == len(s.widths) * len(s.persons) >= 3 * 3
  for c in cfgs:
    f = c.facts
    assert f.name_tokens >= 2 and f.fact_frac == 1.0 and f.zipf == 0.0 and not f.inject_every
    assert 100 <= study.exposures_of(c) <= 110, c.run_name()
    assert c.train.batch_size % 8 == 0 and c.train.steps % c.train.steps_per_call == 0
    assert c.train.checkpoint_every == c.train.steps
    # By hand: steps · batch · sentences facts seen, each of persons × relations facts equally often.
    assert study.exposures_of(c) == c.train.steps * c.train.batch_size * f.sentences / (f.persons * f.relations)
  assert len({c.run_name() for c in cfgs}) == len(cfgs)


def _result(levels_by_size, params, exposures=100.0):
  facts = [100, 400, 1600]
  return {"sizes": [{"layers": 1, "hidden": 8 * (i + 1), "params_non_embedding": p,
                     "worlds": [{"facts": f, "log2v_total": 5.0 * f, "stored_bits": b, "exposures": exposures}
                                for f, b in zip(facts, levels)]}
                    for i, (levels, p) in enumerate(zip(levels_by_size, params))]}


def test_criteria_on_hand_values():
  # Two sizes 4x apart, each saturating at 1 bit/param: ratios 1.0 and 1.1, slope exactly 1.
  r = _result([[300, 1000, 1000], [450, 3600, 4000]], [1000, 4000])
  sat, slope, bpp = study.criteria(r)
  assert sat.value == pytest.approx([1.0, 4000 / 3600]) and sat.met
  assert slope.value == pytest.approx(1.0) and slope.met
  assert bpp.value == pytest.approx([1.0, 1.0]) and bpp.met and "published: 1 at 100" in bpp.name
  # Still growing with the world, and capacity that does not scale with size.
  r = _result([[300, 600, 1200], [300, 600, 1300]], [1000, 4000])
  sat, slope, bpp = study.criteria(r)
  assert not sat.met and slope.value == pytest.approx(0.0572, abs=1e-3) and not slope.met
  assert bpp.value == pytest.approx([1.2, 0.325]) and not bpp.met
  # At about 1000 exposures the reference is 2 bits/param.
  assert "published: 2 at 1000" in study.criteria(_result([[1, 2, 2]], [1], exposures=900))[2].name
  assert study.loglog_slope([1, 10], [0, 5]) is None


def test_run_tiny_a_smaller_model_stores_fewer_bits(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "icl_lab.cli", "run", "knowledge_capacity", "--preset", "tiny"],
                        capture_output=True, text=True, timeout=600, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not (tmp_path / "figures").exists()
  path = tmp_path / "results" / "knowledge_capacity_tiny.json"
  r = read_json(path)
  assert path.with_suffix(".png").exists() and path.with_suffix(".pdf").exists()
  small, big = r["sizes"]
  assert small["params_non_embedding"] * 8 < big["params_non_embedding"]
  (ws,), (wb,) = small["worlds"], big["worlds"]
  assert ws["facts"] == wb["facts"] == 32 * 4 and ws["exposures"] == pytest.approx(100.0)
  assert 0 <= ws["stored_bits"] < wb["stored_bits"] <= wb["log2v_total"] == 128 * 4
  assert [c["name"] for c in r["criteria"]] == [c.name for c in study.criteria(r)]
  table = study.readme(r)
  assert "| L1/H4 |" in table and "| L1/H32 |" in table

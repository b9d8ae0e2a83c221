"""The knowledge-infusion study: its quick runs (sizes, F grid, world against capacity), its
criteria on hand-made results, and the tiny preset end to end."""

import numpy as np
import pytest
from flax import nnx

from icl_lab import studies, tasks
from icl_lab.analysis import capacity
from icl_lab.analysis import infusion_law as law_lib
from icl_lab.io import read_json
from icl_lab.studies import infusion as study
from icl_lab.studies.base import RunRequest
from icl_lab.tasks import infusion
from icl_lab.training import train


def test_registered_last_with_two_outputs_and_three_presets():
  s = studies.get("infusion")
  assert list(studies.STUDIES)[-1] == "infusion" and s.headline_preset == "quick"
  assert s.results_stems == ("infusion_curves", "infusion_law") and set(s.presets) == {"tiny", "quick", "gpu"}
  assert s.presets["tiny"] <= 60 and s.presets["quick"] <= 75 * 60 and s.presets["gpu"] is None
  assert studies.output_for("infusion_law_tiny")[0] is s


def test_quick_sizes_span_10x_on_a_world_beyond_their_capacity_and_each_size_is_one_ensemble():
  s = study.SETTINGS["quick"]
  rows = study.grid("quick", s)
  fs = [c.facts.infuse_exposures for c in rows[0]]
  assert len(rows) >= 4 and len(fs) >= 6 and fs[0] == 1 and fs == sorted(fs) and fs[-1] >= 1000
  build = lambda c: nnx.eval_shape(lambda: tasks.get_task(c).build_model(c, 0))  # noqa: E731 - shapes only
  params = [capacity.non_embedding_params(build(row[0])) for row in rows]
  assert params == sorted(params) and params[-1] / params[0] >= 10
  f = rows[0][0].facts
  assert f.name_tokens >= 2 and f.infuse_templates == 2 < f.templates
  assert f.persons * f.relations * np.log2(f.values) >= 1.5 * study.CAPACITY_BITS_PER_PARAM * params[-1]
  for row in rows:
    train.check_ensemble(row)  # F is the only difference within a size
    assert len({(c.train.steps, c.train.batch_size) for c in row}) == 1  # one token budget
  # The largest F lets the domain dominate the stream, yet leaves general data at every step.
  assert 0.5 < infusion.domain_share(rows[0][-1])["sentence_share"] < 0.9
  # The domain fits in the smallest size with room to spare: every size could hold it at some F.
  assert infusion.domain_facts(f) * np.log2(f.values) <= 0.5 * study.CAPACITY_BITS_PER_PARAM * params[0]


def _result(optima, params, fs=(1, 3, 10, 30, 100, 300)):
  """Sizes whose infused P follows the law exactly with F* = optima (b = 1, peak 0.8), total bits likewise."""
  sizes = []
  for opt, p in zip(optima, params):
    law = law_lib.Law(0.8 * np.e / opt, 1.0, 1.0 / opt, 1.0)
    ps = law_lib.predict(law, np.asarray(fs, np.float64))
    runs = [{"infused_p": float(x), "total_bits": float(1000 * x), "general_accuracy": 0.5} for x in ps]
    sizes.append({"layers": 1, "hidden": 8, "params_non_embedding": p, "runs": runs,
                  "P": {"infused": [r["infused_p"] for r in runs], "total": [r["total_bits"] for r in runs]}})
  return {"exposures": list(fs), "values": 32, "sizes": sizes}


def test_criteria_on_hand_values():
  params = [1000, 2000, 4000, 16000]
  r = _result([40 * (p / 1000) ** 0.4 for p in params], params)  # F* = 40·(N/1000)^0.4: 40 .. 121
  pressure, collapse, fits = study.criteria_curves(r)
  assert pressure.met and collapse.met and fits.met
  mono, predict, at = study.criteria_law(r)
  assert mono.met and mono.value["infused"]["sign"] == "+" and predict.value == pytest.approx(1.0) and predict.met
  assert at.met
  # No collapse in range (F* far beyond 300), and F* not monotone in size.
  r = _result([3000, 20, 40, 30], params)
  assert not study.criteria_curves(r)[1].met and not study.criteria_law(r)[0].met
  r["sizes"][0]["runs"][0]["general_accuracy"] = 0.9
  assert not study.criteria_curves(r)[0].met


def test_tiny_preset_end_to_end(tmp_path, capsys):
  """In process (the CLI path, `icl-lab run infusion --preset tiny`, adds only its start-up)."""
  studies.run("infusion", RunRequest("tiny", (), tmp_path / "runs", out=tmp_path / "results"))
  out = capsys.readouterr().out
  for base in ("infusion_curves_tiny", "infusion_law_tiny"):
    r = read_json(tmp_path / "results" / f"{base}.json")
    assert len(r["criteria"]) == 3 and len(r["sizes"]) == 2
    assert (tmp_path / "results" / f"{base}.png").stat().st_size > 1000
    assert f"{base}.json:" in out
  curves = read_json(tmp_path / "results" / "infusion_curves_tiny.json")
  assert [x["F"] for x in curves["sizes"][0]["runs"]] == [1, 4, 16, 64]
  share = [x["token_share"] for x in curves["sizes"][0]["runs"]]
  assert share == sorted(share) and share[0] > 0
  assert "| L1/H4 |" in studies.get("infusion").outputs[0].readme(curves)
  law = read_json(tmp_path / "results" / "infusion_law_tiny.json")
  assert set(law["sizes"][0]["law"]) == {"infused", "total"}
  assert "| infused |" in studies.get("infusion").outputs[1].readme(law)

"""The criteria of the fig4, constructions and fig6 results on hand-made results: every flag and
value is known by hand, including values exactly at each threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from icl_lab import studies
from icl_lab.studies import constructions, fig1, fig4


def _met_and_values(crits):
  return [(c.met, c.value) for c in crits]


def test_the_registered_outputs_use_these_criteria():
  assert studies.output_for("fig4_probes")[1].criteria is fig4.criteria
  assert studies.output_for("constructions_quick")[1].criteria is constructions.criteria
  assert studies.output_for("fig6_linearity")[1].criteria is fig1.criteria_fig6


# ---------------------------------------------------------------------------
# fig4: per target, the first layer any attention probe (not the ridge baseline) reaches R² ≥ 0.9


def _reach(layer):
  return {"layer": layer, "best_layer": 0 if layer is None else layer, "best_r2": 0.5 if layer is None else 0.95}


def test_fig4_takes_the_earliest_attention_probe_and_ignores_the_ridge_baseline():
  r = {"targets": ["xty", "w_ols", "w"], "first_layer_r2_ge_0.9": {
      "xty": {"linear": _reach(5), "mlp": _reach(3), "last_token_ridge": _reach(1)},  # ridge's 1 does not count
      "w_ols": {"linear": _reach(None), "mlp": _reach(None), "last_token_ridge": _reach(2)},  # only ridge: missed
      "w": {"linear": _reach(0), "mlp": _reach(None), "last_token_ridge": _reach(None)},  # layer 0 is a layer
  }}
  crits = fig4.criteria(r)
  assert _met_and_values(crits) == [(True, 3), (False, None), (True, 0)]
  assert [c.name for c in crits] == [
      "first layer where a probe decodes XᵀY with R² ≥ 0.9", "first layer where a probe decodes w_OLS with R² ≥ 0.9",
      "first layer where a probe decodes true w with R² ≥ 0.9"]
  assert {c.target for c in crits} == {"exists (a layer index)"}
  # Only the targets listed are judged, in their order.
  assert _met_and_values(fig4.criteria({**r, "targets": ["w", "xty"]})) == [(True, 0), (True, 3)]


# ---------------------------------------------------------------------------
# constructions: float64 max |err| ≤ 1e-8, float32 MSPD/d ≤ 1e-6 at every d; LSA loss ratio < 1.05, cos > 0.95


def _row(max_abs_err, mspd_over_d):
  return {"max_abs_err": max_abs_err, "mspd_over_d": mspd_over_d}


def _constructions(sgd64, sgd32, ridge64, lsa):
  return {"agreement": {
      "sgd": {"learner": "sgd(0.03)", "by_dtype": {"float64": sgd64, "float32": sgd32}},
      "ridge": {"learner": "ridge(0.5)", "by_dtype": {"float64": ridge64}},  # no float32 row: no criterion
  }, "lsa": lsa}


def test_constructions_criteria_at_and_past_their_thresholds():
  # Exactly at the ≤ thresholds is met; the worst d decides; the strict LSA thresholds are missed when equal.
  r = _constructions(sgd64={"2": _row(1e-12, 0.0), "4": _row(1e-8, 0.0)},
                     sgd32={"2": _row(1e-3, 1e-6), "4": _row(1e-3, 5e-7)},
                     ridge64={"2": _row(3e-9, 0.0), "4": _row(2e-8, 0.0)},
                     lsa={"loss_trained": 1.05, "loss_construction": 1.0, "cos_kq": 0.99, "cos_pv": 0.95})
  crits = constructions.criteria(r)
  assert [c.name for c in crits] == [
      "sgd vs sgd(0.03), float64: largest |construction − learner|",
      "sgd vs sgd(0.03), float32: largest MSPD/d",
      "ridge vs ridge(0.5), float64: largest |construction − learner|",
      "trained LSA layer's loss over the construction's",
      "cosine between the trained LSA weights and the construction's (lower of W_KQ, W_PV)"]
  assert _met_and_values(crits) == [(True, 1e-8), (True, 1e-6), (False, 2e-8), (False, 1.05), (False, 0.95)]
  assert [c.target for c in crits] == ["≤ 1e-08 at every d", "≤ 1e-06 at every d", "≤ 1e-08 at every d",
                                       "< 1.05", "> 0.95"]


def test_constructions_criteria_just_inside_and_just_outside():
  r = _constructions(sgd64={"2": _row(0.0, 0.0)}, sgd32={"2": _row(0.0, 1.01e-6), "8": _row(0.0, 0.0)},
                     ridge64={"2": _row(9.9e-9, 0.0)},
                     lsa={"loss_trained": 2.0, "loss_construction": 2.5, "cos_kq": 0.951, "cos_pv": 0.999})
  assert _met_and_values(constructions.criteria(r)) == [
      (True, 0.0), (False, 1.01e-6), (True, 9.9e-9), (True, 0.8), (True, 0.951)]
  # A trained layer worse than the construction by 6% misses; the cosine is the lower of the two.
  r["lsa"] = {"loss_trained": 1.06, "loss_construction": 1.0, "cos_kq": 0.5, "cos_pv": 0.999}
  assert _met_and_values(constructions.criteria(r)[-2:]) == [(False, pytest.approx(1.06)), (False, 0.5)]


# ---------------------------------------------------------------------------
# fig6: the lowest mean R² over n ≥ 2 is at least 0.99


def test_fig6_reads_only_n_of_two_and_more_and_meets_at_exactly_099():
  (c,) = fig1.criteria_fig6({"r2_mean": [0.1, 0.5, 0.995, 0.99, 1.0]})  # n = 0, 1 are not judged
  assert (c.met, c.value, c.target) == (True, 0.99, "≥ 0.99 at every n ≥ 2")
  assert c.name == "lowest mean R² of the linear fit over n ≥ 2"
  (c,) = fig1.criteria_fig6({"r2_mean": [1.0, 1.0, 1.0, 0.9899, 1.0]})
  assert (c.met, c.value) == (False, 0.9899)
  (c,) = fig1.criteria_fig6({"r2_mean": [0.2, 0.3]})  # nothing at n ≥ 2: no value, not met
  assert (c.met, c.value) == (False, None)
  assert c.to_dict() == {"name": "lowest mean R² of the linear fit over n ≥ 2", "value": None,
                         "target": "≥ 0.99 at every n ≥ 2", "met": False}


# ---------------------------------------------------------------------------
# The inconclusive state: counted as not met, shown as "inconclusive", stored only when set


def test_inconclusive_is_not_met_and_is_shown_as_such():
  from icl_lab import results

  met = results.directional("ΔA", 0.2, "> 0", True, [[0.1, 0.3]], [1])
  open_ = results.directional("ΔA", 0.2, "> 0", True, [[-0.1, 0.3]], [1])
  wrong = results.directional("ΔA", -0.2, "> 0", False, [[-0.3, -0.1]], [1])
  assert [results.verdict(c) for c in (met, open_, wrong)] == ["met", "inconclusive", "missed"]
  assert open_.met is False and open_.to_dict()["inconclusive"] is True
  assert set(met.to_dict()) == set(wrong.to_dict()) == {"name", "value", "target", "met"}  # old schema
  text = results.format_criteria([c.to_dict() for c in (met, open_, wrong)])
  assert [line.split()[0] for line in text.splitlines()] == ["met", "inconclusive", "missed"]
  # A stored dict without the key (every file written before it) reads as before.
  assert results.verdict({"met": False}) == "missed" and results.verdict({"met": True}) == "met"


def test_scoreboard_names_inconclusive_criteria_and_old_ke_files_still_read(tmp_path):
  from icl_lab import results
  from icl_lab.io import read_json, write_json
  from icl_lab.studies import knowledge_entropy, readme

  figures = Path(__file__).resolve().parents[2] / "experiments" / "knowledge_entropy_onetoken"
  # The committed one-token quick results predate the paired intervals: the rows' own intervals decide.
  r = read_json(figures / "knowledge_resuscitation.json")
  q05 = knowledge_entropy.criteria_resuscitation(r)[2]
  assert q05.value < 0 and results.verdict(q05) == "inconclusive"  # ΔA −0.008, the rows' intervals overlap
  write_json(tmp_path / "knowledge_resuscitation.json", r)
  assert "p = 0.5, q = 0.5: ΔA (inconclusive)" in readme.scoreboard(tmp_path)
  # Their tables render with "–" where the new keys are missing.
  table = knowledge_entropy.readme_acquisition(read_json(figures / "knowledge_acquisition.json"))
  assert "| cosine | 1600 |" in table and "| – |" in table
  assert "| 0 |" in knowledge_entropy.readme_decay(read_json(figures / "knowledge_entropy_decay.json"))

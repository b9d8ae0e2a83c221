"""Studies made of many models run in units, so that a long study can finish in pieces.

A unit is one model (or, where a study asks for it, one ensemble of same-shape models). When a
unit finishes, each of its models' evaluation record (the per-n arrays and summaries the studies
draw and judge, not the weights) is stored as `<results folder>/units/<run name>.json`, keyed by
the run name (preset and config hash). A study then:

- trains only the units without a record (`--unit` picks one: a job-array task), and
- assembles its results from the records present; with records missing, the results file lists
  them and its criteria are marked incomplete, never met (`results.criteria_for`).

A record serves every study whose model has the same config: Fig. 2's noiseless column and
Fig. 3's L8/H64 point at the cpu recipe are Fig. 1's cpu model. Records of a headline preset are
committed in `figures/units/`, so a fresh clone reuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icl_lab import manifest, results
from icl_lab.analysis import evaluate
from icl_lab.analysis.learners import FIG1_LEARNERS
from icl_lab.config import Config, ConfigError
from icl_lab.io import is_writer, read_json, write_json
from icl_lab.studies.base import RunRequest, check_learners
from icl_lab.training import processes, train

RECORDS = "units"
# Held-out prompts from a seed that no recipe choice looked at (the recipes were picked on
# `evaluate.EVAL_SEED`), so headline numbers can be checked for selection bias.
HELDOUT_SEED = 2_000_029
# Every record compares with at least these, so that one record serves Fig. 1, 2 and 3.
RECORD_LEARNERS = (*FIG1_LEARNERS, "gd_k(0.02,3)", "ridge(0.0625)", "ridge(0.1111)", "ridge(0.25)", "ridge(0.4444)")
# The effective ridge a model should have: at the OLS end of the ridge path on noiseless data,
# within this factor of the Bayes λ = σ²/τ² under noise (Fig. 1, 2 and 3 judge by these too).
LAMBDA_STAR_MAX = 0.01
LAMBDA_FACTOR = 2.0
_SUMMARY_KEYS = ("spd_over_d", "mspd_over_d", "ilwd", "error_vs_truth", "error_ci95")


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """What a study needs from a record: its learners, on how many prompts."""

  learners: tuple[str, ...]
  num_prompts: int = 1024
  weights_prompts: int = 64  # prompts whose implicit weights (ILWD, R²) are fitted

  def served_by(self, stored: dict[str, Any]) -> bool:
    return (set(self.learners) <= set(stored["learners"]) and stored["num_prompts"] == self.num_prompts
            and stored["weights_prompts"] >= self.weights_prompts)

  def widened(self) -> EvalSpec:
    """The spec a new record is evaluated with: the study's learners and every record learner."""
    return dataclasses.replace(self, learners=tuple(dict.fromkeys((*self.learners, *RECORD_LEARNERS))))


@dataclasses.dataclass(frozen=True)
class Unit:
  """What one invocation trains: one model, or one ensemble of same-shape models."""

  cfgs: tuple[Config, ...]

  @property
  def name(self) -> str:
    return self.cfgs[0].run_name()


def make_units(cfgs: Sequence[Config], ensemble: bool = False) -> list[Unit]:
  """One unit per distinct model, or (ensemble) per group of same-shape models, in order."""
  distinct = list({c.hash(): c for c in cfgs}.values())
  if not ensemble:
    return [Unit((c,)) for c in distinct]
  groups: dict[str, list[Config]] = {}
  for c in distinct:
    groups.setdefault(train.ensemble_key(c), []).append(c)
  return [Unit(tuple(g)) for g in groups.values()]


class Records:
  """Records written to one folder and read from it and, for a headline run, the committed one."""

  def __init__(self, write_dir: Path, read_dirs: Sequence[Path] = ()):
    self.write_dir = Path(write_dir)
    self.read_dirs = [self.write_dir, *[Path(d) for d in read_dirs if Path(d).resolve() != self.write_dir.resolve()]]

  def get(self, run_name: str, spec: EvalSpec, adopt: bool = False) -> dict[str, Any] | None:
    """The record of a run that serves `spec`, if any; with `adopt`, one found in another folder
    is also written to this one (so a promoted study commits every record it used)."""
    for folder in self.read_dirs:
      path = folder / f"{run_name}.json"
      if path.exists():
        record = read_json(path)
        if spec.served_by(record["eval"]):
          if adopt and folder != self.write_dir:
            self.put(record)
          return record
    return None

  def put(self, record: dict[str, Any]) -> Path:
    path = self.write_dir / f"{record['run']}.json"
    record = {**{k: v for k, v in record.items() if k != "criteria"},
              "criteria": [c.to_dict() for c in criteria(record)]}
    if is_writer():  # process 0 of a multi-process run writes; the others wait, then read it back
      write_json(path, record)  # atomic: a record is whole or absent
    processes.barrier("icl_lab_unit_record")
    return path


def records_for(req: RunRequest, dest: results.Destination) -> Records:
  """Records live in `units/` beside the results. A headline run also reads those of earlier
  headline runs in results/ (job-array tasks write there) and the committed ones (unless --fresh
  asks to retrain and re-evaluate everything)."""
  read = [results.SCRATCH_DIR / RECORDS] if dest.headline else []
  read += [results.HEADLINE_DIR / RECORDS] if dest.headline and not req.fresh else []
  return Records(dest.folder / RECORDS, read)


def evaluate_record(run_dir: Path, spec: EvalSpec) -> dict[str, Any]:
  """A trained run's record: `evaluate.compare` against the spec's learners (every pair of OLS
  and ridge projections, and λ*), plus λ* and the projection a against ridge(0.1) at every kept
  checkpoint, and on held-out prompts of their own seed."""
  predict, cfg = evaluate.predict_at(run_dir)
  batch = evaluate.eval_batch(cfg.task, spec.num_prompts)
  result = evaluate.compare(predict, batch, spec.learners, weights_prompts=spec.weights_prompts,
                            projection_ref=None, all_projections=True, lambda_star=True)
  # The final checkpoint's point of the curve is the full evaluation's; only earlier ones are loaded.
  final = {"mspd_over_d": {n: result["mspd_over_d"][n] for n in evaluate.PATH_LEARNERS},
           "projection_a": {evaluate.PATH_VS: {"ref": "ols", **result["projections"]["ols"][evaluate.PATH_VS]}},
           "lambda_star": result["lambda_star"]}
  curve = [_curve_point(step, evaluate.ridge_path(*evaluate.predict_at(run_dir, step), spec.num_prompts))
           for step in train.kept_steps(run_dir)[:-1]] + [_curve_point(cfg.train.steps, final)]
  held = evaluate.ridge_path(predict, cfg, spec.num_prompts, seed=HELDOUT_SEED)
  return {"run": run_dir.name, "config": cfg.to_dict(), "train_s": train.train_seconds(run_dir),
          "device": manifest.device_description(),  # where it was evaluated (and, by a unit, trained)
          "lambda_star_curve": curve,
          "eval": {"learners": list(spec.learners), "num_prompts": spec.num_prompts,
                   "weights_prompts": spec.weights_prompts, "eval_seed": evaluate.EVAL_SEED},
          "result": result, "heldout": {"seed": HELDOUT_SEED, **held}}


def _curve_point(step: int, path: dict[str, Any]) -> dict[str, Any]:
  lam = path["lambda_star"]
  return {"step": step, "lambda_star": lam["lam"], "ci95": lam["ci95"],
          "projection_a": path["projection_a"][evaluate.PATH_VS]}


def criteria(record: dict[str, Any]) -> list[results.Criterion]:
  """One model's own verdict, from its record: its effective ridge λ* against the Bayes λ of the
  task it was trained on (σ²/τ², 0 without noise)."""
  task = record["config"]["task"]
  bayes = task["noise_std"] ** 2 / task["weight_std"] ** 2
  lam = record["result"]["lambda_star"]["lam"]
  if bayes == 0:
    return [results.Criterion("effective ridge λ* on noiseless data (OLS is λ = 0)", lam, f"≤ {LAMBDA_STAR_MAX:g}",
                              lam <= LAMBDA_STAR_MAX)]
  return [results.Criterion(f"effective ridge λ* over the Bayes λ = σ²/τ² = {bayes:.4g}", lam / bayes,
                            f"within {LAMBDA_FACTOR:g}× of 1", 1 / LAMBDA_FACTOR <= lam / bayes <= LAMBDA_FACTOR)]


def select(units: Sequence[Unit], which: str | None) -> list[Unit]:
  """`--unit`: all units (None), one by its index (0-based, a job-array task id) or by run name."""
  if which is None:
    return list(units)
  names = [u.name for u in units]
  if which.isdigit() and int(which) < len(units):
    return [units[int(which)]]
  if which in names:
    return [units[names.index(which)]]
  raise ConfigError(f"--unit {which!r} is not a unit of this study; give 0 to {len(units) - 1} or one of "
                    f"{', '.join(names)} (`icl-lab units STUDY` lists them)")


def run_units(units: Sequence[Unit], spec: EvalSpec, req: RunRequest, records: Records) -> dict[str, dict]:
  """Trains and evaluates the selected units that lack a record; returns the records present,
  by run name. A run folder that is already trained is evaluated without training."""
  check_learners(spec.learners)
  for unit in select(units, req.unit):
    todo = [c for c in unit.cfgs if records.get(c.run_name(), spec) is None]
    if not todo or not req.train_missing:
      continue
    print(f"unit {unit.name}: {train.config_summary(unit.cfgs[0])}"
          + (f", {len(unit.cfgs)} models in one ensemble" if len(unit.cfgs) > 1 else ""), flush=True)
    for cfg, run_dir in zip(unit.cfgs, train.train_many(list(unit.cfgs), req.runs_dir)):
      if cfg in todo:
        print(f"recorded {records.put(evaluate_record(run_dir, spec.widened()))}", flush=True)
  found = {}
  for unit in units:
    for cfg in unit.cfgs:
      rec = records.get(cfg.run_name(), spec, adopt=True)
      if rec is not None:
        found[cfg.run_name()] = rec
  return found


def status(units: Sequence[Unit], spec: EvalSpec, records: Records, runs_dir: Path) -> list[str]:
  """One line per unit: its index, run name, model and whether it has a record or a trained run."""
  lines = []
  for i, unit in enumerate(units):
    recorded = [records.get(c.run_name(), spec) is not None for c in unit.cfgs]
    trained = [train.is_done(Path(runs_dir) / c.run_name()) for c in unit.cfgs]
    state = ("recorded" if all(recorded) else "trained, not yet evaluated" if all(trained)
             else f"{sum(recorded)} of {len(recorded)} recorded" if any(recorded) else "to train")
    lines.append(f"{i:3d}  {unit.name}  {train.config_summary(unit.cfgs[0])}  {state}")
  return lines


def view(record: dict[str, Any], learners: Sequence[str], projection_ref: str | None = "ols") -> dict[str, Any]:
  """The record's result as `evaluate.compare` would give it for `learners` and `projection_ref`."""
  res = record["result"]
  keep = set(learners) | {"transformer"}
  out = {k: v for k, v in res.items() if k not in (*_SUMMARY_KEYS, "projections", "closest_learner")}
  for key in _SUMMARY_KEYS:
    out[key] = {name: v for name, v in res[key].items() if name in keep}
  if projection_ref is not None and projection_ref in res["projections"]:
    out["projection_a"] = {name: {"ref": projection_ref, **p} for name, p in res["projections"][projection_ref].items()
                           if name in learners}
  full = {k: v["full"] for k, v in out["mspd_over_d"].items()}
  out["closest_learner"] = min(full, key=full.get)
  return out


def missing(cfgs: Sequence[Config], found: dict[str, dict]) -> list[str]:
  return [c.run_name() for c in cfgs if c.run_name() not in found]

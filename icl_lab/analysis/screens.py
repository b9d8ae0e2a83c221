"""Recipe screens measured by what a recipe costs: training seconds until the projection a of the
model against ridge(0.1) (OLS as the reference) falls below a threshold on Fig. 1's task.

`until_a` trains a run in segments and scores each new checkpoint on the fixed evaluation prompts,
stopping at the first checkpoint below the threshold, so a fast recipe is not charged for the rest
of its schedule. Its run folder stays resumable: the same call later reuses what is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from icl_lab.analysis import evaluate
from icl_lab.config import Config, ConfigError
from icl_lab.training import train


def median_seconds_per_step(metrics: list[dict[str, Any]], step: int) -> float:
  """The median of the logged seconds per step up to `step`: the step's cost on this machine, robust
  to compiles, pauses and other jobs that share the cores for part of the run."""
  return float(np.median([1.0 / rec["steps_per_s"] for rec in metrics if rec["step"] <= step]))


def point(run_dir: Path, step: int, num_prompts: int) -> dict[str, Any]:
  """One checkpoint's place on the ridge path and the training seconds it took to reach it."""
  path = evaluate.ridge_path(*evaluate.predict_at(run_dir, step), num_prompts)
  a = path["projection_a"][evaluate.PATH_VS]
  log = train.read_metrics(run_dir)
  return {"step": step, "train_s": train.logged_seconds(log, step),
          "s_per_step_median": median_seconds_per_step(log, step),
          "a": a["a"], "ci95": a["ci95"], "lambda_star": path["lambda_star"]["lam"],
          "mspd_over_d": path["mspd_over_d"]}


def first_below(curve: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
  return next((p for p in curve if p["a"] < threshold), None)


def until_a(cfg: Config, runs_dir: str | Path = "runs", *, threshold: float = 0.5, segment_steps: int = 0,
            max_steps: int = 0, num_prompts: int = 1024, log=print) -> dict[str, Any]:
  """Trains `cfg` until a checkpoint's a < `threshold` (or to its last step, or to `max_steps` if set);
  returns the curve of every checkpoint scored and the first one below the threshold (None if none
  was). The schedule stays the full run's: a budget only stops early, and a later call resumes."""
  tr = cfg.train
  if max_steps < 0 or max_steps % tr.checkpoint_every:
    raise ConfigError(f"max_steps={max_steps} must be a positive multiple of train.checkpoint_every="
                      f"{tr.checkpoint_every}")
  segment = segment_steps or 3 * tr.checkpoint_every
  if segment % tr.checkpoint_every:
    raise ConfigError(f"segment_steps={segment} must be a multiple of train.checkpoint_every={tr.checkpoint_every}")
  if tr.keep_checkpoints * tr.checkpoint_every < segment:
    raise ConfigError(f"train.keep_checkpoints={tr.keep_checkpoints} drops checkpoints before they are scored; "
                      f"set it to at least {segment // tr.checkpoint_every}")
  budget = min(max_steps or tr.steps, tr.steps)
  run_dir = train.run_dir_for(cfg, runs_dir)
  curve: list[dict[str, Any]] = []
  stop = 0
  while stop < budget and first_below(curve, threshold) is None:
    stop = min(stop + segment, budget)
    train.train(cfg, runs_dir, stop_at_step=stop)
    scored = {p["step"] for p in curve}
    for step in train.kept_steps(run_dir):
      if step <= stop and step not in scored:
        curve.append(point(run_dir, step, num_prompts))
        log(f"{run_dir.name} step {step}: a = {curve[-1]['a']:.3f}, λ* = {curve[-1]['lambda_star']:.3g}, "
            f"{curve[-1]['train_s']:.0f} s of training")
  return {"run": run_dir.name, "seed": tr.seed, "data_seed": tr.data_seed, "steps": tr.steps,
          "budget": budget, "threshold": threshold, "num_prompts": num_prompts, "curve": curve,
          "first_below": first_below(curve, threshold)}

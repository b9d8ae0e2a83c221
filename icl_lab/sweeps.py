"""Multi-model studies: the noise grid (Fig. 2) and the depth/width sweep (Fig. 3)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icl_lab import evaluate, manifest, plotting, train
from icl_lab.config import Config
from icl_lab.io import write_json

# The paper's (σ, τ) grid for d = 8, so σ²/τ² ∈ {0, 1/16, 1/9, 1/4, 4/9}.
NOISE_GRID = ((0.0, 1.0), (0.25, 1.0), (0.5, 1.5), (0.5, 1.0), (0.5, 0.75))
FIG2_ROWS = ("ols", "ridge(0.0625)", "ridge(0.1111)", "ridge(0.25)", "ridge(0.4444)")
FIG3_LEARNERS = ("ols", "ridge(0.1)", "ridge(0.5)", "gd(0.01)", "gd(0.02)", "gd_k(0.02,3)",
                 "sgd(0.03)", "knn3_weighted", "averaging")
FIG3_DEPTHS = (1, 2, 4, 8)
FIG3_WIDTHS = (16, 32, 64, 128)


def _with(cfg: Config, section: str, **changes) -> Config:
  return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def _train_all(cfgs: Sequence[Config], runs_dir) -> tuple[list[Path], float]:
  """Trains the configs, those of one shape together as an ensemble (each member resumes or is
  reused); returns their folders, in order, and the training wall time."""
  groups: dict[str, list[int]] = {}
  for i, cfg in enumerate(cfgs):
    groups.setdefault(train.ensemble_key(cfg), []).append(i)
  run_dirs: list[Path] = [Path()] * len(cfgs)
  for g, idx in enumerate(groups.values()):
    members = [cfgs[i] for i in idx]
    print(f"[{g + 1}/{len(groups)}] {train.config_summary(members[0])}, "
          f"{len(members)} model{'s' * (len(members) > 1)} in one ensemble", flush=True)
    for i, run_dir in zip(idx, train.train_many(members, runs_dir)):
      run_dirs[i] = run_dir
  return run_dirs, sum(train.train_seconds(d) for d in run_dirs)


def fig2_configs(base: Config, grid=NOISE_GRID) -> list[Config]:
  """One config per (σ, τ) of the noise grid."""
  return [_with(base, "task", noise_std=s, weight_std=t) for s, t in grid]


def run_fig2(base: Config, stem: str, runs_dir="runs", out_dir="figures", num_prompts: int = 1024,
             grid=NOISE_GRID, rows: Sequence[str] = FIG2_ROWS) -> dict:
  """One model per (σ, τ); MSPD/d between each model and OLS / ridge(λ) on its own noise level."""
  cfgs = fig2_configs(base, grid)
  run_dirs, train_wall = _train_all(cfgs, runs_dir)
  t_eval = time.perf_counter()
  d = base.task.dim
  under = np.zeros((len(rows), len(grid)))
  full = np.zeros_like(under)
  for j, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
    _, model = train.load_model(run_dir)
    batch = evaluate.eval_batch(cfg.task, num_prompts)
    res = evaluate.compare(evaluate.model_predict_fn(model, cfg.task.token_format), batch, rows,
                           weights_prompts=8)
    for i, name in enumerate(rows):
      under[i, j] = res["mspd_over_d"][name]["underdetermined"]
      full[i, j] = res["mspd_over_d"][name]["full"]
  eval_s = time.perf_counter() - t_eval
  ratios = [s**2 / t**2 for s, t in grid]
  bayes_row = [int(np.argmin([abs(_lam(r) - q) for r in rows])) for q in ratios]
  result = {
      "preset": base.preset, "d": d, "sigma_tau": [list(g) for g in grid], "noise_ratios": ratios,
      "rows": list(rows), "bayes_row": bayes_row,
      "mspd_over_d_underdetermined": under.tolist(), "mspd_over_d_full": full.tolist(),
      "closest_row_underdetermined": [rows[i] for i in under.argmin(0)],
      "closest_row_full": [rows[i] for i in full.argmin(0)],
      "bayes_is_closest_full": int(sum(full[:, j].argmin() == bayes_row[j] for j in range(len(grid)))),
      "bayes_is_closest_underdetermined": int(sum(under[:, j].argmin() == bayes_row[j] for j in range(len(grid)))),
      "runs": [r.name for r in run_dirs], "train_wall_s": train_wall, "eval_wall_s": eval_s,
      "base_config": base.to_dict(),
  }
  _write(result, stem, out_dir, plotting.plot_fig2, base, train_wall + eval_s)
  return result


def _lam(row: str) -> float:
  return 0.0 if row == "ols" else float(row[row.index("(") + 1:-1])


def fig3_configs(base: Config, seeds: Sequence[int] = (0, 1), depths=FIG3_DEPTHS, widths=FIG3_WIDTHS,
                 fixed_width: int = 64, fixed_depth: int = 4) -> dict[str, list[list[Config]]]:
  """Panel ("depth" / "width") -> one list of per-seed configs per swept value."""
  def one(layers: int, hidden: int, s: int) -> Config:
    return _with(_with(base, "model", layers=layers, hidden=hidden), "train", seed=s, data_seed=s)
  return {"depth": [[one(L, fixed_width, s) for s in seeds] for L in depths],
          "width": [[one(fixed_depth, H, s) for s in seeds] for H in widths]}


def run_fig3(base: Config, stem: str, runs_dir="runs", out_dir="figures", seeds: Sequence[int] = (0, 1),
             depths=FIG3_DEPTHS, widths=FIG3_WIDTHS, fixed_width: int = 64, fixed_depth: int = 4,
             num_prompts: int = 1024, learner_names: Sequence[str] = FIG3_LEARNERS) -> dict:
  """MSPD/d to each learner against depth (at fixed width) and width (at fixed depth)."""
  d = base.task.dim
  sweeps = fig3_configs(base, seeds, depths, widths, fixed_width, fixed_depth)
  result: dict = {"preset": base.preset, "d": d, "seeds_per_point": len(seeds), "seeds": list(seeds),
                  "learners": list(learner_names), "base_config": base.to_dict()}
  train_wall, eval_s = 0.0, 0.0
  for panel, values, fixed in (("depth", depths, f"H = {fixed_width}"), ("width", widths, f"L = {fixed_depth}")):
    per_name = {name: np.zeros((len(values), len(seeds))) for name in learner_names}
    runs = []
    for v, cfgs in enumerate(sweeps[panel]):
      run_dirs, wall = _train_all(cfgs, runs_dir)
      train_wall += wall
      t0 = time.perf_counter()
      for s, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        _, model = train.load_model(run_dir)
        batch = evaluate.eval_batch(cfg.task, num_prompts)
        res = evaluate.compare(evaluate.model_predict_fn(model, cfg.task.token_format), batch,
                               learner_names, weights_prompts=8)
        for name in learner_names:
          per_name[name][v, s] = res["mspd_over_d"][name]["full"]
        runs.append(run_dir.name)
      eval_s += time.perf_counter() - t0
    result[panel] = {
        "values": list(values), "fixed": fixed, "runs": runs,
        "mspd_over_d": {name: {"mean": a.mean(1).tolist(), "min": a.min(1).tolist(),
                               "max": a.max(1).tolist(), "per_seed": a.tolist()}
                        for name, a in per_name.items()},
        "closest": [min(learner_names, key=lambda n: per_name[n][v].mean()) for v in range(len(values))],
    }
  result["train_wall_s"], result["eval_wall_s"] = train_wall, eval_s
  _write(result, stem, out_dir, plotting.plot_fig3, base, train_wall + eval_s)
  return result


def _write(result: dict, stem: str, out_dir, plot, base: Config, wall: float) -> None:
  out_dir = Path(out_dir)
  write_json(out_dir / f"{stem}.json", result)
  plot(out_dir / f"{stem}.json")
  manifest.record(out_dir, stem, preset=base.preset, wall_s=wall,
                  seeds={"model_init": result.get("seeds", [base.train.seed]),
                         # Fig. 3 pairs each model seed with its own data seed.
                         "train_data": result.get("seeds", base.train.data_seed),
                         "eval_data": evaluate.EVAL_SEED})

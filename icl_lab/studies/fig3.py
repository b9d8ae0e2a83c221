"""Fig. 3: MSPD/d between the transformer and each learner against depth (at fixed width) and
width (at fixed depth), several seeds per point: which algorithm does each size implement?"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import ensembles, evaluate, results
from icl_lab.io import read_json
from icl_lab.plotting import COLORS, save_figure
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, build_config, check_learners, fmt, settings_for

NAME = "fig3"
HEADLINE_PRESET = "quick"
LEARNERS = ("ols", "ridge(0.1)", "ridge(0.5)", "gd(0.01)", "gd(0.02)", "gd_k(0.02,3)",
            "sgd(0.03)", "knn3_weighted", "averaging")


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()
  seeds: tuple[int, ...] = (0, 1)  # each model seed is paired with the same data seed
  depths: tuple[int, ...] = (1, 2, 4, 8)
  widths: tuple[int, ...] = (16, 32, 64, 128)
  fixed_width: int = 64  # H of the depth panel
  fixed_depth: int = 4  # L of the width panel
  learners: tuple[str, ...] = LEARNERS
  num_prompts: int = 1024
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(("train.steps=40", "train.checkpoint_every=20"), depths=(1,), widths=(16,),
                     fixed_width=32, fixed_depth=1, learners=("ols", "gd(0.02)"), num_prompts=64, cpu_s=30),
    # Fourteen CPU models: each gets a quarter of the Fig. 1 quick budget.
    "quick": Settings(("train.steps=5000", "task.curriculum_steps=2000", "train.checkpoint_every=1000"),
                      cpu_s=4200),
    "paper": Settings(),
}


def sweep_configs(preset: str, overrides=(), settings: Settings | None = None) -> dict[str, list[list]]:
  """Panel ("depth" / "width") -> one list of per-seed configs per swept value."""
  s = settings or SETTINGS[preset]
  base = build_config(preset, s.config_overrides, overrides)

  def one(layers: int, hidden: int, seed: int):
    cfg = ensembles.with_fields(base, "model", layers=layers, hidden=hidden)
    return ensembles.with_fields(cfg, "train", seed=seed, data_seed=seed)
  return {"depth": [[one(L, s.fixed_width, i) for i in s.seeds] for L in s.depths],
          "width": [[one(s.fixed_depth, H, i) for i in s.seeds] for H in s.widths]}


def configs(preset: str, overrides=()) -> list:
  """Every distinct model the study trains (the point shared by both panels once)."""
  every = [c for panel in sweep_configs(preset, overrides).values() for cfgs in panel for c in cfgs]
  return list({c.hash(): c for c in every}.values())


def seed_summary(per_seed_VxS) -> dict[str, list]:
  """Mean, min and max over seeds (axis 1) of one learner's MSPD/d per swept value."""
  a = np.asarray(per_seed_VxS, float)
  return {"mean": a.mean(1).tolist(), "min": a.min(1).tolist(), "max": a.max(1).tolist(), "per_seed": a.tolist()}


def closest(mspd_by_learner: dict[str, dict], index: int) -> str:
  """The learner with the lowest seed-mean MSPD/d at swept value `index`."""
  return min(mspd_by_learner, key=lambda n: mspd_by_learner[n]["mean"][index])


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  sweeps = sweep_configs(req.preset, req.config_overrides, s)
  base = sweeps["depth"][0][0]
  names = list(s.learners)
  check_learners(names)
  payload: dict = {"preset": req.preset, "d": base.task.dim, "seeds_per_point": len(s.seeds),
                   "seeds": list(s.seeds), "learners": names, "base_config": base.to_dict()}
  train_wall, eval_s = 0.0, 0.0
  panels = (("depth", s.depths, f"H = {s.fixed_width}"), ("width", s.widths, f"L = {s.fixed_depth}"))
  for panel, values, fixed in panels:
    per_name = {name: np.zeros((len(values), len(s.seeds))) for name in names}
    runs = []
    for v, cfgs in enumerate(sweeps[panel]):
      run_dirs, wall = ensembles.train_grouped(cfgs, req.runs_dir)
      train_wall += wall
      t0 = time.perf_counter()
      for i, run_dir in enumerate(run_dirs):
        res = evaluate.evaluate_run(run_dir, names, num_prompts=s.num_prompts, weights_prompts=8)
        for name in names:
          per_name[name][v, i] = res["mspd_over_d"][name]["full"]
        runs.append(run_dir.name)
      eval_s += time.perf_counter() - t0
    mspd = {name: seed_summary(a) for name, a in per_name.items()}
    payload[panel] = {"values": list(values), "fixed": fixed, "runs": runs, "mspd_over_d": mspd,
                      "closest": [closest(mspd, v) for v in range(len(values))]}
  payload["train_wall_s"], payload["eval_wall_s"] = train_wall, eval_s
  seeds = Seeds(tuple(s.seeds), tuple(s.seeds), evaluate.EVAL_SEED)
  paths = results.write(dest, "fig3_depth_width", payload, preset=req.preset, seeds=seeds,
                        wall_s=train_wall + eval_s, criteria=criteria, plot=plot)
  print(results.format_criteria(read_json(paths[0])["criteria"]))
  return paths


def criteria(r: dict) -> list[Criterion]:
  depth = r["depth"]
  deepest = int(np.argmax(depth["values"]))
  best = closest(depth["mspd_over_d"], deepest)
  return [Criterion(f"closest learner of the deepest model (L = {depth['values'][deepest]})", best, "ols",
                    best == "ols")]


def readme(r: dict) -> str:
  """Per model: the closest learner, its MSPD/d and the MSPD/d to OLS, mean [min, max] over seeds."""
  lines = ["| model | closest learner | its MSPD/d | MSPD/d to OLS |", "|---|---|---|---|"]
  seen = set()
  for panel in ("depth", "width"):
    sweep = r[panel]
    fixed = int(sweep["fixed"].split("=")[1])
    for v, value in enumerate(sweep["values"]):
      layers, hidden = (value, fixed) if panel == "depth" else (fixed, value)
      if (layers, hidden) in seen:
        continue
      seen.add((layers, hidden))
      best = closest(sweep["mspd_over_d"], v)

      def cell(name, v=v, sweep=sweep):
        m = sweep["mspd_over_d"][name]
        return f"{fmt(m['mean'][v])} [{fmt(m['min'][v])}, {fmt(m['max'][v])}]"
      ols = cell("ols") if "ols" in sweep["mspd_over_d"] else "n/a"
      lines.append(f"| L{layers}/H{hidden} | {best} | {cell(best)} | {ols} |")
  return "\n".join(lines)


def plot(json_path: str | Path) -> list[Path]:
  """MSPD/d to each learner against depth and against width (mean and spread over seeds)."""
  json_path = Path(json_path)
  r = read_json(json_path)
  panels = [p for p in ("depth", "width") if p in r]
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.4), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    sweep = r[panel]
    xs = sweep["values"]
    for name, stats in sweep["mspd_over_d"].items():
      mean, lo, hi = (np.asarray(stats[k], float) for k in ("mean", "min", "max"))
      ax.plot(xs, mean, marker="o", label=name, color=COLORS.get(name))
      ax.fill_between(xs, lo, hi, alpha=0.15, color=COLORS.get(name))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("layers L" if panel == "depth" else "hidden size H")
    ax.set_ylabel("MSPD/d (all n)")
    ax.set_title(f"{panel}: {sweep.get('fixed', '')}")
    ax.grid(alpha=0.3, which="both", lw=0.4)
  # Outside the axes: in the width panel every corner holds a curve.
  axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.suptitle(f"Fig. 3: depth and width (d = {r['d']}, {r.get('seeds_per_point', '?')} seeds per point)")
  return save_figure(fig, json_path)




STUDY = Study(
    name=NAME,
    description="Fig. 3: MSPD/d to each learner against depth and width, several seeds per point",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output("fig3_depth_width", "fig3", criteria, plot, readme),),
)

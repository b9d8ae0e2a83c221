"""Fig. 3: MSPD/d between the transformer and each learner against depth (at fixed width) and
width (at fixed depth), several seeds per point: which algorithm does each size implement?"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis import evaluate
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies import units
from icl_lab.studies.base import Output, RunRequest, Study, build_config, fmt, settings_for
from icl_lab.studies.plotting import COLORS, save_figure
from icl_lab.training import ensembles

NAME = "fig3"
HEADLINE_PRESET = "cpu"  # the quick results are kept in experiments/fig3_quick/
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
  ensemble: bool = True  # a unit trains a point's seeds (same shape) as one ensemble; False: one model each
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(("train.steps=40", "train.checkpoint_every=20"), depths=(1,), widths=(16,),
                     fixed_width=32, fixed_depth=1, learners=("ols", "gd(0.02)"), num_prompts=64, cpu_s=30),
    # Fourteen CPU models: each gets a quarter of the Fig. 1 quick budget.
    "quick": Settings(("train.steps=5000", "task.curriculum_steps=2000", "train.checkpoint_every=1000"),
                      cpu_s=4200),
    # Fig. 1's cpu recipe (36k steps) at every point, one model per unit; L8/H64 seed 0 is Fig. 1's
    # cpu model. About 5 hours on 2 cores in all (L1 to L8 cost about 1/5 to 1 of the L8 model's 51 minutes).
    "cpu": Settings(ensemble=False, cpu_s=5 * 3600),
    # The cpu recipe on one accelerator: each point's seeds train as one vmapped ensemble, and the
    # seven units fit on one GPU side by side (docs/usage.md has the command).
    "gpu": Settings(ensemble=True),
    "paper": Settings(),
}
LAMBDA_STAR_MAX = units.LAMBDA_STAR_MAX  # the OLS end of the ridge path
PHASES = ("GD", "ridge", "OLS")  # the paper's order by depth


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
  # A point with a seed not yet recorded (nan) is null in the JSON, and drawn as a gap.
  js = lambda x: [[None if np.isnan(v) else float(v) for v in row] for row in x] if x.ndim == 2 else \
      [None if np.isnan(v) else float(v) for v in x]
  return {"mean": js(a.mean(1)), "min": js(a.min(1)), "max": js(a.max(1)), "per_seed": js(a)}


def closest(mspd_by_learner: dict[str, dict], index: int) -> str:
  """The learner with the lowest seed-mean MSPD/d at swept value `index`."""
  return min(mspd_by_learner, key=lambda n: mspd_by_learner[n]["mean"][index])


def plan(req: RunRequest) -> tuple[list[units.Unit], units.EvalSpec]:
  """The study's units (the point shared by both panels once) and what each record must hold."""
  s = settings_for(NAME, SETTINGS, req)
  every = [c for panel in sweep_configs(req.preset, req.config_overrides, s).values() for cfgs in panel for c in cfgs]
  return units.make_units(every, ensemble=s.ensemble), units.EvalSpec(tuple(s.learners), s.num_prompts, 8)


def phase_of(learner: str | None) -> str | None:
  """The family of a learner in the paper's depth story: GD (any GD or SGD), ridge or OLS."""
  if learner is None:
    return None
  if learner == "ols":
    return "OLS"
  if learner.startswith("ridge("):
    return "ridge"
  if learner.startswith(("gd", "sgd")):
    return "GD"
  return "other"


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  sweeps = sweep_configs(req.preset, req.config_overrides, s)
  base = sweeps["depth"][0][0]
  names = list(s.learners)
  unit_list, spec = plan(req)
  found = units.run_units(unit_list, spec, req, units.records_for(req, dest))
  t0 = time.perf_counter()
  payload: dict = {"preset": req.preset, "d": base.task.dim, "seeds_per_point": len(s.seeds),
                   "seeds": list(s.seeds), "learners": names, "base_config": base.to_dict()}
  panels = (("depth", s.depths, f"H = {s.fixed_width}"), ("width", s.widths, f"L = {s.fixed_depth}"))
  every = []
  for panel, values, fixed in panels:
    per_name = {name: np.full((len(values), len(s.seeds)), np.nan) for name in names}
    lam = np.full((len(values), len(s.seeds)), np.nan)
    runs = []
    for v, cfgs in enumerate(sweeps[panel]):
      for i, cfg in enumerate(cfgs):
        every.append(cfg)
        runs.append(cfg.run_name())
        rec = found.get(cfg.run_name())
        if rec is None:
          continue
        res = units.view(rec, names, projection_ref=None)
        for name in names:
          per_name[name][v, i] = res["mspd_over_d"][name]["full"]
        lam[v, i] = res["lambda_star"]["lam"]
    mspd = {name: seed_summary(a) for name, a in per_name.items()}
    # A point is shown as soon as all its seeds are recorded, so a study in progress shows what it has.
    done = [not any(np.isnan(a[v]).any() for a in per_name.values()) for v in range(len(values))]
    payload[panel] = {"values": list(values), "fixed": fixed, "runs": runs, "mspd_over_d": mspd,
                      "closest": [closest(mspd, v) if done[v] else None for v in range(len(values))]}
    if found:
      payload[panel]["lambda_star"] = seed_summary(lam)
  distinct = list({c.hash(): c for c in every}.values())
  gone = units.missing(distinct, found)
  payload["num_units"], payload["num_models"], payload["missing_units"] = len(unit_list), len(distinct), gone
  if not gone:
    payload["phase_by_depth"] = [phase_of(c) for c in payload["depth"]["closest"]]
  train_wall = sum(rec["train_s"] for rec in found.values())
  payload["train_wall_s"], payload["eval_wall_s"] = train_wall, time.perf_counter() - t0
  seeds = Seeds(tuple(s.seeds), tuple(s.seeds), evaluate.EVAL_SEED)
  paths = results.write(dest, "fig3_depth_width", payload, preset=req.preset, seeds=seeds,
                        wall_s=train_wall + payload["eval_wall_s"], criteria=criteria, plot=plot)
  print(results.format_criteria(read_json(paths[0])["criteria"]))
  return paths


def criteria(r: dict) -> list[Criterion]:
  depth = r["depth"]
  deepest = int(np.argmax(depth["values"]))
  best = closest(depth["mspd_over_d"], deepest)
  out = [Criterion(f"closest learner of the deepest model (L = {depth['values'][deepest]})", best, "ols",
                   best == "ols")]
  if "lambda_star" in depth:  # absent from results written before λ* was measured
    lam = depth["lambda_star"]["mean"][deepest]
    out.append(Criterion("effective ridge λ* of the deepest model, mean over seeds (OLS is λ = 0)", lam,
                         f"≤ {LAMBDA_STAR_MAX:g}", lam <= LAMBDA_STAR_MAX))
  if "phase_by_depth" in r:
    phases = r["phase_by_depth"]
    rank = [PHASES.index(p) if p in PHASES else -1 for p in phases]
    ordered = min(rank) >= 0 and rank == sorted(rank) and rank[0] == 0 and rank[-1] == len(PHASES) - 1
    out.append(Criterion("phase of the closest learner by depth", " → ".join(phases), " → ".join(PHASES),
                         ordered))
  return out


def readme(r: dict) -> str:
  """Per model: the closest learner, its MSPD/d, the MSPD/d to OLS and the effective ridge λ*, mean
  [min, max] over seeds."""
  lines = ["| model | closest learner | its MSPD/d | MSPD/d to OLS | λ* |", "|---|---|---|---|---|"]
  seen = set()
  for panel in ("depth", "width"):
    sweep = r[panel]
    fixed = int(sweep["fixed"].split("=")[1])
    for v, value in enumerate(sweep["values"]):
      layers, hidden = (value, fixed) if panel == "depth" else (fixed, value)
      if (layers, hidden) in seen:
        continue
      seen.add((layers, hidden))
      if sweep.get("closest", [True] * len(sweep["values"]))[v] is None:
        lines.append(f"| L{layers}/H{hidden} | not yet run | | | |")
        continue
      best = closest(sweep["mspd_over_d"], v)

      def cell(m, v=v):
        return f"{fmt(m['mean'][v])} [{fmt(m['min'][v])}, {fmt(m['max'][v])}]"
      mspd = sweep["mspd_over_d"]
      ols = cell(mspd["ols"]) if "ols" in mspd else "n/a"
      lam = cell(sweep["lambda_star"]) if "lambda_star" in sweep else "n/a"  # absent from older results
      lines.append(f"| L{layers}/H{hidden} | {best} | {cell(mspd[best])} | {ols} | {lam} |")
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
    drawn = 0
    for name, stats in sweep["mspd_over_d"].items():
      mean, lo, hi = (np.asarray(stats[k], float) for k in ("mean", "min", "max"))  # null (not yet run) -> gap
      if np.isnan(mean).all():
        continue
      drawn += 1
      ax.plot(xs, mean, marker="o", label=name, color=COLORS.get(name))
      ax.fill_between(xs, lo, hi, alpha=0.15, color=COLORS.get(name))
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)  # the whole sweep, recorded or not
    ax.set_xticks(xs, [str(x) for x in xs])
    if drawn:
      ax.set_yscale("log")
    else:
      ax.text(0.5, 0.5, "no unit recorded yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("layers L" if panel == "depth" else "hidden size H")
    ax.set_ylabel("MSPD/d (all n)")
    ax.set_title(f"{panel}: {sweep.get('fixed', '')}")
    ax.grid(alpha=0.3, which="both", lw=0.4)
  # Outside the axes: in the width panel every corner holds a curve. While a study is in progress
  # the labels come from whichever panel has curves.
  handles, labels = max((ax.get_legend_handles_labels() for ax in axes[0]), key=lambda hl: len(hl[1]))
  if handles:
    axes[0][-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.suptitle(f"Fig. 3: depth and width (d = {r['d']}, {r.get('seeds_per_point', '?')} seeds per point)")
  return save_figure(fig, json_path)




STUDY = Study(
    name=NAME,
    description="Fig. 3: MSPD/d to each learner against depth and width, several seeds per point",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    plan=plan,
    outputs=(Output("fig3_depth_width", "fig3", criteria, plot, readme),),
)

"""Fig. 1 and Fig. 6: one model trained on noiseless d = 8 regression, compared with every
reference learner prefix by prefix (Fig. 1), and the linearity of its predictions (Fig. 6).
Both come from the same trained model and the same evaluation, so one run writes both files."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt

from icl_lab import results
from icl_lab.analysis import evaluate, learners
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies import units
from icl_lab.studies.base import Output, RunRequest, Study, build_config, fmt, settings_for
from icl_lab.studies.plotting import curves, save_figure
from icl_lab.training import train

NAME = "fig1"
# The headline files come from the hour-long `cpu` preset; `quick` is the smoke run of
# `make replicate` (its fresh-clone record is figures/smoke/) and writes `fig1_noiseless_quick.*`.
HEADLINE_PRESET = "cpu"
PROJECTION_VS = "ridge(0.1)"
LAMBDA_STAR_MAX = units.LAMBDA_STAR_MAX  # the OLS end of the ridge path


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()  # applied to the preset of the same name
  num_prompts: int = 1024  # held-out prompts for SPD and errors
  weights_prompts: int = 64  # of those, the ones whose implicit weights (ILWD, R²) are fitted
  cpu_s: float | None = None  # expected wall clock on a 2-core CPU; None: needs a GPU


SETTINGS = {
    "tiny": Settings(("train.steps=200", "train.checkpoint_every=100"), num_prompts=256,
                     weights_prompts=16, cpu_s=30),
    "quick": Settings(cpu_s=640),  # figures/smoke/MANIFEST.json: 640 s in a fresh clone
    "cpu": Settings(cpu_s=3600),
    "paper": Settings(),
}


def configs(preset: str, overrides=()) -> list:
  """Every model the study trains (one)."""
  return [build_config(preset, SETTINGS[preset].config_overrides, overrides)]


def plan(req: RunRequest) -> tuple[list[units.Unit], units.EvalSpec]:
  """One unit (the model), and what the study needs from its record."""
  s = settings_for(NAME, SETTINGS, req)
  cfg = build_config(req.preset, s.config_overrides, req.config_overrides)
  return units.make_units([cfg]), units.EvalSpec(learners.FIG1_LEARNERS, s.num_prompts, s.weights_prompts)


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  t0 = time.perf_counter()
  (unit,), spec = plan(req)
  cfg = unit.cfgs[0]
  print(f"icl-lab fig1: {train.config_summary(cfg)}", flush=True)
  record = units.run_units([unit], spec, req, units.records_for(req, dest)).get(cfg.run_name())
  if record is None:
    raise ConfigError(f"fig1 has no record of {cfg.run_name()} and was asked not to train it; run it without "
                      f"--no-train")
  result = units.view(record, learners.FIG1_LEARNERS, projection_ref="ols")
  eval_s = time.perf_counter() - t0
  meta = {"preset": cfg.preset, "run": cfg.run_name(), "config": cfg.to_dict(), "train_wall_s": record["train_s"],
          "train_steps_per_s": cfg.train.steps / record["train_s"], "eval_wall_s": eval_s}
  fig6 = {**meta, "d": result["d"], "prefix_lengths": result["prefix_lengths"],
          "r2_mean": result["implicit_r2"]["mean"], "r2_q10": result["implicit_r2"]["q10"],
          "r2_q90": result["implicit_r2"]["q90"], "weights_prompts": result["weights_prompts"]}
  extra = {"heldout": record["heldout"], "lambda_star_curve": record["lambda_star_curve"]}
  seeds = Seeds((cfg.train.seed,), (cfg.train.data_seed,), evaluate.EVAL_SEED,
                (("implicit_weight_probes", 0), ("heldout_prompts", units.HELDOUT_SEED)))
  # Wall clock of the whole study: training (possibly in an earlier, resumed or reused
  # invocation) plus this evaluation.
  common = dict(preset=cfg.preset, seeds=seeds, wall_s=record["train_s"] + eval_s, run=cfg.run_name())
  paths = results.write(dest, "fig1_noiseless", {**meta, **result, **extra}, criteria=criteria_fig1, plot=plot_fig1,
                        this_invocation_s=round(time.perf_counter() - t0, 1), **common)
  paths += results.write(dest, "fig6_linearity", fig6, criteria=criteria_fig6, plot=plot_fig6,
                         this_invocation_s=round(time.perf_counter() - t0, 1), **common)
  last = len(result["prefix_lengths"]) - 1
  print(f"\nSPD/d between the transformer and each learner, averaged over prefixes n = 0..{last} "
        f"(d = {result['d']}):")
  print(evaluate.mspd_table(result))
  lam = result["lambda_star"]
  print(f"effective ridge λ* = {lam['lam']:.3g} [{lam['ci95'][0]:.3g}, {lam['ci95'][1]:.3g}] (OLS is λ = 0); "
        f"on held-out prompts {record['heldout']['lambda_star']['lam']:.3g}")
  print(f"\nresults and figures written to {dest.folder.resolve()}")
  return paths


# ---------------------------------------------------------------------------
# Criteria


def criteria_fig1(r: dict) -> list[Criterion]:
  full = {name: v["full"] for name, v in r["mspd_over_d"].items()}
  closest = min(full, key=full.get)
  out = [Criterion("closest learner over all n (full-range MSPD/d)", closest, "ols", closest == "ols")]
  p = (r.get("projection_a") or {}).get(PROJECTION_VS)
  name = f"projection a against {PROJECTION_VS} (OLS is closer iff a < 0.5)"
  target = "a < 0.5 with its 95% interval below 0.5"
  if p is None:
    out.append(Criterion(name, None, target, False))
  else:
    out.append(Criterion(name, p["a"], target, p["a"] < 0.5 and p["ci95"][1] < 0.5))
  lam = r.get("lambda_star")
  if lam is not None:  # absent from results written before λ* was measured
    out.append(Criterion("effective ridge λ* (argmin over λ of MSPD/d to ridge(λ); OLS is λ = 0)", lam["lam"],
                         f"≤ {LAMBDA_STAR_MAX:g}", lam["lam"] <= LAMBDA_STAR_MAX))
  return out


def criteria_fig6(r: dict) -> list[Criterion]:
  tail = r["r2_mean"][2:]
  low = min(tail) if tail else None
  return [Criterion("lowest mean R² of the linear fit over n ≥ 2", low, "≥ 0.99 at every n ≥ 2",
                    low is not None and low >= 0.99)]


# ---------------------------------------------------------------------------
# Figures


def plot_fig1(json_path: str | Path) -> list[Path]:
  """SPD/d, ILWD and error vs truth against n: the transformer against each learner."""
  json_path = Path(json_path)
  r = read_json(json_path)
  n, d = r["prefix_lengths"], r["d"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
  curves(axes[0], n, r["spd_over_d"], "SPD(transformer, learner) / d", d)
  curves(axes[1], n, r["ilwd"], "ILWD(transformer, learner)", d)
  curves(axes[2], n, r["error_vs_truth"], "squared error vs. truth", d)
  axes[0].set_title("prediction agreement")
  axes[1].set_title("implicit linear weight difference")
  axes[2].set_ylim(bottom=1e-4)  # OLS is exact (≈1e-12) past n = d; keep the others readable
  axes[2].set_title("error against the targets")
  axes[2].legend(fontsize=7, ncol=2)
  curve = r.get("lambda_star_curve")
  if curve:  # drawn beside the others in files that carry it (older files keep their figure)
    ax = fig.add_axes((0.93, 0.11, 0.2, 0.77))
    steps = [c["step"] for c in curve]
    ax.plot(steps, [max(c["lambda_star"], 1e-4) for c in curve], marker="o", color="k")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("effective ridge λ* (OLS drawn at 1e-4)")
    ax.set_title("λ* over training")
    ax.grid(alpha=0.3, which="both", lw=0.4)
  fig.suptitle(f"Fig. 1 (noiseless, d = {d}, preset {r.get('preset', '?')})")
  return save_figure(fig, json_path)


def plot_fig6(json_path: str | Path) -> list[Path]:
  """R² of the best linear fit to the transformer's predictions against n."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, ax = plt.subplots(figsize=(6, 4))
  n = r["prefix_lengths"]
  ax.plot(n, r["r2_mean"], color="k", marker="o", ms=3, label="mean over prompts")
  ax.fill_between(n, r["r2_q10"], r["r2_q90"], color="k", alpha=0.15, label="10–90% of prompts")
  ax.axvline(r["d"], color="0.6", ls=":", lw=1)
  ax.set_xlabel("number of in-context examples n")
  ax.set_ylabel("R² of the linear fit")
  ax.set_ylim(min(0.0, min(r["r2_q10"])), 1.02)
  ax.legend(fontsize=8)
  ax.set_title(f"Fig. 6: linearity of the transformer (d = {r['d']})")
  return save_figure(fig, json_path)


def key_numbers_fig1(r: dict) -> dict:
  """What a reproduction of Fig. 1 is compared on: MSPD/d to OLS and ridge(0.1) (no interval),
  and the projection a against each ridge with its bootstrap interval."""
  nums = {f"MSPD/d to {name}": (v["full"], None) for name, v in r["mspd_over_d"].items()
          if name in ("ols", "ridge(0.1)")}
  for name, p in (r.get("projection_a") or {}).items():
    nums[f"projection a vs {name}"] = (p["a"], tuple(p["ci95"]))
  if r.get("lambda_star"):
    nums["effective ridge λ*"] = (r["lambda_star"]["lam"], tuple(r["lambda_star"]["ci95"]))
  return nums


# ---------------------------------------------------------------------------
# README tables


def readme_fig1(r: dict) -> str:
  """MSPD/d per learner, closest first and in bold, and the projection a."""
  rows = sorted(r["mspd_over_d"].items(), key=lambda kv: kv[1]["full"])
  lines = ["| learner | MSPD/d, all n | MSPD/d, n < d |", "|---|---|---|"]
  for i, (name, v) in enumerate(rows):
    b = "**" if i == 0 else ""
    lines.append(f"| {name} | {b}{fmt(v['full'])}{b} | {b}{fmt(v['underdetermined'])}{b} |")
  for name, p in (r.get("projection_a") or {}).items():
    lines.append(f"\nProjection a against {name}: {p['a']:.3f} (95% interval "
                 f"{p['ci95'][0]:.3f} to {p['ci95'][1]:.3f}); OLS is the closer learner iff a < 0.5.")
  lam = r.get("lambda_star")
  if lam:  # absent from results written before λ* was measured
    lines.append(f"\nEffective ridge λ* (the ridge λ closest to the model; OLS is λ = 0): {lam['lam']:.3g} "
                 f"(95% interval {lam['ci95'][0]:.3g} to {lam['ci95'][1]:.3g}).")
  held = r.get("heldout")
  if held:
    p = held["projection_a"][PROJECTION_VS]
    lines.append(f"\nOn {r['num_prompts']} held-out prompts of seed {held['seed']}, which no recipe choice looked at: "
                 f"λ* = {held['lambda_star']['lam']:.3g}, projection a against {PROJECTION_VS} = {p['a']:.3f} "
                 f"({p['ci95'][0]:.3f} to {p['ci95'][1]:.3f}).")
  return "\n".join(lines)


def readme_fig6(r: dict) -> str:
  """Mean R² of the linear fit per n."""
  n = r["prefix_lengths"]
  return "\n".join(["| n | " + " | ".join(str(i) for i in n) + " |", "|---|" + "---|" * len(n),
                    "| mean R² | " + " | ".join(f"{v:.3f}" for v in r["r2_mean"]) + " |"])


STUDY = Study(
    name=NAME,
    description="Fig. 1 + Fig. 6: noiseless d = 8; the transformer against every reference learner, "
                "and the linearity of its predictions",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    plan=plan,
    outputs=(Output("fig1_noiseless", "fig1", criteria_fig1, plot_fig1, readme_fig1, key_numbers_fig1),
             Output("fig6_linearity", "fig6", criteria_fig6, plot_fig6, readme_fig6)),
)

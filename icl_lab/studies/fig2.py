"""Fig. 2: one model per (σ, τ) of the paper's noise grid, each compared on its own noise level
with OLS and ridge(λ): does the column minimum sit on the Bayes ridge λ = σ²/τ²?"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis import evaluate
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies import units
from icl_lab.studies.base import Output, RunRequest, Study, build_config, fmt, settings_for
from icl_lab.studies.plotting import save_figure
from icl_lab.training import ensembles

NAME = "fig2"
HEADLINE_PRESET = "cpu"  # the quick results are kept in experiments/fig2_quick/
# The paper's (σ, τ) grid for d = 8, so σ²/τ² ∈ {0, 1/16, 1/9, 1/4, 4/9}.
NOISE_GRID = ((0.0, 1.0), (0.25, 1.0), (0.5, 1.5), (0.5, 1.0), (0.5, 0.75))
ROWS = ("ols", "ridge(0.0625)", "ridge(0.1111)", "ridge(0.25)", "ridge(0.4444)")


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()
  sigmas: tuple[float, ...] = tuple(s for s, _ in NOISE_GRID)
  taus: tuple[float, ...] = tuple(t for _, t in NOISE_GRID)
  rows: tuple[str, ...] = ROWS
  num_prompts: int = 1024
  ensemble: bool = True  # one unit trains every noise level as one ensemble; False: a unit per level
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(("train.steps=40", "train.checkpoint_every=20"), sigmas=(0.0, 0.5), taus=(1.0, 1.0),
                     rows=("ols", "ridge(0.25)"), num_prompts=64, cpu_s=30),
    # Five CPU models, so each is 4 layers deep (half the Fig. 1 model's cost per step), 10k steps.
    "quick": Settings(("model.layers=4", "train.steps=10000", "task.curriculum_steps=4000",
                       "train.checkpoint_every=1000"), cpu_s=3700),
    # Fig. 1's cpu recipe (L8/H64, 36k steps) at every noise level, one unit per level (about 51
    # minutes each on 2 cores); the noiseless unit is Fig. 1's cpu model.
    "cpu": Settings(ensemble=False, cpu_s=5 * 3050),
    # The cpu recipe on one accelerator: the five noise levels train as one vmapped ensemble, which
    # costs about one model's step latency (`benchmarks/paper_cost.py --preset gpu`).
    "gpu": Settings(ensemble=True),
    "paper": Settings(),
}
# An effective ridge within this factor of the Bayes λ counts as matching it.
LAMBDA_FACTOR = units.LAMBDA_FACTOR


def _grid(s: Settings) -> list[tuple[float, float]]:
  if len(s.sigmas) != len(s.taus):
    raise ConfigError(f"study.sigmas has {len(s.sigmas)} values and study.taus {len(s.taus)}; give one τ per σ")
  return list(zip(s.sigmas, s.taus))


def configs(preset: str, overrides=(), settings: Settings | None = None) -> list:
  """One config per (σ, τ) of the grid."""
  s = settings or SETTINGS[preset]
  base = build_config(preset, s.config_overrides, overrides)
  return [ensembles.with_fields(base, "task", noise_std=sg, weight_std=t) for sg, t in _grid(s)]


def lam_of(row: str) -> float:
  return 0.0 if row == "ols" else float(row[row.index("(") + 1:-1])


def plan(req: RunRequest) -> tuple[list[units.Unit], units.EvalSpec]:
  """The study's units and what it needs from each record."""
  s = settings_for(NAME, SETTINGS, req)
  return (units.make_units(configs(req.preset, req.config_overrides, s), ensemble=s.ensemble),
          units.EvalSpec(tuple(s.rows), s.num_prompts, weights_prompts=8))


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  cfgs = configs(req.preset, req.config_overrides, s)
  base, grid, rows = cfgs[0], _grid(s), list(s.rows)
  unit_list, spec = plan(req)
  found = units.run_units(unit_list, spec, req, units.records_for(req, dest))
  t_eval = time.perf_counter()
  under = np.full((len(rows), len(grid)), np.nan)
  full = np.full_like(under, np.nan)
  ratios = [sg**2 / t**2 for sg, t in grid]
  bayes_row = [int(np.argmin([abs(lam_of(r) - q) for r in rows])) for q in ratios]
  projection, lambda_star = [], []
  for j, cfg in enumerate(cfgs):
    rec = found.get(cfg.run_name())
    if rec is None:
      projection.append(None)
      lambda_star.append(None)
      continue
    res = units.view(rec, rows, projection_ref=rows[bayes_row[j]])
    for i, name in enumerate(rows):
      under[i, j] = res["mspd_over_d"][name]["underdetermined"]
      full[i, j] = res["mspd_over_d"][name]["full"]
    # The decisive comparisons are with the neighbouring rows: a < 0.5 means the model is
    # closer to its Bayes ridge than to that neighbour (see metrics.projection_a).
    neighbours = [rows[i] for i in (bayes_row[j] - 1, bayes_row[j] + 1) if 0 <= i < len(rows)]
    projection.append({"bayes": rows[bayes_row[j]],
                       "vs": {nb: res["projection_a"][nb] for nb in neighbours if nb in res["projection_a"]}})
    lam = res["lambda_star"]
    lambda_star.append({"bayes_lambda": ratios[j], "lambda_star": lam["lam"], "ci95": lam["ci95"],
                        "heldout": rec["heldout"]["lambda_star"]["lam"]})
  gone = units.missing(cfgs, found)
  cells = lambda m: [[None if np.isnan(v) else float(v) for v in row] for row in m]
  closest = lambda m: [None if np.isnan(m[:, j]).any() else rows[int(m[:, j].argmin())] for j in range(m.shape[1])]
  train_wall = sum(rec["train_s"] for rec in found.values())
  payload = {
      "preset": req.preset, "d": base.task.dim, "sigma_tau": [list(g) for g in grid], "noise_ratios": ratios,
      "rows": rows, "bayes_row": bayes_row,
      "mspd_over_d_underdetermined": cells(under), "mspd_over_d_full": cells(full),
      "closest_row_underdetermined": closest(under), "closest_row_full": closest(full),
      "projection_a": projection, "lambda_star": lambda_star,
      "runs": [c.run_name() for c in cfgs], "num_units": len(unit_list), "num_models": len(cfgs),
      "missing_units": gone,
      "train_wall_s": train_wall, "eval_wall_s": time.perf_counter() - t_eval,
      "base_config": base.to_dict(),
  }
  if not gone:
    payload["bayes_is_closest_full"] = bayes_hits(full, bayes_row)
    payload["bayes_is_closest_underdetermined"] = bayes_hits(under, bayes_row)
  seeds = Seeds((base.train.seed,), (base.train.data_seed,), evaluate.EVAL_SEED)
  paths = results.write(dest, "fig2_noise", payload, preset=req.preset, seeds=seeds,
                        wall_s=train_wall + payload["eval_wall_s"], criteria=criteria, plot=plot)
  print(results.format_criteria(read_json(paths[0])["criteria"]))
  return paths


def bayes_hits(m_RxC, bayes_row) -> int:
  """How many columns have their minimum on the Bayes row."""
  m_RxC = np.asarray(m_RxC, float)
  return int(sum(m_RxC[:, j].argmin() == b for j, b in enumerate(bayes_row)))


def criteria(r: dict) -> list[Criterion]:
  cols = len(r["noise_ratios"])
  need = cols - 1 if cols > 1 else 1
  hits = bayes_hits(r["mspd_over_d_full"], r["bayes_row"])
  out = [Criterion("columns whose minimum (full-range MSPD/d) is the Bayes ridge λ = σ²/τ²", hits,
                   f"≥ {need} of {cols}", hits >= need)]
  lam = r.get("lambda_star")
  if lam:  # absent from results written before λ* was measured
    noisy = [x for x in lam if x["bayes_lambda"] > 0]
    within = sum(1 / LAMBDA_FACTOR <= x["lambda_star"] / x["bayes_lambda"] <= LAMBDA_FACTOR for x in noisy)
    need_lam = min(3, len(noisy))
    out.append(Criterion(f"noisy columns whose effective ridge λ* is within {LAMBDA_FACTOR:g}× of the Bayes λ",
                         within, f"≥ {need_lam} of {len(noisy)}", within >= need_lam))
  return out


def readme(r: dict) -> str:
  """MSPD/d over all n (and n < d): rows = learners, columns = σ²/τ²; column minimum in bold; the
  projection a against the neighbouring rows and the effective ridge λ* where recorded."""
  full = np.asarray(r["mspd_over_d_full"], float)  # None (a unit not yet recorded) -> nan
  under = np.asarray(r["mspd_over_d_underdetermined"], float)
  lines = ["| learner | " + " | ".join(f"σ²/τ² = {q:.3g}" for q in r["noise_ratios"]) + " |",
           "|---|" + "---|" * len(r["noise_ratios"])]
  for i, row in enumerate(r["rows"]):
    cells = []
    for j in range(full.shape[1]):
      if np.isnan(full[i, j]):
        cells.append("not yet run")
        continue
      b = "**" if full[i, j] == np.nanmin(full[:, j]) else ""
      cells.append(f"{b}{fmt(full[i, j], 2)}{b} ({fmt(under[i, j], 2)})")
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  proj = r.get("projection_a")
  if proj:  # absent from results written before the projection was recorded
    cells = ["<br>".join(f"{nb}: {v['a']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]" for nb, v in p["vs"].items())
             if p else "" for p in proj]
    lines.append("| a vs neighbours (Bayes closer iff a < 0.5) | " + " | ".join(cells) + " |")
  lam = r.get("lambda_star")
  if lam:
    cells = [f"{x['lambda_star']:.3g} [{x['ci95'][0]:.3g}, {x['ci95'][1]:.3g}] (Bayes {x['bayes_lambda']:.3g}; "
             f"held-out prompts {x['heldout']:.3g})" if x else "" for x in lam]
    lines.append("| effective ridge λ* [95% interval] | " + " | ".join(cells) + " |")
  if r.get("missing_units"):
    total = r.get("num_models", r["num_units"])
    lines.append(f"\nIncomplete: {len(r['missing_units'])} of {total} models not yet recorded "
                 f"({', '.join(r['missing_units'])}).")
  return "\n".join(lines)


def plot(json_path: str | Path) -> list[Path]:
  """Heat maps of MSPD/d: rows = learners, columns = σ²/τ² of the model's training data."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
  for ax, key, title in ((axes[0], "mspd_over_d_underdetermined", "MSPD/d, n < d"),
                         (axes[1], "mspd_over_d_full", "MSPD/d, all n")):
    m_RxC = np.asarray(r[key], float)  # None (a unit not yet recorded) -> nan, drawn blank
    im = ax.imshow(np.log10(m_RxC), cmap="viridis_r", aspect="auto")
    for i in range(m_RxC.shape[0]):
      for j in range(m_RxC.shape[1]):
        if np.isnan(m_RxC[i, j]):
          continue
        best = m_RxC[i, j] == np.nanmin(m_RxC[:, j])
        ax.text(j, i, f"{m_RxC[i, j]:.1e}", ha="center", va="center", fontsize=7,
                color="white" if best else "black", fontweight="bold" if best else "normal")
    ax.set_xticks(range(len(r["noise_ratios"])), [f"{v:.3g}" for v in r["noise_ratios"]])
    ax.set_yticks(range(len(r["rows"])), r["rows"])
    ax.set_xlabel("σ²/τ² of the training and evaluation data")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="log10 MSPD/d")
  fig.suptitle("Fig. 2: which ridge the transformer matches under noise (column minimum in bold)")
  return save_figure(fig, json_path)




STUDY = Study(
    name=NAME,
    description="Fig. 2: one model per noise level (σ, τ); which ridge λ it matches",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    plan=plan,
    outputs=(Output("fig2_noise", "fig2", criteria, plot, readme),),
)

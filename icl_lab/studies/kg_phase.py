"""Knowledge-graph phase diagram (Baek, Li and Tegmark 2024, arXiv 2410.08255; phases of Liu et al.
2022, arXiv 2205.10343): MLP link predictors on Hinton's family trees over width × weight decay.

At a fixed data fraction φ (a seeded, per-relation stratified share of the 104 queries trains; the
rest tests), one vmapped ensemble per width trains every (weight decay, seed). Each cell's train and
test accuracy (top-1 ∈ the query's answers) pools its seeds' queries, which equals the seed mean
since every seed's split has the same size, as an exact ratio of counts; it is labelled from its
pooled curves, with `fit` = 0.9 and `gen` = 0.8 by default:

- confusion: final train accuracy < fit (the model cannot even fit its training facts);
- memorisation: final train ≥ fit, final test < gen;
- grokking: both reached, but test reaches gen at least `grok_gap` of the training steps after
  train reaches fit;
- comprehension: both reached, test within `grok_gap` of train.

The competition ablation, at φ = 0.5: per seed, one model trained on every relation's training
queries (shared embeddings) and one per relation trained on that relation's training queries
alone, all at one width and weight decay, each scored on that relation's test queries.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import LinkTrain, train_ensemble

NAME = "kg_phase"
HEADLINE_PRESET = "quick"
PHASES = ("comprehension", "grokking", "memorisation", "confusion")
# Criteria thresholds (the issue's): a generalising cell, memorisation at the largest width without
# weight decay, confusion at the largest weight decay, and the competition ablation's margin.
GEN_CELL, MEMO_TRAIN, MEMO_TEST, CONFUSED_TRAIN, SHARED_MARGIN = 0.9, 0.99, 0.7, 0.9, 0.10


@dataclasses.dataclass(frozen=True)
class Settings:
  widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
  weight_decays: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 2.0, 3.0, 5.0, 10.0)
  seeds: tuple[int, ...] = (0, 1, 2)  # each seeds a model's init and its train/test split
  phi: float = 0.8
  dim: int = 16
  layers: int = 1
  tied: bool = True  # answers scored against the entity embeddings (see docs/knowledge_graphs.md)
  lr: float = 3e-3
  steps: int = 5000
  eval_every: int = 100
  fit: float = 0.9
  gen: float = 0.8
  grok_gap: float = 0.1  # fraction of the training steps
  ablation_phi: float = 0.5
  ablation_width: int = 64
  ablation_wd: float = 3.0
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(widths=(8, 32), weight_decays=(0.0, 3.0, 30.0), seeds=(0,), steps=200, eval_every=100,
                     ablation_width=8, cpu_s=20),
    # 6 widths × 8 weight decays × 8 seeds (20 test queries each), then 8 × 13 ablation models: about
    # 5 minutes on 2 CPU cores shared with another training.
    "quick": Settings(seeds=tuple(range(8)), cpu_s=330),
}


def check(s: Settings) -> None:
  """Bad settings fail as one-line config errors before any training."""
  for key in ("phi", "ablation_phi"):
    if not 0.0 < getattr(s, key) <= 1.0:
      raise ConfigError(f"study.{key}={getattr(s, key)} must be in (0, 1]")
  if s.steps <= 0 or s.eval_every <= 0 or s.steps % s.eval_every:
    raise ConfigError(f"study.steps={s.steps} must be a positive multiple of study.eval_every={s.eval_every}")
  if not s.seeds or not s.widths or not s.weight_decays or min(*s.widths, s.ablation_width, s.dim, s.layers) < 1:
    raise ConfigError("study.seeds, widths and weight_decays must be non-empty, and widths, dim and layers ≥ 1")
  if min(*s.weight_decays, s.ablation_wd) < 0:
    raise ConfigError("study.weight_decays and study.ablation_wd must be ≥ 0")


def configs(preset: str, overrides=()) -> list:
  return []  # no run folders: the ensembles train in memory in seconds to minutes


def spec(s: Settings, width: int) -> LinkTrain:
  return LinkTrain(dim=s.dim, width=width, layers=s.layers, tied=s.tied, lr=s.lr, steps=s.steps,
                   eval_every=s.eval_every)


def first_step(curve_C, steps_C, threshold: float) -> int | None:
  hit = np.flatnonzero(np.asarray(curve_C) >= threshold)
  return int(steps_C[hit[0]]) if len(hit) else None


def phase(train_C, test_C, steps_C, fit: float, gen: float, grok_gap: float) -> str:
  """The cell's label from its curves over the seeds (module docstring)."""
  if train_C[-1] < fit:
    return "confusion"
  if test_C[-1] < gen:
    return "memorisation"
  t_fit, t_gen = first_step(train_C, steps_C, fit), first_step(test_C, steps_C, gen)
  return "grokking" if t_gen - t_fit >= grok_gap * steps_C[-1] else "comprehension"


def phase_grid(g: fg.Graph, s: Settings) -> list[dict]:
  train_by_seed = {seed: fg.split(g, s.phi, seed) for seed in s.seeds}
  members = [(wd, seed) for wd in s.weight_decays for seed in s.seeds]
  train_KxQ = np.stack([train_by_seed[seed] for _, seed in members])
  cells = []
  for width in s.widths:
    t0 = time.perf_counter()
    ens = train_ensemble(g, spec(s, width), [seed for _, seed in members], [wd for wd, _ in members], train_KxQ,
                         ~train_KxQ)
    wall = time.perf_counter() - t0
    for wd in s.weight_decays:
      idx = [i for i, (w, _) in enumerate(members) if w == wd]
      # Pooled over seeds (every seed's split holds as many test queries): exact ratios of counts.
      tr_C, te_C = ens.pooled(idx, ens.train_KxQ), ens.pooled(idx, ens.test_KxQ)
      cells.append({"width": width, "weight_decay": wd, "train": float(tr_C[-1]), "test": float(te_C[-1]),
                    "train_seeds": ens.train_acc_KxC[idx, -1].tolist(),
                    "test_seeds": ens.test_acc_KxC[idx, -1].tolist(),
                    "step_fit": first_step(tr_C, ens.steps_C, s.fit), "step_gen": first_step(te_C, ens.steps_C, s.gen),
                    "phase": phase(tr_C, te_C, ens.steps_C, s.fit, s.gen, s.grok_gap),
                    "train_curve": tr_C.tolist(), "test_curve": te_C.tolist()})
    print(f"width {width:4d}: {len(members)} models in {wall:.1f} s; test by weight decay "
          + " ".join(f"{c['test']:.2f}" for c in cells[-len(s.weight_decays):]), flush=True)
  return cells


def ablation(g: fg.Graph, s: Settings) -> dict:
  """Shared (all relations) against single-relation models on each relation's test queries."""
  rows, members = [], []  # members: (seed, relation or None for shared)
  for seed in s.seeds:
    split_Q = fg.split(g, s.ablation_phi, seed)
    members.append((seed, None))
    rows.append(split_Q)
    for r in range(g.num_relations):
      members.append((seed, r))
      rows.append(split_Q & (g.rels_Q == r))
  train_KxQ = np.stack(rows)
  test_KxQ = np.stack([~fg.split(g, s.ablation_phi, seed) for seed, _ in members])
  ens = train_ensemble(g, spec(s, s.ablation_width), [seed for seed, _ in members], [s.ablation_wd] * len(members),
                       train_KxQ, test_KxQ)
  per_rel = []
  for r, rel in enumerate(fg.RELATIONS):
    row = {"relation": rel, "test_queries": 0}
    for kind in ("shared", "single"):
      idx = [members.index((seed, None if kind == "shared" else r)) for seed in s.seeds]
      test_KxQ_r = test_KxQ[idx] & (g.rels_Q == r)
      hits_K = (ens.correct_KxQ[idx] & test_KxQ_r).sum(-1)
      row[kind] = float(hits_K.sum() / test_KxQ_r.sum())
      row[f"{kind}_hits"] = int(hits_K.sum())
      row[f"{kind}_seeds"] = (hits_K / test_KxQ_r.sum(-1)).tolist()
      row["test_queries"] = int(test_KxQ_r.sum())
    per_rel.append(row)
  total = sum(p["test_queries"] for p in per_rel)
  hits = {kind: sum(p[f"{kind}_hits"] for p in per_rel) for kind in ("shared", "single")}
  shared_idx = [i for i, (_, r) in enumerate(members) if r is None]
  single_idx = [i for i, (_, r) in enumerate(members) if r is not None]
  return {"phi": s.ablation_phi, "width": s.ablation_width, "weight_decay": s.ablation_wd,
          "shared": hits["shared"] / total, "single": hits["single"] / total, "test_queries": total,
          "shared_train": float(ens.pooled(shared_idx, ens.train_KxQ)[-1]),
          "single_train": float(ens.pooled(single_idx, ens.train_KxQ)[-1]),
          "per_relation": per_rel}


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  g = fg.graph(fg.hinton())
  cells = phase_grid(g, s)
  abl = ablation(g, s)
  print(f"ablation at phi = {s.ablation_phi}: shared {abl['shared']:.3f}, single relation {abl['single']:.3f}")
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "graph": "hinton", "queries": g.num_queries, "entities": g.num_entities,
             "settings": settings_record(s),
             "steps": list(range(0, s.steps + 1, s.eval_every)), "cells": cells, "ablation": abl,
             "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), tuple(s.seeds), s.seeds[0])
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def _cell(r: dict, width, wd) -> dict | None:
  return next((c for c in r["cells"] if c["width"] == width and c["weight_decay"] == wd), None)


def criteria(r: dict) -> list[Criterion]:
  cells = r["cells"]
  best = max(cells, key=lambda c: c["test"])
  n_gen = sum(c["test"] >= GEN_CELL for c in cells)
  out = [Criterion(f"best cell's test accuracy (width {best['width']}, weight decay {best['weight_decay']:g}; "
                   f"{n_gen} cells ≥ {GEN_CELL:g})", best["test"], f"≥ {GEN_CELL:g}", best["test"] >= GEN_CELL)]
  wmax = max(c["width"] for c in cells)
  memo = _cell(r, wmax, 0.0)
  value = None if memo is None else [memo["train"], memo["test"]]
  out.append(Criterion(f"width {wmax}, no weight decay: [train, test] accuracy (memorisation)", value,
                       f"train ≥ {MEMO_TRAIN:g} and test ≤ {MEMO_TEST:g}",
                       memo is not None and memo["train"] >= MEMO_TRAIN and memo["test"] <= MEMO_TEST))
  wdmax = max(c["weight_decay"] for c in cells)
  worst = max(c["train"] for c in cells if c["weight_decay"] == wdmax)
  out.append(Criterion(f"weight decay {wdmax:g}: highest train accuracy over widths (confusion)", worst,
                       f"< {CONFUSED_TRAIN:g}", worst < CONFUSED_TRAIN))
  a = r["ablation"]
  gap = a["shared"] - a["single"]
  out.append(Criterion(f"φ = {a['phi']:g}: test accuracy, shared embeddings minus single relation "
                       f"({a['shared']:.3f} − {a['single']:.3f})", gap, f"≥ {SHARED_MARGIN:g}", gap >= SHARED_MARGIN))
  return out


PHASE_MARK = {"comprehension": "C", "grokking": "G", "memorisation": "M", "confusion": "X"}


def _grid(r: dict, key: str) -> tuple[list, list, np.ndarray]:
  widths = sorted({c["width"] for c in r["cells"]})
  wds = sorted({c["weight_decay"] for c in r["cells"]})
  grid = np.array([[_cell(r, w, wd)[key] for wd in wds] for w in widths], dtype=object)
  return widths, wds, grid


def plot(json_path: str | Path) -> list[Path]:
  """Train and test accuracy over width × weight decay (phase letters on the test map), the seed-mean
  curves of the widest model, and the competition ablation per relation."""
  json_path = Path(json_path)
  r = read_json(json_path)
  widths, wds, train = _grid(r, "train")
  _, _, test = _grid(r, "test")
  _, _, phases = _grid(r, "phase")
  fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
  for ax, grid, title in ((axes[0, 0], train, "train accuracy"), (axes[0, 1], test, "test accuracy")):
    im = ax.imshow(grid.astype(float), origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(wds)), [f"{w:g}" for w in wds])
    ax.set_yticks(range(len(widths)), [str(w) for w in widths])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("width")
    ax.set_title(f"{title} (φ = {r['settings']['phi']:g}, {len(r['settings']['seeds'])} seeds pooled)")
    for i in range(len(widths)):
      for j in range(len(wds)):
        label = f"{grid[i, j]:.2f}" + (f"\n{PHASE_MARK[phases[i, j]]}" if title.startswith("test") else "")
        ax.text(j, i, label, ha="center", va="center", fontsize=7, color="w" if grid[i, j] < 0.6 else "k")
    fig.colorbar(im, ax=ax)
  axes[0, 1].text(0, -0.16, "C comprehension · G grokking · M memorisation · X confusion",
                  transform=axes[0, 1].transAxes, fontsize=8)
  ax = axes[1, 0]
  steps = r["steps"]
  colors = plt.cm.plasma(np.linspace(0, 0.9, len(wds)))
  for wd, color in zip(wds, colors):
    c = _cell(r, widths[-1], wd)
    ax.plot(steps, c["train_curve"], "-", color=color, lw=1, label=f"wd {wd:g}")
    ax.plot(steps, c["test_curve"], "--", color=color, lw=1.3)
  ax.set_xlabel("step")
  ax.set_ylabel("accuracy (train solid, test dashed)")
  ax.set_title(f"width {widths[-1]}: curves by weight decay")
  ax.legend(fontsize=7, ncol=2)
  ax.grid(alpha=0.3, lw=0.4)
  ax = axes[1, 1]
  a = r["ablation"]
  rels = a["per_relation"]
  x = np.arange(len(rels))
  ax.bar(x - 0.2, [p["shared"] for p in rels], 0.4, label=f"shared: {a['shared']:.2f} overall")
  ax.bar(x + 0.2, [p["single"] for p in rels], 0.4, label=f"single relation: {a['single']:.2f} overall")
  ax.set_xticks(x, [p["relation"] for p in rels], rotation=45, fontsize=8)
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1.05)
  ax.set_title(f"competition ablation (φ = {a['phi']:g}, width {a['width']}, weight decay {a['weight_decay']:g})")
  ax.legend(fontsize=8)
  fig.suptitle(f"MLP link predictors on Hinton's family trees (preset {r['preset']})")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  widths, wds, test = _grid(r, "test")
  _, _, train = _grid(r, "train")
  _, _, phases = _grid(r, "phase")
  lines = ["| width \\ weight decay | " + " | ".join(f"{w:g}" for w in wds) + " |", "|---|" + "---|" * len(wds)]
  for i, w in enumerate(widths):
    cells = [f"{train[i, j]:.2f} / {test[i, j]:.2f} {PHASE_MARK[phases[i, j]]}" for j in range(len(wds))]
    lines.append(f"| {w} | " + " | ".join(cells) + " |")
  a = r["ablation"]
  lines += ["", "(train / test accuracy, seeds pooled; C comprehension, G grokking, M memorisation, X confusion)", "",
            f"Competition ablation (φ = {a['phi']:g}, width {a['width']}, weight decay {a['weight_decay']:g}), "
            "test accuracy:", "", "| relation | test queries | shared | single relation |", "|---|---|---|---|"]
  for p in a["per_relation"]:
    lines.append(f"| {p['relation']} | {p['test_queries']} | {p['shared']:.2f} | {p['single']:.2f} |")
  lines.append(f"| all | {a['test_queries']} | {a['shared']:.3f} | {a['single']:.3f} |")
  lines.append(f"| (train accuracy) | | {a['shared_train']:.3f} | {a['single_train']:.3f} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024): phase diagram of MLP link predictors on Hinton's "
                "family trees over width × weight decay, and the competition ablation",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)

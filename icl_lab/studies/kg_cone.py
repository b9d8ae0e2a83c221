"""Cone embeddings (Baek, Li and Tegmark 2024, arXiv 2410.08255 v2): pair classifiers with 2-D node
embeddings learn "j is a descendant of i" on the 15-node complete binary tree; does the embedding
become a cone embedding (j a descendant of i iff E_j lies in a fixed cone with apex E_i)?

Every ordered pair i ≠ j trains (full batch; the question is the representation, not held-out
pairs). One vmapped ensemble over seeds per variant: the MLP reads [E_i, E_j] (the plain reading of
the paper's toy) or only E_j − E_i (translation-invariant), at each width. Each model's cone score
(`icl_lab.analysis.cone`: best balanced accuracy over one direction and half-angle) is reported;
the criterion asks the best variant for a score ≥ 0.95 in at least 7 of 9 seeds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis.cone import cone_score
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import descendants
from icl_lab.training.pairs import PairTrain, train_pairs

NAME = "kg_cone"
HEADLINE_PRESET = "quick"
CONE, SEEDS_FRACTION = 0.95, 7 / 9  # the issue's: score ≥ 0.95 in ≥ 7 of 9 seeds
INPUTS = ("concat", "difference")


@dataclasses.dataclass(frozen=True)
class Settings:
  branching: int = 2
  depth: int = 3  # 1 + 2 + 4 + 8 = 15 nodes
  inputs: tuple[str, ...] = INPUTS
  widths: tuple[int, ...] = (8, 64)
  layers: int = 1
  seeds: tuple[int, ...] = tuple(range(9))
  lr: float = 1e-2
  weight_decay: float = 0.0
  steps: int = 5000
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(widths=(8,), seeds=(0, 1), steps=200, cpu_s=10),
    # 2 inputs × 2 widths × 9 seeds: under a minute on 2 shared cores.
    "quick": Settings(cpu_s=60),
}


def check(s: Settings) -> None:
  bad = [i for i in s.inputs if i not in INPUTS]
  if bad or not s.inputs:
    raise ConfigError(f"study.inputs={','.join(s.inputs)}: each must be one of {', '.join(INPUTS)}")
  if not s.seeds or not s.widths or min(*s.widths, s.layers, s.steps, s.branching) < 1 or s.depth < 1:
    raise ConfigError("study.seeds and widths must be non-empty; widths, layers, steps, branching, depth ≥ 1")
  if s.weight_decay < 0 or s.lr <= 0:
    raise ConfigError("study.weight_decay must be ≥ 0 and study.lr > 0")


def configs(preset: str, overrides=()) -> list:
  return []  # no run folders: the ensembles train in memory in seconds


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  parent_N = descendants.tree_parents(s.branching, s.depth)
  rel_NxN = descendants.descendant_matrix(parent_N)
  variants = []
  for inputs in s.inputs:
    for width in s.widths:
      spec = PairTrain(width=width, layers=s.layers, lr=s.lr, weight_decay=s.weight_decay, steps=s.steps,
                       difference=inputs == "difference")
      out = train_pairs(rel_NxN, spec, s.seeds)
      models = [{"seed": seed, "accuracy": float(acc), **cone_score(emb, rel_NxN), "embedding": emb.tolist()}
                for seed, acc, emb in zip(s.seeds, out["acc_K"], out["emb_KxNxD"])]
      variants.append({"inputs": inputs, "width": width, "models": models,
                       "cones": sum(m["score"] >= CONE for m in models)})
      print(f"{inputs:10s} width {width:3d}: cone scores " + " ".join(f"{m['score']:.3f}" for m in models)
            + f"; pair accuracy ≥ {min(m['accuracy'] for m in models):.3f}", flush=True)
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "nodes": len(parent_N), "parents": parent_N.tolist(),
             "descendant_pairs": int(rel_NxN.sum()),
             "settings": settings_record(s), "variants": variants,
             "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), (), 0)
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def best_variant(r: dict) -> dict:
  return max(r["variants"], key=lambda v: (v["cones"], np.median([m["score"] for m in v["models"]])))


def criteria(r: dict) -> list[Criterion]:
  v = best_variant(r)
  n = len(v["models"])
  need = int(np.ceil(SEEDS_FRACTION * n - 1e-9))
  return [Criterion(f"best variant ({v['inputs']}, width {v['width']}): seeds with cone score ≥ {CONE:g}",
                    f"{v['cones']} of {n}", f"≥ {need} of {n}", v["cones"] >= need)]


def _draw(ax, emb, parents, title):
  emb = np.asarray(emb)
  for j, p in enumerate(parents):
    if p >= 0:
      ax.plot(*emb[[p, j]].T, "-", color="0.7", lw=0.8)
  ax.scatter(*emb.T, c=descendants.depths(parents), cmap="viridis", s=18, zorder=3)  # colour: depth
  ax.set_title(title, fontsize=8)
  ax.set_aspect("equal", "datalim")  # the cone's angle is only seen undistorted at equal scales
  ax.set_xticks([])
  ax.set_yticks([])


def plot(json_path: str | Path) -> list[Path]:
  """Cone scores per variant, and the best variant's 2-D embeddings (tree edges in grey)."""
  json_path = Path(json_path)
  r = read_json(json_path)
  best = best_variant(r)
  shown = best["models"][:9]
  fig = plt.figure(figsize=(14, 5), layout="constrained")
  grid = fig.add_gridspec(3, 5, width_ratios=[2.2, 1, 1, 1, 0.01])
  ax = fig.add_subplot(grid[:, 0])
  for x, v in enumerate(r["variants"]):
    ys = [m["score"] for m in v["models"]]
    ax.scatter(x + np.linspace(-0.15, 0.15, len(ys)), ys, s=14)
  ax.axhline(CONE, color="k", ls=":", lw=1)
  ax.set_xticks(range(len(r["variants"])), [f"{v['inputs']}\nwidth {v['width']}" for v in r["variants"]], fontsize=8)
  ax.set_ylabel("cone score (best balanced accuracy)")
  ax.set_ylim(0.45, 1.02)
  ax.set_title(f"{r['nodes']}-node tree, descendant-of, 2-D embeddings")
  for k, m in enumerate(shown):
    _draw(fig.add_subplot(grid[k // 3, 1 + k % 3]), m["embedding"], r["parents"],
          f"seed {m['seed']}: {m['score']:.3f}")
  fig.suptitle(f"Cone embeddings (preset {r['preset']}); right: {best['inputs']}, width {best['width']}")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  lines = [f"{r['nodes']}-node tree ({r['descendant_pairs']} descendant pairs of {r['nodes'] * (r['nodes'] - 1)}); "
           "cone score per seed (pair accuracy ≥ the minimum shown):", "",
           "| MLP input | width | cone scores by seed | median | seeds ≥ 0.95 | min pair accuracy |",
           "|---|---|---|---|---|---|"]
  for v in r["variants"]:
    scores = [m["score"] for m in v["models"]]
    lines.append(f"| {v['inputs']} | {v['width']} | {' '.join(f'{x:.2f}' for x in scores)} | "
                 f"{np.median(scores):.3f} | {v['cones']} of {len(scores)} | "
                 f"{min(m['accuracy'] for m in v['models']):.3f} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024, v2): cone score of 2-D node embeddings learned by pair "
                "classifiers on the 15-node descendant tree",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)

"""Figures drawn from results JSON alone, so any figure can be redrawn without training."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icl_lab.io import read_json  # noqa: E402

# Colours fixed per learner so every figure reads the same way.
COLORS = {
    "ols": "#1f77b4", "ridge(0.1)": "#2ca02c", "ridge(0.5)": "#98df8a", "gd(0.01)": "#d62728",
    "gd(0.02)": "#ff9896", "gd_k(0.02,3)": "#ff7f0e", "sgd(0.01)": "#9467bd", "sgd(0.03)": "#c5b0d5",
    "knn3_uniform": "#8c564b",
    "knn3_weighted": "#c49c94", "averaging": "#7f7f7f", "transformer": "#000000",
}


def save_figure(fig, json_path: Path) -> list[Path]:
  """Writes the figure as PNG and PDF beside its results JSON; returns both paths."""
  paths = [json_path.with_suffix(".png"), json_path.with_suffix(".pdf")]
  for p in paths:
    fig.savefig(p, dpi=150, bbox_inches="tight")
  plt.close(fig)
  return paths


def _curves(ax, prefix_lengths, curves: dict[str, list[float]], ylabel: str, d: int) -> None:
  for name, ys in curves.items():
    ax.plot(prefix_lengths, ys, label=name, color=COLORS.get(name), lw=1.6 if name == "ols" else 1.1)
  ax.axvline(d, color="0.6", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("number of in-context examples n")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, which="both", lw=0.4)


def plot_fig1(json_path: str | Path) -> list[Path]:
  """SPD/d, ILWD and error vs truth against n: the transformer against each learner."""
  json_path = Path(json_path)
  r = read_json(json_path)
  n, d = r["prefix_lengths"], r["d"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
  _curves(axes[0], n, r["spd_over_d"], "SPD(transformer, learner) / d", d)
  _curves(axes[1], n, r["ilwd"], "ILWD(transformer, learner)", d)
  _curves(axes[2], n, r["error_vs_truth"], "squared error vs. truth", d)
  axes[0].set_title("prediction agreement")
  axes[1].set_title("implicit linear weight difference")
  axes[2].set_ylim(bottom=1e-4)  # OLS is exact (≈1e-12) past n = d; keep the others readable
  axes[2].set_title("error against the targets")
  axes[2].legend(fontsize=7, ncol=2)
  fig.suptitle(f"Fig. 1 (noiseless, d = {d}, preset {r.get('preset', '?')})")
  return save_figure(fig, json_path)


def plot_fig2(json_path: str | Path) -> list[Path]:
  """Heat maps of MSPD/d: rows = learners, columns = σ²/τ² of the model's training data."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
  for ax, key, title in ((axes[0], "mspd_over_d_underdetermined", "MSPD/d, n < d"),
                         (axes[1], "mspd_over_d_full", "MSPD/d, all n")):
    m_RxC = np.asarray(r[key], float)
    im = ax.imshow(np.log10(m_RxC), cmap="viridis_r", aspect="auto")
    for i in range(m_RxC.shape[0]):
      for j in range(m_RxC.shape[1]):
        best = m_RxC[i, j] == m_RxC[:, j].min()
        ax.text(j, i, f"{m_RxC[i, j]:.1e}", ha="center", va="center", fontsize=7,
                color="white" if best else "black", fontweight="bold" if best else "normal")
    ax.set_xticks(range(len(r["noise_ratios"])), [f"{v:.3g}" for v in r["noise_ratios"]])
    ax.set_yticks(range(len(r["rows"])), r["rows"])
    ax.set_xlabel("σ²/τ² of the training and evaluation data")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="log10 MSPD/d")
  fig.suptitle("Fig. 2: which ridge the transformer matches under noise (column minimum in bold)")
  return save_figure(fig, json_path)


def plot_fig3(json_path: str | Path) -> list[Path]:
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


# Results stem prefix -> "module:function" that draws it; imported lazily so one broken
# study cannot stop the others from redrawing.
PLOTTERS: dict[str, str] = {
    "fig1_noiseless": "icl_lab.plotting:plot_fig1",
    "fig2_noise": "icl_lab.plotting:plot_fig2",
    "fig3_depth_width": "icl_lab.plotting:plot_fig3",
    "fig6_linearity": "icl_lab.plotting:plot_fig6",
    "fig4_probes": "icl_lab.plot_probes:plot_fig4",
    "constructions": "icl_lab.constructions.study:plot",
}


def plotter_for(stem: str) -> Callable[[Path], list[Path]] | None:
  for prefix, target in PLOTTERS.items():
    if stem == prefix or stem.startswith(prefix + "_"):
      module, fn = target.split(":")
      return getattr(importlib.import_module(module), fn)
  return None


def redraw_all(out_dir: str | Path = "figures") -> list[Path]:
  """Redraws every figure whose results JSON is in `out_dir`; no training, no evaluation."""
  drawn: list[Path] = []
  for json_path in sorted(Path(out_dir).glob("*.json")):
    if json_path.name == "MANIFEST.json":
      continue
    plot = plotter_for(json_path.stem)
    if plot is not None:
      drawn += [Path(p) for p in plot(json_path)]
  return drawn

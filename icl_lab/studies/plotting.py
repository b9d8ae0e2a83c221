"""Shared figure helpers.

Each study draws its own figure (`icl_lab.studies.<name>`); this module holds what they share:
the learner colours, the log-scale curve panel and `save_figure`, which writes PNG and PDF
without a creation date so that redrawing an unchanged JSON gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

# Colours fixed per learner so every figure reads the same way.
COLORS = {
    "ols": "#1f77b4", "ridge(0.1)": "#2ca02c", "ridge(0.5)": "#98df8a", "gd(0.01)": "#d62728",
    "gd(0.02)": "#ff9896", "gd_k(0.02,3)": "#ff7f0e", "sgd(0.01)": "#9467bd", "sgd(0.03)": "#c5b0d5",
    "knn3_uniform": "#8c564b",
    "knn3_weighted": "#c49c94", "averaging": "#7f7f7f", "transformer": "#000000",
}

# The PDF backend stamps the time of drawing by default, so an unchanged figure would differ on
# every redraw; the PNG backend writes no date (only the matplotlib version).
_METADATA = {".pdf": {"CreationDate": None}, ".png": {}}


def save_figure(fig, json_path: str | Path, **savefig_kw) -> list[Path]:
  """Writes the figure as PNG and PDF beside its results JSON; returns both paths."""
  json_path = Path(json_path)
  kw = {"dpi": 150, "bbox_inches": "tight", **savefig_kw}
  paths = [json_path.with_suffix(".png"), json_path.with_suffix(".pdf")]
  for p in paths:
    fig.savefig(p, metadata=_METADATA[p.suffix], **kw)
  plt.close(fig)
  return paths


def curves(ax, prefix_lengths, named: dict[str, list[float]], ylabel: str, d: int) -> None:
  """One log-scale curve per learner against n, with n = d marked."""
  for name, ys in named.items():
    ax.plot(prefix_lengths, ys, label=name, color=COLORS.get(name), lw=1.6 if name == "ols" else 1.1)
  ax.axvline(d, color="0.6", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("number of in-context examples n")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, which="both", lw=0.4)


def plot_result(result: dict, key: str = "spd_over_d", ax=None, path: str | Path | None = None):
  """Draws one curve per learner of an evaluation result (`analysis.evaluate.compare`) against n:
  `key` is "spd_over_d", "ilwd" or "error_vs_truth". Returns the axes; with `path`, also saves
  PNG and PDF there."""
  if key not in ("spd_over_d", "ilwd", "error_vs_truth"):
    raise ValueError(f"key={key!r}; accepted: spd_over_d, ilwd, error_vs_truth")
  fig = None
  if ax is None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
  n = len(next(iter(result[key].values())))
  curves(ax, list(range(n)), result[key], key.replace("_", " "), result["d"])
  ax.legend(fontsize=7)
  if path is not None:
    save_figure(ax.figure if fig is None else fig, Path(path).with_suffix(".json"))
  return ax

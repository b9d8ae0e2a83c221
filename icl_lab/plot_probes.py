"""Fig. 4/5: probe error by layer, and where the probe attends, drawn from the results JSON only."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icl_lab.io import read_json  # noqa: E402
from icl_lab.plotting import save_figure  # noqa: E402

HEAD_STYLE = {"linear": ("tab:blue", "linear probe"), "mlp": ("tab:orange", "MLP probe"),
              "last_token_ridge": ("tab:gray", "ridge, last token")}
TARGET_LABEL = {"xty": "XᵀY", "w_ols": "w_OLS", "ols": "w_OLS", "w": "true w"}


def _label(target: str) -> str:
  return TARGET_LABEL.get(target, target)


def _arr(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def _token_labels(seq_len: int) -> list[str]:
  return [f"{'x' if t % 2 == 0 else 'y'}{t // 2 + 1}" for t in range(seq_len)]


def _error_panels(res: dict, fig) -> None:
  targets, layers = res["targets"], np.asarray(res["layers"])
  has_control = "control" in res
  axes = fig.subplots(2, len(targets), squeeze=False, sharex=True)
  for col, target in enumerate(targets):
    ax_mse, ax_r2 = axes[0, col], axes[1, col]
    for head in res["heads"]:
      color, name = HEAD_STYLE.get(head, ("k", head))
      runs = [("", res["results"], "-", "o")]
      if has_control:
        runs.append((" (control)", res["control"]["results"], "--", "x"))
      for suffix, results, ls, marker in runs:
        if head not in results.get(target, {}):
          continue
        entry = results[target][head]
        kw = dict(color=color, ls=ls, marker=marker, ms=3.5, lw=1.4, label=name + suffix)
        ax_mse.plot(layers, _arr(entry["mse"]), **kw)
        ax_r2.plot(layers, _arr(entry["r2"]), **kw)
    ax_mse.axhline(res["baseline_mse"][target], color="k", ls=":", lw=1, label="mean predictor")
    ax_mse.set_yscale("log")
    ax_mse.set_title(f"probing for {_label(target)} (n = {res['prefix']} examples)")
    ax_mse.set_ylabel("held-out MSE")
    ax_r2.axhline(0.9, color="k", ls=":", lw=0.8)
    ax_r2.set_ylim(-0.1, 1.02)
    ax_r2.set_ylabel("held-out R²")
    ax_r2.set_xlabel("layer (0 = after read-in)")
    ax_r2.set_xticks(layers)
  axes[0, -1].legend(fontsize=7, loc="best")
  title = f"Probing a d = {res.get('d', '?')} transformer"
  if has_control:
    title += "; dashed: control trained with w = 1"
  fig.suptitle(title, fontsize=10)


def _attention_targets(res: dict) -> list[str]:
  return [t for t in res["targets"] if t in res.get("attention", {})]


def _attention_panels(res: dict, fig) -> None:
  targets = _attention_targets(res)
  axes = fig.subplots(len(targets), 2, squeeze=False)
  for row, target in enumerate(targets):
    att = res["attention"][target]
    by_layer_LxT = np.array(att["mean_by_layer"], np.float64)
    prompts_KxT = np.array(att["best_layer_prompts"], np.float64)
    # Only tokens the probe may read (0..2n) are drawn; later ones are zero by construction.
    allowed = 2 * att["prefix"] + 1
    labels = _token_labels(allowed)
    ticks = np.arange(0, allowed, 2 * max(1, allowed // 20))  # at x̃ tokens
    for ax, data, ylabel, title in (
        (axes[row, 0], by_layer_LxT[:, :allowed], "layer",
         f"{_label(target)}, {att['head']} probe: mean attention by layer"),
        (axes[row, 1], prompts_KxT[:, :allowed], "held-out prompt",
         f"layer {att['layer']} (best R²): attention per prompt")):
      im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
      ax.set_xticks(ticks, [labels[t] for t in ticks], fontsize=7)
      ax.set_ylabel(ylabel)
      ax.set_title(title, fontsize=9)
      fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    axes[row, 0].axhline(att["layer"], color="w", lw=0.8, ls="--")
    axes[row, 0].set_xlabel("token position")
    axes[row, 1].set_xlabel("token position")


def plot_fig4(json_path: str | os.PathLike) -> list[Path]:
  """Draws fig4 beside its JSON: error and R² by layer on top, the probes' position attention
  heat maps below (one figure, so every PNG has a results JSON of the same name)."""
  json_path = Path(json_path)
  res = read_json(json_path)
  att_rows = len(_attention_targets(res))
  width = max(4.6 * len(res["targets"]), 11)
  fig = plt.figure(figsize=(width, 6.4 + 3.4 * att_rows), layout="constrained")
  if att_rows:
    top, bottom = fig.subfigures(2, 1, height_ratios=[6.4, 3.4 * att_rows])
    _error_panels(res, top)
    _attention_panels(res, bottom)
  else:
    _error_panels(res, fig)
  return save_figure(fig, json_path)

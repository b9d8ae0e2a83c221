"""Fig. 4/5: decode XᵀY and w_OLS from every layer of a d = 4 transformer and of its control
(the same model trained with w fixed to all-ones), with attention-pooled probes (paper §5)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import manifest, results
from icl_lab.analysis import probes
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, build_config, settings_for
from icl_lab.studies.plotting import save_figure
from icl_lab.training import train

NAME = "fig4"
HEADLINE_PRESET = "quick"
TARGETS = ("xty", "w_ols")
PROBE_DATA_SEED = 1234
THRESHOLD = 0.9


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ("task.dim=4",)
  prefixes: tuple[int, ...] = ()  # prefix lengths to probe; empty: N − 1, the full prompt
  probe_steps: int = 1500
  probe_batch: int = 256
  proj_dim: int = 512  # the paper's projection width
  probe_seed: int = 0
  position_only: bool = False  # attention scores from per-position scores only (the paper's form)
  num_train: int = 4096  # prompts the probes train on (the paper model's states: 2.8 GB per 1024)
  num_test: int = 2048  # held-out prompts they are scored on
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(("task.dim=4", "train.steps=200", "train.checkpoint_every=100"), probe_steps=40,
                     probe_batch=64, proj_dim=32, num_train=256, num_test=128, cpu_s=40),
    # Depth to probe (8 layers), N = 20, 8k steps with the curriculum over the first 40%.
    "quick": Settings(("task.dim=4", "model.layers=8", "task.num_exemplars=20", "train.steps=8000",
                       "task.curriculum_steps=3200"), num_train=16384, cpu_s=2100),
    "paper": Settings(),
}


def model_configs(preset: str, overrides=(), settings: Settings | None = None):
  """(probed model, control): the control is the same run with w fixed to all-ones."""
  s = settings or SETTINGS[preset]
  cfg = build_config(preset, s.config_overrides, overrides)
  return cfg, build_config(preset, s.config_overrides, overrides, ["task.weights=ones"])


def configs(preset: str, overrides=()) -> list:
  return list(model_configs(preset, overrides))


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  t0 = time.perf_counter()
  cfg, control_cfg = model_configs(req.preset, req.config_overrides, s)
  probe_cfg = probes.ProbeConfig(proj_dim=s.proj_dim, steps=s.probe_steps, batch_size=s.probe_batch,
                                 seed=s.probe_seed, content_query=not s.position_only)
  n = cfg.task.num_exemplars
  prefixes = list(s.prefixes) or [n - 1]
  study_kw = dict(targets=TARGETS, prefixes=prefixes, probe_cfg=probe_cfg, num_train=s.num_train,
                  num_test=s.num_test, data_seed=PROBE_DATA_SEED,
                  headline_prefix=n - 1 if n - 1 in prefixes else None, log=print)
  studies, runs = {}, {}
  for role, c in (("main", cfg), ("control", control_cfg)):
    print(f"[{role}] training or reusing {c.run_name()}", flush=True)
    run_dir, model = train.train_and_load(c, req.runs_dir)
    runs[role] = {"run": run_dir.name, "steps": c.train.steps, "weights": c.task.weights,
                  "final_loss": (train.read_metrics(run_dir) or [{}])[-1].get("loss")}
    print(f"[{role}] probing {cfg.model.layers + 1} layers", flush=True)
    # The control is probed on Gaussian-w prompts too: the question is what it computes there.
    studies[role] = probes.probe_study(model, cfg.task, **study_kw)
  main = studies["main"]
  control = {k: studies["control"][k] for k in ("results", "baseline_mse", "baseline_mse_by_prefix",
                                                "first_layer_r2_ge_0.9", "attention")}
  seeds = Seeds((cfg.train.seed,), (cfg.train.data_seed,), PROBE_DATA_SEED,
                (("probe_init_and_batches", probe_cfg.seed),))
  wall = time.perf_counter() - t0
  payload = {
      "figure": "fig4_probes", "preset": req.preset, "d": cfg.task.dim, "num_exemplars": n,
      "model": dataclasses.asdict(cfg.model), "train_steps": cfg.train.steps,
      **{k: main[k] for k in ("layers", "targets", "heads", "prefix", "prefixes")},
      "layer_index": "0 = residual stream after the read-in, l = after block l",
      "results": main["results"], "baseline_mse": main["baseline_mse"],
      "baseline_mse_by_prefix": main["baseline_mse_by_prefix"],
      "first_layer_r2_ge_0.9": main["first_layer_r2_ge_0.9"], "attention": main["attention"],
      "control": control, "runs": runs,
      "probe": {**{k: v for k, v in dataclasses.asdict(probe_cfg).items() if k != "head"},
                "heads_trained": [h for h in main["heads"] if h in probes.HEADS],
                "num_train": s.num_train, "num_test": s.num_test,
                "allowed_tokens": "prefix i reads tokens 0..2i (through the query x̃ᵢ₊₁)",
                "metric": "MSE per coordinate on held-out prompts; R² = 1 − MSE / MSE of the train mean"},
      "seeds": seeds.to_dict(), "command": manifest.command_line(), "git_commit": manifest.git_commit(),
      "device": manifest.device_description(), "wall_s": wall,
  }
  paths = results.write(dest, "fig4_probes", payload, preset=req.preset, seeds=seeds, wall_s=wall,
                        criteria=criteria, plot=plot, runs=[r["run"] for r in runs.values()])
  print(results.format_criteria(read_json(paths[0])["criteria"]))
  return paths


def criteria(r: dict) -> list[Criterion]:
  """Per target: the first layer where any attention probe reaches held-out R² ≥ 0.9."""
  out = []
  for target in r["targets"]:
    by_head = r["first_layer_r2_ge_0.9"][target]
    layers = [v["layer"] for h, v in by_head.items() if h != probes.RIDGE_HEAD and v["layer"] is not None]
    first = min(layers) if layers else None
    out.append(Criterion(f"first layer where a probe decodes {_label(target)} with R² ≥ {THRESHOLD}",
                         first, "exists (a layer index)", first is not None))
  return out


def readme(r: dict) -> str:
  """First layer whose held-out R² reaches 0.9 per target and head, model against control."""
  def cell(entry):
    best = "n/a" if entry["best_r2"] is None else f"{entry['best_r2']:.3f}"
    if entry["layer"] is None:
      return f"never (best {best})"
    return f"layer {entry['layer']} (best {best}, layer {entry['best_layer']})"

  control = (r.get("control") or {}).get("first_layer_r2_ge_0.9", {})
  lines = ["| target | head | model | control (w = 1) |", "|---|---|---|---|"]
  for target in r["targets"]:
    for head, entry in r["first_layer_r2_ge_0.9"][target].items():
      other = control.get(target, {}).get(head)
      lines.append(f"| {_label(target)} | {HEAD_STYLE.get(head, (None, head))[1]} | {cell(entry)} | "
                   f"{cell(other) if other else 'n/a'} |")
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# The figure: error and R² by layer on top, the probes' position attention below


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
      for suffix, by_target, ls, marker in runs:
        if head not in by_target.get(target, {}):
          continue
        entry = by_target[target][head]
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


def plot(json_path: str | Path) -> list[Path]:
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


STUDY = Study(
    name=NAME,
    description="Fig. 4/5: probe XᵀY and w_OLS from every layer of a d = 4 model and of its w = 1 control",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output("fig4_probes", "fig4", criteria, plot, readme),),
)

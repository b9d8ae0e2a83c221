"""The constructions study: compiled transformers that run SGD, GD and ridge (paper §3, App.
A–C) against their target learners, the error against the approximation scale, the trained
linear-attention layer against von Oswald et al.'s construction, and the networks' sizes.
No training of transformers; the results go to constructions.json and its figure."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np

from icl_lab import manifest, results
from icl_lab.constructions import agreement as agr
from icl_lab.constructions import linear_attention
from icl_lab.constructions.compiler import DEFAULT_SCALE
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, settings_for
from icl_lab.studies.plotting import save_figure

NAME = "constructions"
HEADLINE_PRESET = "quick"
# The tolerances of the agreement tests (tests/test_constructions.py): float64 constructions
# match their learner to 1e-8 in every prediction; float32 ones to a mean squared gap of 1e-6.
FLOAT64_MAX_ABS_ERR = 1e-8
FLOAT32_MSPD_OVER_D = 1e-6
LSA_LOSS_RATIO = 1.05
LSA_MIN_COS = 0.95


@dataclasses.dataclass(frozen=True)
class Settings:
  dims: tuple[int, ...] = (2, 4, 8)
  n: int = 16  # pairs per prompt
  batch: int = 128  # prompts per (construction, d)
  seed: int = 0
  dtypes: tuple[str, ...] = ("float64", "float32")
  sweep_scales: tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
  sweep_d: int = 4
  sweep_n: int = 8
  lsa_d: int = 8
  lsa_steps: int = 2000
  size_dims: tuple[int, ...] = (2, 4, 8, 16)
  # Fig. 1 results whose transformer is drawn beside the constructions (skipped if absent).
  trained: str = "figures/fig1_noiseless.json"
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(dims=(2,), n=6, batch=16, sweep_scales=(1e-2, 1e-3), sweep_d=2, sweep_n=4, lsa_d=3,
                     lsa_steps=50, size_dims=(2,), cpu_s=40),
    "quick": Settings(cpu_s=60),
}


def configs(preset: str, overrides=()) -> list:
  return []  # no transformer is trained


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  start = time.time()
  out: dict[str, Any] = {"agreement": {}, "scale_sweep": {}}
  for name, (_, learner_name, hyper) in agr.CONSTRUCTIONS.items():
    by_dtype = {dt: {str(d): agr.agreement(name, d, s.n, dtype=dt, batch=s.batch, seed=s.seed) for d in s.dims}
                for dt in s.dtypes}
    out["agreement"][name] = dict(learner=learner_name, params=hyper, by_dtype=by_dtype)
    out["scale_sweep"][name] = agr.scale_sweep(name, s.sweep_d, s.sweep_n, s.sweep_scales, batch=s.batch,
                                               seed=s.seed)
  out["lsa"] = linear_attention.study(s.lsa_d, s.n, steps=s.lsa_steps, seed=s.seed)
  out["sizes"] = {str(d): agr.size_report(d, s.n) for d in s.size_dims}
  out["trained_model"] = {name: None for name in agr.CONSTRUCTIONS}
  if s.trained and Path(s.trained).exists():
    out["trained_model"] = agr.trained_agreement(s.trained, s.n)
  wall = round(time.time() - start, 1)
  out["meta"] = dict(command=manifest.command_line(), git_commit=manifest.git_commit(), seed=s.seed,
                     batch=s.batch, n=s.n, dims=list(s.dims), dtypes=list(s.dtypes), default_scale=DEFAULT_SCALE,
                     wall_clock_s=wall, device=manifest.device_description(), jax=jax.__version__)
  paths = results.write(dest, "constructions", out, preset=req.preset, seeds=Seeds(eval_data=s.seed),
                        wall_s=wall, criteria=criteria, plot=plot)
  print(results.format_criteria(read_json(paths[0])["criteria"]))
  return paths


def criteria(r: dict) -> list[Criterion]:
  out = []
  for name, entry in r["agreement"].items():
    by_dtype = entry["by_dtype"]
    if "float64" in by_dtype:
      worst = max(row["max_abs_err"] for row in by_dtype["float64"].values())
      out.append(Criterion(f"{name} vs {entry['learner']}, float64: largest |construction − learner|", worst,
                           f"≤ {FLOAT64_MAX_ABS_ERR:g} at every d", worst <= FLOAT64_MAX_ABS_ERR))
    if "float32" in by_dtype:
      worst = max(row["mspd_over_d"] for row in by_dtype["float32"].values())
      out.append(Criterion(f"{name} vs {entry['learner']}, float32: largest MSPD/d", worst,
                           f"≤ {FLOAT32_MSPD_OVER_D:g} at every d", worst <= FLOAT32_MSPD_OVER_D))
  lsa = r["lsa"]
  ratio = lsa["loss_trained"] / lsa["loss_construction"]
  out.append(Criterion("trained LSA layer's loss over the construction's", ratio, f"< {LSA_LOSS_RATIO:g}",
                       ratio < LSA_LOSS_RATIO))
  cos = min(lsa["cos_kq"], lsa["cos_pv"])
  out.append(Criterion("cosine between the trained LSA weights and the construction's (lower of W_KQ, W_PV)",
                       cos, f"> {LSA_MIN_COS:g}", cos > LSA_MIN_COS))
  return out


def readme(r: dict) -> str:
  """The agreement table: MSPD/d (over n < d) and the largest error per construction, dtype and d."""
  dims = r["meta"]["dims"]
  lines = ["| construction | target learner | dtype | " + " | ".join(
      f"d={d}: MSPD/d (n<d) · max abs err" for d in dims) + " |", "|---|---|---|" + "---|" * len(dims)]
  for name, entry in r["agreement"].items():
    for dt, by_d in entry["by_dtype"].items():
      cells = [f"{v['mspd_over_d']:.1e} ({v['mspd_over_d_underdetermined']:.1e}) · {v['max_abs_err']:.1e}"
               for v in by_d.values()]
      lines.append(f"| {name} | {entry['learner']} | {dt} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(json_path: str | Path) -> list[Path]:
  """Agreement per construction against n (and the trained model, dotted), and the error
  against the mul scale s, drawn from the JSON alone."""
  json_path = Path(json_path)
  res = read_json(json_path)
  names = list(res["agreement"])
  fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.6))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  floor = 1e-30
  for ax, name in zip(axes, names):
    entry = res["agreement"][name]
    for dt, style in (("float64", "-"), ("float32", "--")):
      for k, (d, row) in enumerate(entry["by_dtype"].get(dt, {}).items()):
        prefix = np.asarray(row["prefix"])[1:]
        spd = np.maximum(np.asarray(row["spd_over_d"])[1:], floor)
        ax.semilogy(prefix, spd, style, color=colors[k], label=f"d={d}, {dt}")
    trained = (res.get("trained_model") or {}).get(name)
    for k, (d, row) in enumerate((trained or {}).items()):
      ax.semilogy(np.asarray(row["prefix"])[1:], np.maximum(np.asarray(row["spd_over_d"])[1:], floor),
                  ":", color=colors[k], lw=2, label=f"trained, d={d}")
    ax.set_title(f"{name} construction vs {entry['learner']}")
    ax.set_xlabel("prefix length (pairs in context)")
    ax.set_ylabel("SPD / d")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  ax = axes[-1]
  for k, (name, sw) in enumerate(res["scale_sweep"].items()):
    ax.loglog(sw["scales"], np.maximum(sw["mspd_over_d"], floor), "o-", color=colors[k],
              label=f"{name} (d={sw['d']}, {sw['dtype']})")
  s = np.asarray(next(iter(res["scale_sweep"].values()))["scales"])
  ref = next(iter(res["scale_sweep"].values()))["mspd_over_d"][0] * (s / s[0]) ** 4
  ax.loglog(s, ref, "k:", label="∝ s⁴ (error ∝ s²)")
  ax.set_title("error vs mul scale s")
  ax.set_xlabel("scale s")
  ax.set_ylabel("MSPD / d")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save_figure(fig, json_path, bbox_inches=None)


STUDY = Study(
    name=NAME,
    description="Constructions: compiled SGD / GD / ridge transformers and the LSA layer against their learners",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output("constructions", "constructions", criteria, plot, readme),),
)

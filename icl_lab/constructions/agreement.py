"""How well the compiled constructions agree with their target learners, how the error falls
with the approximation scale, and the size report; markdown tables rendered from the results
JSON (`icl_lab.studies.constructions` runs the study and draws its figure).

JSON layout (figures/constructions.json):
  meta:        command, seeds, batch, n, dims, wall-clock, device, jax version.
  agreement:   {construction: {learner, params, by_dtype: {dtype: {d: {prefix, spd_over_d,
               mspd_over_d, mspd_over_d_underdetermined, max_abs_err, scale}}}}}
               spd_over_d[i] = mean over prompts of (construction − learner)² at prefix i
               (i pairs in context), divided by d.
  scale_sweep: {construction: {d, n, dtype, scales, mspd_over_d, max_abs_err}}
  lsa:         linear_attention.study(): trained vs constructed LSA layer.
  sizes:       {d: [size_of(program)...]} for the size table in experiments/README.md.
  trained_model: {construction: null}. A slot for a trained transformer's agreement with the
               same learner, filled from a trained run as {d: {prefix, spd_over_d, run}} with
               the same prefix convention; the figure draws it when present.
  criteria:    the study's checks (icl_lab.studies.constructions.criteria).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from icl_lab.analysis import learners
from icl_lab.config import TaskConfig
from icl_lab.constructions.compiler import DEFAULT_SCALE, Program, compile_program, size_of
from icl_lab.constructions.gd import gd_program, sgd_program
from icl_lab.constructions.network import scan_forward
from icl_lab.constructions.ridge import ridge_program
from icl_lab.tasks import regression

SGD_ALPHA = 0.03
GD_ALPHA = 0.02
RIDGE_LAM = 0.1

# name -> (program builder (d, n), target learner name, hyperparameters)
CONSTRUCTIONS: dict[str, tuple[Callable[[int, int], Program], str, dict[str, float]]] = {
    "sgd": (lambda d, n: sgd_program(d, n, SGD_ALPHA), f"sgd({SGD_ALPHA})", {"alpha": SGD_ALPHA}),
    "gd": (lambda d, n: gd_program(d, n, GD_ALPHA), f"gd({GD_ALPHA})", {"alpha": GD_ALPHA}),
    "ridge": (lambda d, n: ridge_program(d, n, RIDGE_LAM), f"ridge({RIDGE_LAM})", {"lam": RIDGE_LAM}),
}


def prompts(d: int, n: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Noiseless prompts from the lab's sampler (x ~ N(0, I), w ~ N(0, I)), as float32 numpy."""
  b = regression.sample_batch(TaskConfig(dim=d, num_exemplars=n), seed, 0, batch)
  return np.asarray(b.xs_BxNxD), np.asarray(b.ys_BxN)


def construction_preds(prog: Program, learner_name: str, xs_BxNxD: np.ndarray, ys_BxN: np.ndarray, *,
            dtype: str = "float64", scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(construction preds_BxN, learner preds_BxN), both computed in `dtype`."""
  with jax.enable_x64(dtype == "float64"):
    net = compile_program(prog, dtype=dtype, scale=scale)
    xs, ys = jnp.asarray(xs_BxNxD, dtype), jnp.asarray(ys_BxN, dtype)
    out_Bx2N = scan_forward(net)(regression.encode(xs, ys))
    ref_BxN = learners.preds_of(learners.get_learner(learner_name)(xs, ys))
    return np.asarray(out_Bx2N[:, 0::2], np.float64), np.asarray(ref_BxN, np.float64)


def _summary(pred_BxN: np.ndarray, ref_BxN: np.ndarray, d: int) -> dict[str, Any]:
  spd_N = ((pred_BxN - ref_BxN) ** 2).mean(0) / d
  return dict(prefix=list(range(len(spd_N))), spd_over_d=[float(v) for v in spd_N],
              mspd_over_d=float(spd_N.mean()),
              mspd_over_d_underdetermined=float(spd_N[:d].mean()),
              max_abs_err=float(np.abs(pred_BxN - ref_BxN).max()))


def agreement(name: str, d: int, n: int, *, dtype: str, batch: int, seed: int,
              scale: float | None = None) -> dict[str, Any]:
  build, learner_name, _ = CONSTRUCTIONS[name]
  xs, ys = prompts(d, n, batch, seed)
  pred, ref = construction_preds(build(d, n), learner_name, xs, ys, dtype=dtype, scale=scale)
  return dict(_summary(pred, ref, d), scale=DEFAULT_SCALE[dtype] if scale is None else scale)


def scale_sweep(name: str, d: int, n: int, scales, *, dtype: str = "float64", batch: int = 128,
                seed: int = 0) -> dict[str, Any]:
  """MSPD/d and max |error| against the learner as the mul scale s shrinks."""
  build, learner_name, _ = CONSTRUCTIONS[name]
  xs, ys = prompts(d, n, batch, seed)
  prog = build(d, n)
  rows = [_summary(*construction_preds(prog, learner_name, xs, ys, dtype=dtype, scale=s), d) for s in scales]
  return dict(d=d, n=n, dtype=dtype, batch=batch, scales=[float(s) for s in scales],
              mspd_over_d=[r["mspd_over_d"] for r in rows],
              max_abs_err=[r["max_abs_err"] for r in rows])


def size_report(d: int, n: int = 16, heads: int = 2) -> list[dict[str, Any]]:
  """Layers, heads, hidden width, MLP width and parameters (all, and nonzero) of each
  construction at (d, n)."""
  progs = [sgd_program(d, n, SGD_ALPHA), gd_program(d, n, GD_ALPHA),
           gd_program(d, n, GD_ALPHA, steps=3), ridge_program(d, n, RIDGE_LAM)]
  rows = [size_of(p, heads, nonzero=True) for p in progs]
  e = d + 1
  rows.append(dict(name="lsa", d=d, n=n, layers=1, heads=1, hidden=e, layout_rows=e, mlp_width=0,
                   params=2 * e * e, nonzero_params=d + 1, learner="gd(η/2)", width_order="O(d)",
                   layers_per_step=1))
  return rows


def size_table_markdown(dims=(2, 4, 8, 16), n: int = 16, heads: int = 2) -> str:
  lines = [f"| construction | d | layers (n = {n}) | layers per step | heads | rows used | hidden H | "
           "MLP width | parameters | nonzero |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  reports = {d: size_report(d, n, heads) for d in dims}
  for name in ("sgd", "gd", "gd3", "ridge", "lsa"):
    for d in dims:
      row = next(r for r in reports[d] if r["name"] == name)
      lines.append(f"| {name} | {d} | {row['layers']} | {row.get('layers_per_step', '-')} | "
                   f"{row['heads']} | {row['layout_rows']} | {row['hidden']} | {row['mlp_width']} | "
                   f"{row['params']:,} | {row['nonzero_params']:,} |")
  return "\n".join(lines)


def results_markdown(json_path: str) -> str:
  """The agreement, error-vs-scale and LSA tables, rendered from the results JSON."""
  with open(json_path) as f:
    res = json.load(f)
  out = ["| construction | target learner | dtype | " + " | ".join(
      f"d={d}: MSPD/d (n<d) · max abs err" for d in res["meta"]["dims"]) + " |",
         "|---|---|---|" + "---|" * len(res["meta"]["dims"])]
  for name, entry in res["agreement"].items():
    for dt, by_d in entry["by_dtype"].items():
      cells = [f"{r['mspd_over_d']:.1e} ({r['mspd_over_d_underdetermined']:.1e}) · {r['max_abs_err']:.1e}"
               for r in by_d.values()]
      out.append(f"| {name} | {entry['learner']} | {dt} | " + " | ".join(cells) + " |")
  sweeps = res["scale_sweep"]
  scales = next(iter(sweeps.values()))["scales"]
  out += ["", "| scale s | " + " | ".join(
      f"{k} (d={v['d']}, n={v['n']}, {v['dtype']}): MSPD/d · max abs err" for k, v in sweeps.items()) + " |",
          "|---|" + "---|" * len(sweeps)]
  for i, s in enumerate(scales):
    out.append(f"| {s:g} | " + " | ".join(
        f"{v['mspd_over_d'][i]:.1e} · {v['max_abs_err'][i]:.1e}" for v in sweeps.values()) + " |")
  lsa = res["lsa"]
  out += ["", "| LSA (d={d}, n={n}) | value |".format(**lsa), "|---|---|"]
  for key in ("eta_star", "loss_construction_theory", "loss_construction", "loss_trained",
              "spd_over_d_trained_vs_construction", "construction_vs_gd_max_abs_err_float32",
              "gd_pred_max_abs", "cos_kq", "cos_pv", "eta_effective",
              "rel_err_effective"):
    out.append(f"| {key} | {lsa[key]:.4g} |")
  return "\n".join(out)


def trained_agreement(fig1_json: str, n: int) -> dict[str, Any]:
  """A trained transformer's SPD/d to each construction's target learner, read from a Fig. 1
  results file (so d is that model's d), truncated to the constructions' n pairs."""
  with open(fig1_json) as f:
    fig1 = json.load(f)
  # Name the file, the preset and the commit that wrote it: a headline file is replaced when its
  # study is re-run, so the path alone would later point at another model.
  manifest_path = os.path.join(os.path.dirname(fig1_json), "MANIFEST.json")
  stem = os.path.splitext(os.path.basename(fig1_json))[0]
  commit = None
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      commit = json.load(f).get(stem, {}).get("git_commit")
  source = f"{fig1_json} (preset {fig1.get('preset')}" + (f", written at commit {commit[:7]})" if commit else ")")
  out: dict[str, Any] = {}
  for name, (_, learner_name, _) in CONSTRUCTIONS.items():
    spd = fig1["spd_over_d"].get(learner_name)
    out[name] = None if spd is None else {str(fig1["d"]): {
        "prefix": fig1["prefix_lengths"][:n], "spd_over_d": spd[:n], "run": fig1.get("run"),
        "source": source}}
  return out



"""Prefix-by-prefix comparison of a trained transformer with the reference learners."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from icl_lab.analysis import learners, metrics
from icl_lab.config import Config, TaskConfig
from icl_lab.models import transformer as model_lib
from icl_lab.tasks import regression

# Held-out prompts come from their own data seed, far from any training seed, at step 0.
EVAL_SEED = 1_000_003


def eval_batch(task_cfg: TaskConfig, num_prompts: int, seed: int = EVAL_SEED) -> regression.Batch:
  return regression.sample_batch(task_cfg, seed, 0, num_prompts, use_curriculum=False)


def model_predict_fn(model: model_lib.Transformer, token_format: str = "paper") -> Callable:
  """A jitted `(xs_BxNxD, ys_BxN) -> preds_BxN` with the learners' call signature."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def predict(state, xs_BxNxD, ys_BxN):
    return regression.predict(nnx.merge(graphdef, state), xs_BxNxD, ys_BxN, token_format)

  return functools.partial(predict, state)


def predict_in_chunks(predict_fn: Callable, xs_BxNxD, ys_BxN, chunk: int = 512) -> np.ndarray:
  out = [np.asarray(learners.preds_of(predict_fn(xs_BxNxD[i:i + chunk], ys_BxN[i:i + chunk])))
         for i in range(0, xs_BxNxD.shape[0], chunk)]
  return np.concatenate(out)


def compare(predict_fn: Callable, batch: regression.Batch, learner_names: Sequence[str], *,
            weights_prompts: int = 64, num_probes: int | None = None, seed: int = 0,
            learner_context: dict | None = None, projection_ref: str | None = "ols",
            all_projections: bool = False, lambda_star: bool = False) -> dict:
  """SPD/d, MSPD/d, ILWD, error against the truth and implicit-fit R², per prefix length.

  SPD and errors use every prompt in `batch`; the implicit weights (ILWD, R²) need
  num_probes forward passes per prompt and prefix, so they use the first `weights_prompts`.
  Learners that are linear by construction contribute their exact weights. With
  `projection_ref` among the learners (OLS, the noiseless Bayes predictor, by default; the
  Bayes ridge under noise), every other ridge learner and OLS also gets the projection a
  against it (`metrics.projection_a`): the transformer is closer to the reference than to
  that learner exactly when a < 0.5. `all_projections` adds "projections": {ref: {learner:
  {a, ci95}}} for every pair of OLS/ridge learners (so a stored record serves any reference),
  and `lambda_star` adds the effective ridge λ* (`metrics.effective_ridge`).
  """
  xs_BxNxD, ys_BxN = batch.xs_BxNxD, batch.ys_BxN
  n, d = xs_BxNxD.shape[1], xs_BxNxD.shape[2]
  key = jax.random.key(seed)
  sub = slice(0, min(weights_prompts, xs_BxNxD.shape[0]))
  preds_model_BxN = predict_in_chunks(predict_fn, xs_BxNxD, ys_BxN)
  w_model_BxNxD, r2_BxN = metrics.implicit_weights(predict_fn, xs_BxNxD[sub], ys_BxN[sub], key,
                                                   num_probes=num_probes)
  result = {
      "d": d, "prefix_lengths": list(range(n)), "num_prompts": int(xs_BxNxD.shape[0]),
      "weights_prompts": int(w_model_BxNxD.shape[0]),
      "spd_over_d": {}, "mspd_over_d": {}, "ilwd": {}, "error_vs_truth": {}, "error_ci95": {},
      "implicit_r2": {"mean": r2_BxN.mean(0).tolist(),
                      "q10": np.quantile(r2_BxN, 0.1, axis=0).tolist(),
                      "q90": np.quantile(r2_BxN, 0.9, axis=0).tolist()},
  }

  def add_error(name, preds_BxN):
    err = metrics.error_vs_truth(preds_BxN, ys_BxN, seed=seed)
    result["error_vs_truth"][name] = np.asarray(err["mean"]).tolist()
    result["error_ci95"][name] = [np.asarray(err["low"]).tolist(), np.asarray(err["high"]).tolist()]

  add_error("transformer", preds_model_BxN)
  preds_of_learner = {}
  for name in learner_names:
    learner = learners.get_learner(name, **(learner_context or {}))
    out = learner(xs_BxNxD, ys_BxN)
    preds_of_learner[name] = np.asarray(out.preds_BxN)
    spd_N = metrics.spd_over_d(preds_model_BxN, out.preds_BxN, d)
    result["spd_over_d"][name] = spd_N.tolist()
    result["mspd_over_d"][name] = metrics.mspd(spd_N, d)
    if out.weights_BxNxD is not None:
      w_BxNxD = np.asarray(out.weights_BxNxD)[sub]
    else:  # non-linear learners (k-NN) get the same implicit linear fit as the transformer
      w_BxNxD, _ = metrics.implicit_weights(learner, xs_BxNxD[sub], ys_BxN[sub], key, num_probes=num_probes)
    result["ilwd"][name] = metrics.ilwd(w_model_BxNxD, w_BxNxD).tolist()
    add_error(name, out.preds_BxN)
  linear = [n for n in preds_of_learner if n == "ols" or n.startswith("ridge(")]

  def against(ref: str) -> dict:
    """The projection a of every other OLS/ridge learner, with `ref` as the reference."""
    return {name: metrics.projection_a(preds_model_BxN, preds_of_learner[name], preds_of_learner[ref], seed=seed)
            for name in linear if name != ref and not np.array_equal(preds_of_learner[name], preds_of_learner[ref])}

  if projection_ref in preds_of_learner:
    result["projection_a"] = {name: {"ref": projection_ref, **p} for name, p in against(projection_ref).items()}
  if all_projections:
    result["projections"] = {ref: against(ref) for ref in linear}
  if lambda_star:
    result["lambda_star"] = metrics.effective_ridge(preds_model_BxN, xs_BxNxD, ys_BxN, seed=seed)
  full = {k: v["full"] for k, v in result["mspd_over_d"].items()}
  result["closest_learner"] = min(full, key=full.get)
  return result


def evaluate_run(run_dir, learner_names: Sequence[str], *, task_cfg: TaskConfig | None = None,
                 num_prompts: int = 1024, weights_prompts: int = 64, projection_ref: str | None = "ols") -> dict:
  """Loads a trained run folder and compares it with `learner_names` on held-out prompts of
  `task_cfg` (default: the task it was trained on); `projection_ref` as in `compare`."""
  return evaluate_model(Path(run_dir), learner_names, task_cfg, num_prompts=num_prompts,
                        weights_prompts=weights_prompts, projection_ref=projection_ref)


def evaluate_model(model, learner_names: Sequence[str], task: TaskConfig | None = None, *,
                   num_prompts: int = 1024, weights_prompts: int = 64, projection_ref: str | None = "ols") -> dict:
  """`compare` for a model in hand or a run folder (str or Path), on held-out prompts of `task`
  (default: a run folder's own task; a model in hand needs one)."""
  if isinstance(model, (str, os.PathLike)):
    from icl_lab.training import train

    cfg, model = train.load_model(model)
    task = task or cfg.task
  if task is None:
    raise ValueError("evaluate_model: give task= (a TaskConfig) for a model that is not a run folder")
  return compare(model_predict_fn(model, task.token_format), eval_batch(task, num_prompts), learner_names,
                 weights_prompts=weights_prompts, projection_ref=projection_ref)


def mspd_table(result: dict) -> str:
  """A short text table of MSPD/d per learner, the closest one marked."""
  rows = result["mspd_over_d"]
  best = min(rows, key=lambda k: rows[k]["full"])
  lines = [f"{'learner':16s} {'MSPD/d (all n)':>15s} {'MSPD/d (n<d)':>13s}"]
  for name, v in sorted(rows.items(), key=lambda kv: kv[1]["full"]):
    mark = "  <- closest" if name == best else ""
    lines.append(f"{name:16s} {v['full']:15.4g} {v['underdetermined']:13.4g}{mark}")
  for name, p in result.get("projection_a", {}).items():
    low, high = p["ci95"]
    verdict = (f"closer to {p['ref']}" if high < 0.5 else f"closer to {name}" if low > 0.5
               else "undecided (CI spans 0.5)")
    lines.append(f"projection a vs {name} (ref {p['ref']}): {p['a']:.3f} "
                 f"[{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] -> {verdict}")
  return "\n".join(lines)


SCREEN_LEARNERS = ("ols", "ridge(0.1)", "ridge(0.5)")


def screen(cfg, runs_dir="runs", num_prompts: int = 1024) -> dict:
  """The cheap recipe screen: train (or reuse) `cfg`, then report the projection a against
  ridge(0.1) and the MSPD/d to OLS and ridge on held-out prompts (no implicit weights)."""
  from icl_lab.training import train

  run_dir = train.train(cfg, runs_dir)
  result = evaluate_run(run_dir, SCREEN_LEARNERS, num_prompts=num_prompts, weights_prompts=1)
  done = train.read_done(run_dir)
  return {"run": run_dir.name, "seed": cfg.train.seed, "data_seed": cfg.train.data_seed,
          "steps": cfg.train.steps, "train_s": done["train_s"],
          "projection_a": result["projection_a"],
          "mspd_over_d": result["mspd_over_d"], "closest_learner": result["closest_learner"]}


def predict_at(run_dir, step: int | None = None) -> tuple[Callable, Config]:
  """A run's predictor at the checkpoint of `step` (default: the newest), and the run's config."""
  from icl_lab.training import train

  cfg, model = train.load_model(run_dir, step)
  return model_predict_fn(model, cfg.task.token_format), cfg


# Where a model sits on the ridge path, as Fig. 1, 2 and 3 and the recipe screens read it.
PATH_LEARNERS = ("ols", "ridge(0.1)")
PATH_VS = "ridge(0.1)"


def ridge_path(predict, cfg, num_prompts: int, seed: int = EVAL_SEED) -> dict[str, Any]:
  """Where a model sits on the ridge path, on `num_prompts` prompts of `seed`: MSPD/d to OLS and
  ridge(0.1), the projection a against ridge(0.1) (OLS as reference) and λ*. The same numbers as
  `evaluate.compare` gives for those learners, without its implicit weights and errors."""
  batch = eval_batch(cfg.task, num_prompts, seed=seed)
  d = cfg.task.dim
  preds_BxN = predict_in_chunks(predict, batch.xs_BxNxD, batch.ys_BxN)
  ref = {n: learners.get_learner(n)(batch.xs_BxNxD, batch.ys_BxN).preds_BxN for n in PATH_LEARNERS}
  return {"mspd_over_d": {n: metrics.mspd(metrics.spd_over_d(preds_BxN, r, d), d) for n, r in ref.items()},
          "projection_a": {PATH_VS: {"ref": "ols", **metrics.projection_a(preds_BxN, ref[PATH_VS], ref["ols"])}},
          "lambda_star": metrics.effective_ridge(preds_BxN, batch.xs_BxNxD, batch.ys_BxN)}

"""The headline study: train a model on noiseless d = 8 regression and compare it with every
reference learner (the paper's Fig. 1), plus the linearity of its predictions (Fig. 6)."""

from __future__ import annotations

import time
from pathlib import Path

from icl_lab import evaluate, learners, manifest, plotting, train
from icl_lab.config import PRESETS, Config
from icl_lab.io import write_json


def run_fig1(cfg: Config, runs_dir: str | Path = "runs", out_dir: str | Path = "figures",
             num_prompts: int = 1024, weights_prompts: int = 64) -> dict:
  out_dir = Path(out_dir)
  t0 = time.perf_counter()
  run_dir = train.train(cfg, runs_dir)
  done = train.read_done(run_dir)
  _, model = train.load_model(run_dir)
  print("evaluating against the reference learners ...", flush=True)
  t_eval = time.perf_counter()
  batch = evaluate.eval_batch(cfg.task, num_prompts)
  result = evaluate.compare(evaluate.model_predict_fn(model, cfg.task.token_format), batch,
                            learners.FIG1_LEARNERS, weights_prompts=weights_prompts)
  eval_s = time.perf_counter() - t_eval
  seeds = {"model_init": cfg.train.seed, "train_data": cfg.train.data_seed,
           "eval_data": evaluate.EVAL_SEED, "implicit_weight_probes": 0}
  train_s = done["train_s"]
  meta = {"preset": cfg.preset, "run": run_dir.name, "config": cfg.to_dict(), "train_wall_s": train_s,
          "train_steps_per_s": done["steps_per_s"], "eval_wall_s": eval_s}
  fig1 = {**meta, **result}
  customized = cfg.preset not in PRESETS or cfg != PRESETS[cfg.preset]
  stem1 = manifest.results_stem("fig1_noiseless", cfg, customized)
  write_json(out_dir / f"{stem1}.json", fig1)
  plotting.plot_fig1(out_dir / f"{stem1}.json")
  fig6 = {**meta, "d": result["d"], "prefix_lengths": result["prefix_lengths"],
          "r2_mean": result["implicit_r2"]["mean"], "r2_q10": result["implicit_r2"]["q10"],
          "r2_q90": result["implicit_r2"]["q90"], "weights_prompts": result["weights_prompts"]}
  stem6 = manifest.results_stem("fig6_linearity", cfg, customized)
  write_json(out_dir / f"{stem6}.json", fig6)
  plotting.plot_fig6(out_dir / f"{stem6}.json")
  # Wall clock of the whole study: training (possibly in an earlier, resumed or reused
  # invocation) plus this evaluation.
  wall = train_s + eval_s
  for stem in (stem1, stem6):
    manifest.record(out_dir, stem, preset=cfg.preset, seeds=seeds, wall_s=wall, run=run_dir.name,
                    this_invocation_s=round(time.perf_counter() - t0, 1))
  return fig1


def main(cfg: Config, runs_dir: str | Path = "runs", out_dir: str | Path = "figures") -> dict:
  print(f"icl-lab replicate: {train.config_summary(cfg)}", flush=True)
  result = run_fig1(cfg, runs_dir, out_dir)
  print()
  last = len(result["prefix_lengths"]) - 1
  print(f"SPD/d between the transformer and each learner, averaged over prefixes n = 0..{last} "
        f"(d = {result['d']}):")
  print(evaluate.mspd_table(result))
  print(f"\nresults and figures written to {Path(out_dir).resolve()}")
  return result

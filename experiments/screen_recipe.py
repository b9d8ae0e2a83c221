"""Screen a recipe change cheaply: the projection a against ridge(0.1) after a short run.

Trains the quick model for --steps (default 5k, curriculum over the first 40%) once per seed
with the given overrides, and appends one JSON line per seed to experiments/screens.jsonl:

  python experiments/screen_recipe.py --name excess --set train.loss_weighting=excess
"""

import argparse
import json
import sys
from pathlib import Path

from icl_lab import config
from icl_lab.io import atomic_write_text
from icl_lab.training import host


def main() -> None:
  host.use_host_devices()  # before anything imports jax
  from icl_lab.analysis import evaluate

  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="quick", choices=sorted(config.PRESETS))
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--runs-dir", default="runs")
  p.add_argument("--name", required=True, help="label of the recipe in screens.jsonl")
  p.add_argument("--steps", type=int, default=5000)
  p.add_argument("--seeds", default="0,1", help="comma-separated; each sets train.seed and train.data_seed")
  p.add_argument("--log", default="experiments/screens.jsonl")
  args = p.parse_args()
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
    base = config.apply_overrides(config.get_preset(args.preset), [
        f"train.steps={args.steps}", f"task.curriculum_steps={int(0.4 * args.steps)}", *args.overrides])
    for seed in seeds:
      cfg = config.apply_overrides(base, [f"train.seed={seed}", f"train.data_seed={seed}"])
      row = {"name": args.name, "overrides": args.overrides, **evaluate.screen(cfg, args.runs_dir)}
      a = row["projection_a"]["ridge(0.1)"]
      print(f"{args.name} seed {seed}: a = {a['a']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}], "
            f"MSPD/d to OLS {row['mspd_over_d']['ols']['full']:.4f}", flush=True)
      old = Path(args.log).read_text() if Path(args.log).exists() else ""
      atomic_write_text(args.log, old + json.dumps(row) + "\n")
  except ValueError as err:
    sys.exit(f"error: {err}")


if __name__ == "__main__":
  main()

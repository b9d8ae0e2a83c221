"""Screen a recipe change cheaply, by the projection a against ridge(0.1) (OLS as the reference).

Two measures, one JSON line per seed each:

- the default: a after a short run of the quick model (--steps, default 5k, curriculum over the
  first 40%), appended to experiments/screens.jsonl:

    python experiments/screen_recipe.py --name excess --set train.loss_weighting=excess

- `--until-a A`: training seconds until a < A on the `cpu` recipe (36k steps unless overridden),
  scoring every checkpoint and stopping at the first below A, appended to
  experiments/screens_to_a.jsonl:

    python experiments/screen_recipe.py --until-a 0.5 --name "curriculum 20%" \\
      --set task.curriculum_start_dim=2 --set task.curriculum_steps=7200

  `--from-record figures/units/RUN.json --name NAME` adds a line for a run that a study already
  trained and scored at every checkpoint (its seconds prorated from the run's training time), and
  `--table` prints the file as the markdown table of experiments/README.md.
"""

import argparse
import json
import sys
from pathlib import Path

from icl_lab import config
from icl_lab.io import atomic_write_text, read_json
from icl_lab.training import host


def append(log: str, row: dict) -> None:
  old = Path(log).read_text() if Path(log).exists() else ""
  atomic_write_text(log, old + json.dumps(row) + "\n")


def row_from_record(path: str, name: str, threshold: float) -> dict:
  """A screens_to_a line from a unit record: its λ*/a curve, seconds prorated over the steps."""
  rec = read_json(path)
  tr = rec["config"]["train"]
  curve = [{"step": c["step"], "train_s": rec["train_s"] * c["step"] / tr["steps"], "a": c["projection_a"]["a"],
            "ci95": c["projection_a"]["ci95"], "lambda_star": c["lambda_star"]} for c in rec["lambda_star_curve"]]
  below = next((p for p in curve if p["a"] < threshold), None)
  return {"name": name, "overrides": [], "source": path, "seconds": "prorated", "run": rec["run"],
          "seed": tr["seed"], "data_seed": tr["data_seed"], "steps": tr["steps"], "threshold": threshold,
          "num_prompts": rec["eval"]["num_prompts"], "curve": curve, "first_below": below}


def _at_median(p: dict) -> str:
  """Seconds at the run's median step cost: comparable between runs that shared the cores unevenly."""
  return f"{p['step'] * p['s_per_step_median']:.0f}" if "s_per_step_median" in p else "n/a"


def table(log: str) -> str:
  lines = ["| screen | overrides | seed | steps to a < A | train s to a < A (logged) | steps × median s/step | "
           "a there [95% CI] | λ* there |", "|---|---|---|---|---|---|---|---|"]
  for raw in Path(log).read_text().splitlines():
    r = json.loads(raw)
    over = " ".join(f"`{o}`" for o in r["overrides"]) or "(the cpu recipe)"
    b = r["first_below"]
    if b is None:
      last = r["curve"][-1]
      lines.append(f"| {r['name']} | {over} | {r['seed']} | not below {r['threshold']} by {last['step']} "
                   f"(a = {last['a']:.3f}) | > {last['train_s']:.0f} | {_at_median(last)} | | |")
    else:
      note = " (prorated)" if r.get("seconds") == "prorated" else ""
      lines.append(f"| {r['name']} | {over} | {r['seed']} | {b['step']} of {r['steps']} | "
                   f"{b['train_s']:.0f}{note} | {_at_median(b)} | "
                   f"{b['a']:.3f} [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}] | {b['lambda_star']:.3g} |")
  return "\n".join(lines)


def main() -> None:
  host.use_host_devices()  # before anything imports jax
  from icl_lab.analysis import evaluate, screens

  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default=None, choices=sorted(config.PRESETS),
                 help="default: quick, or cpu with --until-a")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--runs-dir", default="runs")
  p.add_argument("--name", help="label of the recipe in the log")
  p.add_argument("--steps", type=int, default=5000, help="the short run's length (not with --until-a)")
  p.add_argument("--seeds", default="0,1", help="comma-separated; each sets train.seed and train.data_seed")
  p.add_argument("--until-a", type=float, default=None, metavar="A",
                 help="train the recipe until a < A instead, scoring every checkpoint")
  p.add_argument("--max-steps", type=int, default=0, metavar="N",
                 help="with --until-a: stop at step N if a has not crossed by then (the schedule stays the "
                 "full run's; rerun without it to resume)")
  p.add_argument("--from-record", default=None, metavar="PATH", help="with --until-a: a line from a unit record")
  p.add_argument("--table", action="store_true", help="print the --until-a log as a markdown table")
  p.add_argument("--log", default=None, help="default: experiments/screens.jsonl, or screens_to_a.jsonl")
  args = p.parse_args()
  to_a = args.until_a is not None or args.table
  log = args.log or f"experiments/{'screens_to_a' if to_a else 'screens'}.jsonl"
  if args.table:
    print(table(log))
    return
  if not args.name:
    sys.exit("error: --name is required: the recipe's label in the log")
  try:
    if args.from_record:
      if args.until_a is None:
        raise ValueError("--from-record needs --until-a")
      append(log, row_from_record(args.from_record, args.name, args.until_a))
      return
    seeds = [int(s) for s in args.seeds.split(",")]
    if to_a:
      # Every checkpoint is scored before the next segment trains, so all of them are kept.
      base = config.apply_overrides(config.get_preset(args.preset or "cpu"),
                                    ["train.keep_checkpoints=1000", *args.overrides])
    else:
      base = config.apply_overrides(config.get_preset(args.preset or "quick"), [
          f"train.steps={args.steps}", f"task.curriculum_steps={int(0.4 * args.steps)}", *args.overrides])
    for seed in seeds:
      cfg = config.apply_overrides(base, [f"train.seed={seed}", f"train.data_seed={seed}"])
      if to_a:
        row = {"name": args.name, "overrides": args.overrides,
               **screens.until_a(cfg, args.runs_dir, threshold=args.until_a, max_steps=args.max_steps)}
        b, last = row["first_below"], row["curve"][-1]
        print(f"{args.name} seed {seed}: " + (f"a = {b['a']:.3f} < {args.until_a} at step {b['step']} after "
                                              f"{b['train_s']:.0f} s" if b else
                                              f"a not below {args.until_a} by step {last['step']}"),
              flush=True)
      else:
        row = {"name": args.name, "overrides": args.overrides, **evaluate.screen(cfg, args.runs_dir)}
        a = row["projection_a"]["ridge(0.1)"]
        print(f"{args.name} seed {seed}: a = {a['a']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}], "
              f"MSPD/d to OLS {row['mspd_over_d']['ols']['full']:.4f}", flush=True)
      append(log, row)
  except (ValueError, config.ConfigError) as err:
    sys.exit(f"error: {err}")


if __name__ == "__main__":
  main()

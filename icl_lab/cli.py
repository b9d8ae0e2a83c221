"""The `icl-lab` command line: train presets, replicate the headline result, redraw figures."""

from __future__ import annotations

import argparse
import json
import sys

from icl_lab import config as config_lib
from icl_lab import host


def _add_config_args(p: argparse.ArgumentParser, default_preset: str) -> None:
  p.add_argument("--preset", default=default_preset,
                 help=f"named preset ({', '.join(sorted(config_lib.PRESETS))}); default {default_preset}")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field, e.g. --set model.layers=2 (repeatable)")
  p.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")


def _config_from(args) -> config_lib.Config:
  return config_lib.apply_overrides(config_lib.get_preset(args.preset), args.overrides)


def cmd_train(args) -> None:
  from icl_lab import task_api, train

  cfgs = config_lib.expand_overrides(config_lib.get_preset(args.preset), args.overrides,
                                     task_api.ENSEMBLE_KEYS)
  for cfg in cfgs:
    print(f"training {cfg.run_name()}: {train.config_summary(cfg)}", file=sys.stderr)
  if len(cfgs) > 1:
    print(f"as one ensemble of {len(cfgs)} members", file=sys.stderr)
  for run_dir in train.train_many(cfgs, args.runs_dir):
    print(run_dir)


def cmd_presets(args) -> None:
  from icl_lab.train import config_summary

  for name, cfg in sorted(config_lib.PRESETS.items()):
    print(f"{name:8s} {config_summary(cfg)}")
    if args.verbose:
      print(json.dumps(cfg.to_dict(), indent=2))


def cmd_replicate(args) -> None:
  from icl_lab import replicate

  replicate.main(_config_from(args), runs_dir=args.runs_dir, out_dir=args.out)


def cmd_figures(args) -> None:
  from icl_lab import plotting

  drawn = plotting.redraw_all(args.out)
  for path in drawn:
    print(path)
  if not drawn:
    print(f"no results files found under {args.out}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="icl-lab", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train a preset (reuses a finished run, resumes an interrupted one); "
                     "comma-separated seeds, σ, τ, lr or weight decay train an ensemble in one jit, "
                     "e.g. --set train.seed=0,1,2,3")
  _add_config_args(p, "tiny")
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("replicate", help="train the quick model and reproduce Fig. 1 (noiseless, d = 8)")
  _add_config_args(p, "quick")
  p.add_argument("--out", default="figures", help="where results and figures go (default: figures)")
  p.set_defaults(func=cmd_replicate)

  p = sub.add_parser("figures", help="redraw every figure from its committed results JSON")
  p.add_argument("--out", default="figures")
  p.set_defaults(func=cmd_figures)

  p = sub.add_parser("presets", help="list the named presets")
  p.add_argument("-v", "--verbose", action="store_true")
  p.set_defaults(func=cmd_presets)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  host.use_host_devices()  # before anything imports jax
  try:
    args.func(args)
  except config_lib.ConfigError as err:
    print(f"icl-lab: config error: {err}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("\nicl-lab: interrupted; rerun the same command to resume from the last checkpoint",
          file=sys.stderr)
    return 130
  except Exception as err:  # noqa: BLE001 - surface our own errors as one clear line
    from icl_lab.checkpoints import CheckpointError
    from icl_lab.runlock import RunLockedError
    from icl_lab.train import TrainingError
    if isinstance(err, (TrainingError, RunLockedError, CheckpointError)):
      print(f"icl-lab: {err}", file=sys.stderr)
      return 1
    raise
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""The `icl-lab` command line: train presets, run the studies, evaluate a trained run, redraw figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icl_lab import config as config_lib
from icl_lab.training import host


def _add_config_args(p: argparse.ArgumentParser, default_preset: str) -> None:
  p.add_argument("--preset", default=default_preset,
                 help=f"named preset ({', '.join(sorted(config_lib.PRESETS))}); default {default_preset}")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field, e.g. --set model.layers=2 (repeatable)")
  p.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")


def _add_process_args(p: argparse.ArgumentParser) -> None:
  """Flags of a multi-process run (`docs/cluster.md`); on a cluster JAX detects them itself."""
  g = p.add_argument_group("multi-process (every process runs the same command)")
  g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="process 0's address (default: $JAX_COORDINATOR_ADDRESS)")
  g.add_argument("--num-processes", type=int, default=None, help="default: $JAX_NUM_PROCESSES")
  g.add_argument("--process-id", type=int, default=None, help="this process, 0-based (default: $JAX_PROCESS_ID)")


def _join_processes(args) -> None:
  """Joins the multi-process runtime a command's flags or environment name, before JAX computes."""
  from icl_lab.training import processes

  layout = processes.layout_from(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                                 getattr(args, "process_id", None))
  # train.multihost alone asks JAX to detect the cluster; that too must precede any computation.
  if layout.explicit or _asks_multihost(args):  # a processes.ProcessError is a ConfigError: one line
    processes.initialize(layout)


def _asks_multihost(args) -> bool:
  """Whether the command's preset or a --set turns train.multihost on (read before any JAX call)."""
  preset = config_lib.PRESETS.get(getattr(args, "preset", ""))
  on = bool(preset and preset.train.multihost)
  for item in getattr(args, "overrides", []):
    key, _, raw = item.partition("=")
    if key.strip() == "train.multihost":
      on = raw.strip().lower() in ("1", "true", "yes")
  return on


def _add_out_arg(p: argparse.ArgumentParser) -> None:
  p.add_argument("--out", default=None,
                 help="results folder (default: results/; a study's committed figures/ files are replaced "
                      "only with --promote)")
  p.add_argument("--fresh", action="store_true",
                 help="ignore the committed unit records of a study run in units (retrain and re-evaluate)")
  p.add_argument("--promote", action="store_true",
                 help="write a headline run over the committed figures/ files and regenerate README.md and "
                      "docs/ (default: write it to results/ and compare it with the committed file)")


def cmd_train(args) -> None:
  from icl_lab import tasks
  from icl_lab.training import processes, train

  cfgs = config_lib.expand_overrides(config_lib.get_preset(args.preset), args.overrides,
                                     tasks.ENSEMBLE_KEYS)
  say = print if processes.is_main() else (lambda *a, **k: None)  # one voice for all processes
  for cfg in cfgs:
    train.check_layout(cfg)  # before any output: an impossible layout is refused in one line
    say(f"training {cfg.run_name()}: {train.config_summary(cfg)}", file=sys.stderr)
  if len(cfgs) > 1:
    say(f"as one ensemble of {len(cfgs)} members", file=sys.stderr)
  for run_dir in train.train_many(cfgs, args.runs_dir):
    say(run_dir)


def cmd_presets(args) -> None:
  from icl_lab.training.train import config_summary

  for name, cfg in sorted(config_lib.PRESETS.items()):
    print(f"{name:8s} {config_summary(cfg)}")
    if args.verbose:
      print(json.dumps(cfg.to_dict(), indent=2))


def _run_study(name: str, args) -> None:
  import contextlib
  import io

  from icl_lab import results, studies
  from icl_lab.io import is_writer
  from icl_lab.training import processes

  req = studies.RunRequest(args.preset, tuple(args.overrides), Path(args.runs_dir),
                           None if args.out is None else Path(args.out), promote=args.promote,
                           unit=getattr(args, "unit", None), train_missing=not getattr(args, "no_train", False),
                           fresh=args.fresh)
  # One voice for all the processes of a run: the others compute the same tables silently.
  mute = processes.joined() and not processes.is_main()
  with contextlib.redirect_stdout(io.StringIO()) if mute else contextlib.nullcontext():
    for path in studies.run(name, req):
      if is_writer():
        print(path)
  if req.promote and is_writer():  # the committed files changed: so do the tables generated from them
    from icl_lab.studies import readme

    readme.run([], results.HEADLINE_DIR, check_only=False)


def cmd_run(args) -> None:
  _run_study(args.study, args)


def cmd_units(args) -> None:
  from icl_lab import results, studies
  from icl_lab.studies import units

  study = studies.get(args.study)
  if study.plan is None:
    raise config_lib.ConfigError(f"study {study.name} does not run in units; units: {studies.in_units()}")
  req = studies.RunRequest(args.preset, tuple(args.overrides), Path(args.runs_dir),
                           None if args.out is None else Path(args.out), fresh=args.fresh)
  unit_list, spec = study.plan(req)
  dest = results.destination(req.preset, study.headline_preset, req.overrides, req.out)
  for line in units.status(unit_list, spec, units.records_for(req, dest), req.runs_dir):
    print(line)


def cmd_replicate(args) -> None:
  _run_study("fig1", args)


def _fmt_time(seconds: float | None) -> str:
  if seconds is None:
    return "GPU"
  return f"~{seconds:.0f} s CPU" if seconds < 120 else f"~{seconds / 60:.0f} min CPU"


def cmd_studies(args) -> None:
  from icl_lab import results, studies

  for study in studies.STUDIES.values():
    presets = ", ".join(f"{p}{' (headline)' if p == study.headline_preset else ''} {_fmt_time(t)}"
                        for p, t in study.presets.items())
    print(f"{study.name}: {study.description}")
    print(f"  presets: {presets}")
    for base, crit in studies.status(study, args.figures).items():
      if crit is None:
        print(f"  {base}: not run")
        continue
      for c in crit:
        print(f"  {base}: {results.verdict(c)}: {c['name']} = {results.fmt_value(c['value'])} "
              f"(target {c['target']})")


def cmd_eval(args) -> None:
  import dataclasses

  from icl_lab import results
  from icl_lab.analysis import evaluate, learners
  from icl_lab.studies.base import check_learners
  from icl_lab.training import train

  run_dir = Path(args.run_dir)
  cfg = train.read_config(run_dir)  # evaluate_run loads the weights once the request is checked
  if cfg.task.kind != "regression":
    raise config_lib.ConfigError(f"{run_dir} trained task.kind={cfg.task.kind}; eval compares regression models")
  for item in args.overrides:
    key = item.split("=", 1)[0].strip()
    if not key.startswith("task.") or key.split(".", 1)[1] in FIXED_BY_MODEL:
      raise config_lib.ConfigError(
          f"eval takes task.* overrides except {', '.join('task.' + k for k in FIXED_BY_MODEL)} "
          f"(they change the model's input); got {key}")
  eval_cfg = config_lib.apply_overrides(cfg, args.overrides)
  if eval_cfg.task.num_exemplars > cfg.task.num_exemplars:
    raise config_lib.ConfigError(f"task.num_exemplars={eval_cfg.task.num_exemplars} exceeds the "
                                 f"{cfg.task.num_exemplars} pairs the model has positions for")
  task_cfg = dataclasses.replace(eval_cfg.task, curriculum_start_dim=0, curriculum_steps=0)
  names = [n.strip() for n in args.learners.split(",") if n.strip()] if args.learners else list(learners.FIG1_LEARNERS)
  check_learners(names)
  result = evaluate.evaluate_run(run_dir, names, task_cfg=task_cfg, num_prompts=args.num_prompts,
                                 weights_prompts=args.weights_prompts)
  payload = {"run": run_dir.name, "run_config": cfg.to_dict(), "eval_task": dataclasses.asdict(task_cfg),
             "overrides": list(args.overrides), **result}
  print(f"{run_dir.name} ({train.config_summary(cfg)}) on σ={task_cfg.noise_std} τ={task_cfg.weight_std} "
        f"x_cov={task_cfg.x_cov} N={task_cfg.num_exemplars}:")
  print(evaluate.mspd_table(result))
  if args.out:
    dest = results.Destination(Path(args.out).parent, "", headline=False)
    base = Path(args.out).stem
  else:
    dest = results.Destination(results.SCRATCH_DIR, results.override_tag(args.overrides), headline=False)
    base = f"eval_{run_dir.name}"
  seeds = results.Seeds((cfg.train.seed,), (cfg.train.data_seed,), evaluate.EVAL_SEED)
  path = results.write(dest, base, payload, preset=cfg.preset, seeds=seeds, wall_s=0.0, run=run_dir.name)[0]
  print(path)


# Task fields fixed by the trained model's read-in and positions.
FIXED_BY_MODEL = ("dim", "token_format", "kind")


def cmd_criteria(args) -> None:
  from icl_lab import results, studies

  for path in sorted(Path(args.figures).glob("*.json")):
    crit = studies.criteria_of(path) if path.name != "MANIFEST.json" else None
    if crit is not None:
      print(f"{path}:\n{results.format_criteria(crit)}")
  if args.write:
    for path in studies.add_criteria(args.figures):
      print(f"stored criteria in {path}")


def cmd_readme(args) -> int:
  from icl_lab.studies import readme

  return readme.run(args.docs, args.figures, args.check)


def cmd_figures(args) -> int:
  from icl_lab import studies

  drawn, failures = studies.redraw_all(args.out)
  for path in drawn:
    print(path)
  if not drawn and not failures:
    print(f"no results files found under {args.out}", file=sys.stderr)
  for msg in failures:
    print(f"icl-lab: could not redraw {msg}", file=sys.stderr)
  return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="icl-lab", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train a preset (reuses a finished run, resumes an interrupted one); "
                     "comma-separated seeds, σ, τ, lr or weight decay train an ensemble in one jit, "
                     "e.g. --set train.seed=0,1,2,3")
  _add_config_args(p, "tiny")
  _add_process_args(p)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("replicate", help="the headline study, = `icl-lab run fig1`: train a model and "
                     "reproduce Fig. 1 and Fig. 6 (noiseless, d = 8)")
  _add_config_args(p, "quick")
  _add_out_arg(p)
  p.set_defaults(func=cmd_replicate)

  p = sub.add_parser("run", help="run a study (`icl-lab studies` lists them); --set study.KEY=VALUE "
                     "changes one of its settings")
  p.add_argument("study")
  _add_config_args(p, "quick")
  _add_out_arg(p)
  p.add_argument("--unit", default=None, help="a study run in units: train only this unit (its index, e.g. "
                 "$SLURM_ARRAY_TASK_ID, or its run name; `icl-lab units STUDY` lists them)")
  p.add_argument("--no-train", action="store_true",
                 help="assemble the results from the unit records present; train nothing")
  _add_process_args(p)
  p.set_defaults(func=cmd_run)

  p = sub.add_parser("units", help="list a study's units (one model or ensemble each) and whether each has a "
                     "record, a trained run or neither")
  p.add_argument("study")
  _add_config_args(p, "quick")
  p.add_argument("--out", default=None, help="results folder whose units/ records count (default: the results rule)")
  p.add_argument("--fresh", action="store_true", help="ignore the committed unit records")
  p.set_defaults(func=cmd_units)

  p = sub.add_parser("studies", help="list the studies, their presets and the criteria of their committed results")
  p.add_argument("--figures", default="figures", help="folder of the committed results (default: figures)")
  p.set_defaults(func=cmd_studies)

  p = sub.add_parser("eval", help="evaluate a trained run folder against the reference learners, "
                     "on its own task or another (--set task.noise_std=0.5, --set task.x_cov=skewed)")
  p.add_argument("run_dir")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="task.KEY=VALUE")
  p.add_argument("--learners", default=None, help="comma-separated learner names (default: Fig. 1's)")
  p.add_argument("--num-prompts", type=int, default=1024)
  p.add_argument("--weights-prompts", type=int, default=64, help="prompts whose implicit weights are fitted")
  p.add_argument("--out", default=None, help="results JSON path (default: results/eval_<run>[...].json)")
  p.set_defaults(func=cmd_eval)

  p = sub.add_parser("figures", help="redraw every figure from its results JSON")
  p.add_argument("--out", default="figures")
  p.set_defaults(func=cmd_figures)

  p = sub.add_parser("criteria", help="print each results file's criteria, computed from its own data; "
                     "--write stores them in the files (changing no other key)")
  p.add_argument("--figures", default="figures")
  p.add_argument("--write", action="store_true")
  p.set_defaults(func=cmd_criteria)

  p = sub.add_parser("readme", help="rewrite the <!-- results:NAME --> sections of README.md and docs/*.md "
                     "from the committed JSON")
  p.add_argument("docs", nargs="*", help="files to rewrite (default: README.md and docs/*.md)")
  p.add_argument("--figures", default="figures")
  p.add_argument("--check", action="store_true", help="only list stale sections; exit 1 if any")
  p.set_defaults(func=cmd_readme)

  p = sub.add_parser("presets", help="list the named presets")
  p.add_argument("-v", "--verbose", action="store_true")
  p.set_defaults(func=cmd_presets)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  host.use_host_devices()  # before anything imports jax
  try:
    _join_processes(args)
    rc = args.func(args)
  except config_lib.ConfigError as err:
    print(f"icl-lab: config error: {err}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("\nicl-lab: interrupted; rerun the same command to resume from the last checkpoint",
          file=sys.stderr)
    return 130
  except Exception as err:  # noqa: BLE001 - surface our own errors as one clear line
    from icl_lab.training.checkpoints import CheckpointError
    from icl_lab.training.runlock import RunLockedError
    from icl_lab.training.train import TrainingError
    # FloatingPointError: the token, link and pair trainers' non-finite loss or state, whose
    # messages name the step and the fix.
    if isinstance(err, (TrainingError, RunLockedError, CheckpointError, FloatingPointError)):
      print(f"icl-lab: {err}", file=sys.stderr)
      return 1
    raise
  return rc or 0


if __name__ == "__main__":
  sys.exit(main())

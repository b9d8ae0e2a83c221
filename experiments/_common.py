"""Argument parsing shared by the figure scripts: a preset, dotted overrides, folders."""

from __future__ import annotations

import argparse

from icl_lab import config, host

host.use_host_devices()  # before anything imports jax


def parser(doc: str, default_preset: str = "quick") -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default=default_preset, choices=sorted(config.PRESETS))
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--runs-dir", default="runs")
  p.add_argument("--out", default="figures")
  return p


def base_config(args, figure_overrides: dict[str, list[str]] | None = None) -> config.Config:
  """The preset, then the figure's own per-preset overrides, then the user's."""
  extra = (figure_overrides or {}).get(args.preset, [])
  return config.apply_overrides(config.get_preset(args.preset), [*extra, *args.overrides])


def run_figure(doc: str, figure_overrides: dict[str, list[str]], name: str, study) -> None:
  """Parses the command line and runs `study(base_config, results_stem, runs_dir=, out_dir=)`."""
  import sys

  from icl_lab import manifest

  args = parser(doc).parse_args()
  try:
    base = base_config(args, figure_overrides)
    stem = manifest.results_stem(name, base, customized=bool(args.overrides))
    study(base, stem, runs_dir=args.runs_dir, out_dir=args.out)
  except ValueError as err:  # ConfigError and bad learner names are ValueErrors
    sys.exit(f"error: {err}")

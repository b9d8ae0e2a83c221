"""Argument parsing shared by the figure scripts: a preset, dotted overrides, folders."""

from __future__ import annotations

import argparse

from icl_lab import config


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

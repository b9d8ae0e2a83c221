"""Training many configs at once: those of one shape train together as one vmapped ensemble."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from icl_lab.config import Config
from icl_lab.training import train


def with_fields(cfg: Config, section: str, **changes) -> Config:
  """`cfg` with fields of one section replaced (no validation, no preset change)."""
  return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def train_grouped(cfgs: Sequence[Config], runs_dir) -> tuple[list[Path], float]:
  """Trains the configs, those of one shape together as an ensemble (each member resumes or is
  reused); returns their folders, in order, and the training wall time (each member counts
  its ensemble's time over K, so the sum is the time spent)."""
  groups: dict[str, list[int]] = {}
  for i, cfg in enumerate(cfgs):
    groups.setdefault(train.ensemble_key(cfg), []).append(i)
  run_dirs: list[Path] = [Path()] * len(cfgs)
  for g, idx in enumerate(groups.values()):
    members = [cfgs[i] for i in idx]
    print(f"[{g + 1}/{len(groups)}] {train.config_summary(members[0])}, "
          f"{len(members)} model{'s' * (len(members) > 1)} in one ensemble", flush=True)
    for i, run_dir in zip(idx, train.train_many(members, runs_dir)):
      run_dirs[i] = run_dir
  return run_dirs, sum(train.train_seconds(d) for d in run_dirs)

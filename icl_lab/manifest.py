"""MANIFEST.json beside each results folder: how each results file was produced."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from icl_lab.io import read_json, write_json


@functools.cache
def git_commit() -> str:
  """HEAD's hash, with '+dirty' when the lab's code differs from it. Read once per process and
  cached: a study calls it when it starts, so a long study records the code it started with
  even if commits land meanwhile. Importing this module runs no subprocess."""
  root = Path(__file__).resolve().parent.parent
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "icl_lab", "experiments"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return head + ("+dirty" if dirty else "")


def device_description() -> str:
  import jax  # only when a results file is written

  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  return f"{dev.platform}:{dev.device_kind} x{jax.device_count()} (host {cpu}, {os.cpu_count()} cores)"


def command_line() -> str:
  argv = list(sys.argv)
  argv[0] = Path(argv[0]).name if argv[0].endswith("icl-lab") else argv[0]
  return shlex.join(argv)


def record(out_dir: str | Path, name: str, *, preset: str, seeds: dict[str, Any], wall_s: float,
           **extra: Any) -> None:
  """Adds or replaces the entry for results `name` (a stem under out_dir)."""
  path = Path(out_dir) / "MANIFEST.json"
  manifest = read_json(path) if path.exists() else {}
  manifest[name] = {
      "command": command_line(), "preset": preset, "git_commit": git_commit(), "seeds": seeds,
      "wall_clock_s": round(wall_s, 1), "device": device_description(),
      "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra,
  }
  write_json(path, dict(sorted(manifest.items())))

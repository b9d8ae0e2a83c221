"""Atomic file writes: a reader (or a kill) never sees a half-written results file."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes to a temporary file in the same folder, fsyncs, then renames over `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def is_writer() -> bool:
  """False in each process of a multi-process run but process 0, which alone writes results
  (all processes compute them). True wherever JAX is not in use."""
  jax = sys.modules.get("jax")
  return jax is None or jax.process_index() == 0


def write_json(path: str | os.PathLike, payload: Any) -> None:
  atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
  return json.loads(Path(path).read_text())

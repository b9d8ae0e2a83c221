"""The one results writer, and the one rule for where results go.

A study's headline results (its headline preset, no overrides) are the committed files in
`figures/`. Every other run (a smoke preset, another preset, any `--set`) goes to the
git-ignored `results/` folder under a stem that names the preset (and a hash of the
overrides), and is refused in `figures/` even when asked for, so no such run can overwrite a
committed figure. One call writes the JSON (atomically, with the study's criteria computed from
that same payload), the PNG and PDF drawn from it, and the MANIFEST.json entry beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icl_lab import manifest
from icl_lab.config import ConfigError
from icl_lab.io import write_json

HEADLINE_DIR = Path("figures")
SCRATCH_DIR = Path("results")
_REPO_FIGURES = Path(__file__).resolve().parent.parent / "figures"


@dataclasses.dataclass(frozen=True)
class Seeds:
  """Every seed behind a results file, in one schema for every study."""

  model_init: tuple[int, ...] = ()
  train_data: tuple[int, ...] = ()
  eval_data: int = 0  # the held-out prompts (or probe data) the results are measured on
  other: tuple[tuple[str, int], ...] = ()  # study-specific seeds, e.g. (("probe_init", 0),)

  def to_dict(self) -> dict[str, Any]:
    return {"model_init": [int(s) for s in self.model_init], "train_data": [int(s) for s in self.train_data],
            "eval_data": int(self.eval_data), "other": {k: int(v) for k, v in self.other}}


@dataclasses.dataclass(frozen=True)
class Criterion:
  """One check of a result against its target, computed from the results file's own data."""

  name: str
  value: Any
  target: str
  met: bool

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "value": self.value, "target": self.target, "met": bool(self.met)}


@dataclasses.dataclass(frozen=True)
class Destination:
  """Where one run's results files go: a folder and the suffix every stem gets there."""

  folder: Path
  suffix: str
  headline: bool

  def path(self, base: str) -> Path:
    return self.folder / f"{base}{self.suffix}.json"


def is_customized(overrides: Sequence[str]) -> bool:
  """A run is customised exactly when it was given overrides (`--set`)."""
  return bool(overrides)


def override_tag(overrides: Sequence[str]) -> str:
  """"" without overrides, else "-custom-<hash of the sorted overrides>"."""
  if not is_customized(overrides):
    return ""
  return "-custom-" + hashlib.sha256(json.dumps(sorted(overrides)).encode()).hexdigest()[:8]


def destination(preset: str, headline_preset: str, overrides: Sequence[str] = (),
                out: str | Path | None = None) -> Destination:
  """The rule: the headline preset without overrides writes `<base>` to figures/; anything else
  writes `<base>_<preset>` (plus `-custom-<hash>` with overrides) to results/. `out` replaces
  the folder (never the stem) and may not be figures/ for a non-headline run."""
  headline = preset == headline_preset and not is_customized(overrides)
  suffix = "" if headline else f"_{preset}{override_tag(overrides)}"
  folder = Path(out) if out is not None else (HEADLINE_DIR if headline else SCRATCH_DIR)
  dest = Destination(folder, suffix, headline)
  check(dest)
  return dest


def is_headline_folder(folder: str | Path) -> bool:
  folder = Path(folder).resolve()
  return folder in (HEADLINE_DIR.resolve(), _REPO_FIGURES)


def check(dest: Destination) -> None:
  """Refuses, before any work is done, a non-headline run aimed at the committed figures."""
  if not dest.headline and is_headline_folder(dest.folder):
    raise ConfigError(f"only a study's headline preset, without overrides, writes to {HEADLINE_DIR}/; "
                      f"this run's results go to {SCRATCH_DIR}/ (or another --out)")


def write(dest: Destination, base: str, payload: dict[str, Any], *, preset: str, seeds: Seeds,
          wall_s: float, criteria: Callable[[dict], Sequence[Criterion]] | None = None,
          plot: Callable[[Path], Sequence[Path]] | None = None, **manifest_extra: Any) -> list[Path]:
  """Writes `<base><suffix>.json` (with `criteria` computed from the payload), its figure, and
  its MANIFEST.json entry; returns the paths written."""
  check(dest)
  path = dest.path(base)
  if criteria is not None:
    payload = {**payload, "criteria": [c.to_dict() for c in criteria(payload)]}
  write_json(path, payload)
  paths = [path] + ([Path(p) for p in plot(path)] if plot is not None else [])
  manifest.record(dest.folder, path.stem, preset=preset, seeds=seeds.to_dict(), wall_s=wall_s,
                  **manifest_extra)
  return paths


def format_criteria(criteria: Sequence[Mapping[str, Any]]) -> str:
  """One line per criterion: met / missed, name, value and target."""
  lines = []
  for c in criteria:
    value = c["value"]
    shown = f"{value:.4g}" if isinstance(value, float) else "null" if value is None else str(value)
    lines.append(f"{'met' if c['met'] else 'missed':6s} {c['name']}: {shown} (target: {c['target']})")
  return "\n".join(lines)

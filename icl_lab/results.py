"""The one results writer, and the one rule for where results go.

A study's headline results (its headline preset, no overrides) are the committed files in
`figures/`. Re-running the headline writes the same stem to the git-ignored `results/` and is
compared with the committed file; only `--promote` replaces the committed file. Every other run
(a smoke preset, another preset, any `--set`) goes to `results/` under a stem that names the
preset (and a hash of the overrides), and is refused in `figures/` even when asked for, so no such
run can overwrite a committed figure. One call writes the JSON (atomically, with the study's criteria computed from
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
from icl_lab.io import is_writer, read_json, write_json

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
  # The point estimate meets the target but its interval does not exclude the other side of zero:
  # never met (scoreboards count it as not met), shown as "inconclusive". Stored only when set, so
  # every other study's files keep their four keys.
  inconclusive: bool = False

  def to_dict(self) -> dict[str, Any]:
    out = {"name": self.name, "value": self.value, "target": self.target, "met": bool(self.met)}
    if self.inconclusive:
      out["inconclusive"] = True
    return out


def verdict(c: Criterion | Mapping[str, Any]) -> str:
  """"met", "missed" or "inconclusive", of a Criterion or its stored dict (old files lack the key)."""
  met, inconclusive = (c.met, c.inconclusive) if isinstance(c, Criterion) else (c["met"], c.get("inconclusive"))
  return "met" if met else "inconclusive" if inconclusive else "missed"


def directional(name: str, value: Any, target: str, holds: bool, intervals: Sequence[Any],
                directions: Sequence[int]) -> Criterion:
  """A criterion that compares point estimates ("A falls", "ΔF < 0"): met only when the point
  estimate `holds` and every 95% interval of a difference lies on its stated side of zero
  (`directions`: +1 above, −1 below). A point estimate on the right side whose interval reaches
  zero, or that has no interval, is inconclusive; one on the wrong side is missed."""
  target = f"{target}, 95% interval excluding 0"
  if not holds:
    return Criterion(name, value, target, False)
  clear = all(ci is not None and (ci[0] > 0 if d > 0 else ci[1] < 0)
              for ci, d in zip(intervals, directions, strict=True))
  return Criterion(name, value, target, clear, inconclusive=not clear)


@dataclasses.dataclass(frozen=True)
class Destination:
  """Where one run's results files go: a folder and the suffix every stem gets there."""

  folder: Path
  suffix: str
  headline: bool  # the headline preset without overrides (its stem is the committed file's)
  promote: bool = False  # ... written to figures/, replacing the committed file

  @property
  def reproduces(self) -> bool:
    """A headline run kept beside, not over, the committed file: compare the two."""
    return self.headline and not is_headline_folder(self.folder)

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
                out: str | Path | None = None, promote: bool = False) -> Destination:
  """The rule: the headline preset without overrides writes `<base>` to results/ (to figures/
  with `promote`, replacing the committed file); anything else writes `<base>_<preset>` (plus
  `-custom-<hash>` with overrides) to results/. `out` replaces the folder (never the stem) and
  may not be figures/ for a non-headline run."""
  headline = preset == headline_preset and not is_customized(overrides)
  if promote and not headline:
    raise ConfigError(f"--promote replaces a committed headline file; only the study's headline preset "
                      f"({headline_preset}) without --set can be promoted")
  if promote and out is not None and not is_headline_folder(out):
    raise ConfigError(f"--promote writes to {HEADLINE_DIR}/; drop --out {out}")
  suffix = "" if headline else f"_{preset}{override_tag(overrides)}"
  folder = Path(out) if out is not None else (HEADLINE_DIR if promote else SCRATCH_DIR)
  dest = Destination(folder, suffix, headline, promote=promote or (headline and is_headline_folder(folder)))
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
    payload = {**payload, "criteria": [c.to_dict() for c in criteria_for(payload, criteria)]}
  if not is_writer():  # another process of this run writes the same files
    return [path]
  write_json(path, payload)
  paths = [path] + ([Path(p) for p in plot(path)] if plot is not None else [])
  manifest.record(dest.folder, path.stem, preset=preset, seeds=seeds.to_dict(), wall_s=wall_s,
                  **manifest_extra)
  return paths


def criteria_for(payload: dict[str, Any], criteria: Callable[[dict], Sequence[Criterion]]) -> list[Criterion]:
  """A study's criteria of a payload, or, when it was assembled with unit records missing
  (`missing_units`), one criterion that says so and is not met: a partial study is never judged."""
  gone = payload.get("missing_units") or []
  if not gone:
    return list(criteria(payload))
  # `missing_units` names models (run names); a unit can hold several (an ensemble), so the count
  # is of models. Files written before `num_models` existed had one model per unit.
  total = payload.get("num_models", payload.get("num_units", len(gone)))
  return [Criterion("models with an evaluation record (incomplete: the study's own criteria are not judged)",
                    f"{total - len(gone)} of {total}", f"all {total}", False)]


def fmt_value(value: Any) -> str:
  """A criterion's value for people: floats (also inside lists and dicts) to 4 significant digits."""
  if isinstance(value, float):
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(fmt_value(v) for v in value) + "]"
  if isinstance(value, Mapping):
    return "{" + ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items()) + "}"
  return "null" if value is None else str(value)


def write_and_print(dest: Destination, base: str, payload: dict[str, Any], *, wall_s: float,
                    **kwargs: Any) -> list[Path]:
  """`write`, then print the written file's criteria and the wall clock."""
  paths = write(dest, base, payload, wall_s=wall_s, **kwargs)
  print(format_criteria(read_json(paths[0])["criteria"]))
  print(f"({wall_s:.0f} s)")
  return paths


def format_criteria(criteria: Sequence[Mapping[str, Any]]) -> str:
  """One line per criterion: met / missed / inconclusive, name, value and target."""
  return "\n".join(f"{verdict(c):12s} {c['name']}: {fmt_value(c['value'])} (target: {c['target']})"
                   for c in criteria)

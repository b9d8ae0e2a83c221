"""What every study is made of: its presets and settings, a run function, and per results file
the criteria, the figure and the README table, all computed from the results JSON alone."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from icl_lab import config as config_lib
from icl_lab.config import ConfigError
from icl_lab.results import Criterion, Destination

# `--set study.<field>=value` sets a field of the study's settings; every other key is a
# config override (`section.key=value`).
STUDY_PREFIX = "study."


@dataclasses.dataclass(frozen=True)
class RunRequest:
  """One invocation of a study: a preset, overrides, and where runs and results go."""

  preset: str
  overrides: tuple[str, ...] = ()
  runs_dir: Path = Path("runs")
  out: Path | None = None  # None: the results rule (results/; figures/ only with promote)
  promote: bool = False  # a headline run replaces the committed files in figures/
  unit: str | None = None  # a study run in units: train only this one (index or run name)
  train_missing: bool = True  # False: assemble from the unit records present, train nothing
  fresh: bool = False  # ignore the committed unit records (retrain and re-evaluate)

  @property
  def config_overrides(self) -> list[str]:
    return [o for o in self.overrides if not o.strip().startswith(STUDY_PREFIX)]

  @property
  def study_overrides(self) -> list[str]:
    return [o.strip()[len(STUDY_PREFIX):] for o in self.overrides if o.strip().startswith(STUDY_PREFIX)]


@dataclasses.dataclass(frozen=True)
class Output:
  """One results file of a study: its stem, criteria, figure and README table."""

  base: str  # stem of the headline file, e.g. "fig1_noiseless"
  section: str  # README marker name: <!-- results:SECTION --> ... <!-- /results:SECTION -->
  criteria: Callable[[dict], list[Criterion]]
  plot: Callable[[Path], list[Path]]
  readme: Callable[[dict], str]
  # The numbers a reproduction is compared on, beside the criteria: name -> (value, 95% interval
  # or None). None: the criteria's values alone.
  key_numbers: Callable[[dict], dict[str, tuple[float, tuple[float, float] | None]]] | None = None


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  description: str
  presets: Mapping[str, float | None]  # preset -> expected CPU seconds (None: needs a GPU)
  headline_preset: str
  run: Callable[[RunRequest, Destination], list[Path]]  # the registry picks the destination
  outputs: tuple[Output, ...]
  # A study run in units: request -> (its units, the evaluation each record must hold).
  plan: Callable[[RunRequest], tuple[list, Any]] | None = None

  @property
  def results_stems(self) -> tuple[str, ...]:
    return tuple(o.base for o in self.outputs)


S = TypeVar("S")


def settings_for(study: str, by_preset: Mapping[str, S], req: RunRequest) -> S:
  """The study's settings for `req.preset`, with the request's `study.*` overrides applied."""
  if req.preset not in by_preset:
    raise ConfigError(f"study {study} has no preset {req.preset!r}; accepted: {', '.join(by_preset)}")
  settings = by_preset[req.preset]
  hints = typing.get_type_hints(type(settings))
  # A study whose settings carry no `config_overrides` builds its models itself, so a model.* or
  # train.* key would be silently ignored: refuse it instead.
  if req.config_overrides and "config_overrides" not in hints:
    raise ConfigError(f"study {study} takes study.* keys only, not {', '.join(req.config_overrides)}")
  for item in req.study_overrides:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep:
      raise ConfigError(f"override study.{item!r} must look like study.key=value")
    if key not in hints or key == "config_overrides":
      accepted = ", ".join(f"study.{k}" for k in hints if k != "config_overrides")
      raise ConfigError(f"unknown key study.{key} for study {study}; accepted: {accepted}")
    settings = dataclasses.replace(settings, **{key: _parse(f"study.{key}", raw.strip(), hints[key])})
  return settings


def settings_record(settings) -> dict[str, Any]:
  """A study's settings as its results file stores them: every field but `cpu_s` (a machine's
  timing estimate, not part of what was run)."""
  return {k: v for k, v in dataclasses.asdict(settings).items() if k != "cpu_s"}


def _parse(key: str, raw: str, typ: Any) -> Any:
  origin, args = typing.get_origin(typ), typing.get_args(typ)
  if origin is tuple:
    return tuple(_parse(key, v.strip(), args[0]) for v in raw.split(",") if v.strip())
  if origin in (typing.Union, types.UnionType) and type(None) in args:
    if raw.lower() in ("", "none", "null"):
      return None
    return _parse(key, raw, next(a for a in args if a is not type(None)))
  try:
    if typ is bool:
      if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError
      return raw.lower() in ("1", "true", "yes")
    if typ in (int, float, str):
      return typ(raw)
  except ValueError:
    raise ConfigError(f"{key}={raw!r} is not a {typ.__name__}") from None
  raise ConfigError(f"{key} cannot be set from the command line")


def build_config(preset: str, *override_lists: Sequence[str]) -> config_lib.Config:
  """The named preset with the study's overrides, then the user's, applied in order."""
  return config_lib.apply_overrides(config_lib.get_preset(preset), [o for lst in override_lists for o in lst])


def fmt(value: float | None, digits: int = 3) -> str:
  """A number for a results table: 3 significant digits, "n/a" for missing."""
  return "n/a" if value is None else f"{value:.{digits}g}"


def check_learners(names: Sequence[str]) -> None:
  """Unknown learner names fail as config errors before any training."""
  from icl_lab.analysis import learners

  for name in names:
    try:
      learners.get_learner(name)
    except ValueError as err:
      raise ConfigError(f"study learner {name!r}: {err}") from None

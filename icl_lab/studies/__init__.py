"""The registry of studies: each maps a name to its presets, run, criteria, figures and README
tables (`Study`). `icl-lab studies` lists them, `icl-lab run NAME` runs one."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from icl_lab import results
from icl_lab.config import ConfigError
from icl_lab.io import read_json, write_json
from icl_lab.results import HEADLINE_DIR
from icl_lab.studies import (
  constructions,
  fig1,
  fig2,
  fig3,
  fig4,
  infusion,
  kg_cone,
  kg_in_context,
  kg_phase,
  kg_stitching,
  kg_transformer,
  kg_universality,
  knowledge_capacity,
  knowledge_entropy,
)
from icl_lab.studies.base import Output, RunRequest, Study
from icl_lab.studies.plotting import plt

STUDIES: dict[str, Study] = {s.name: s for s in (fig1.STUDY, fig2.STUDY, fig3.STUDY, fig4.STUDY,
                                                 constructions.STUDY, knowledge_entropy.STUDY,
                                                 knowledge_capacity.STUDY, kg_phase.STUDY, kg_universality.STUDY,
                                                 kg_stitching.STUDY, kg_cone.STUDY, kg_transformer.STUDY,
                                                 kg_in_context.STUDY,
                                                 infusion.STUDY)}
# The module of each study, for its `configs(preset)` (every model it trains).
MODULES = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "constructions": constructions,
           "knowledge_entropy": knowledge_entropy, "knowledge_capacity": knowledge_capacity, "kg_phase": kg_phase,
           "kg_universality": kg_universality, "kg_stitching": kg_stitching, "kg_cone": kg_cone,
           "kg_transformer": kg_transformer, "kg_in_context": kg_in_context,
           "infusion": infusion}

__all__ = ["MODULES", "STUDIES", "Output", "RunRequest", "Study", "get", "output_for", "redraw_all", "run"]


def get(name: str) -> Study:
  if name not in STUDIES:
    raise ConfigError(f"unknown study {name!r}; accepted: {', '.join(STUDIES)}")
  return STUDIES[name]


def output_for(stem: str) -> tuple[Study, Output] | None:
  """The study and results file a stem belongs to: `<base>` or `<base>_<anything>`."""
  for study in STUDIES.values():
    for out in study.outputs:
      if stem == out.base or stem.startswith(out.base + "_"):
        return study, out
  return None


def in_units() -> str:
  """The names of the studies that run in units, for the messages that refuse the others."""
  return ", ".join(s.name for s in STUDIES.values() if s.plan)


def run(name: str, req: RunRequest) -> list[Path]:
  from icl_lab import manifest

  study = get(name)
  if study.plan is None:  # --unit, --no-train and --fresh mean nothing here: refuse, never ignore
    used = [flag for flag, on in (("--unit", req.unit is not None), ("--no-train", not req.train_missing),
                                  ("--fresh", req.fresh)) if on]
    if used:
      raise ConfigError(f"{'/'.join(used)}: study {name} does not run in units (those that do: {in_units()}); "
                        f"drop the flag to run it whole")
  dest = results.destination(req.preset, study.headline_preset, req.overrides, req.out, promote=req.promote)
  manifest.git_commit()  # read now: the manifest records the code the study started with
  paths = study.run(req, dest)
  if dest.reproduces:
    from icl_lab.studies import compare

    for out in study.outputs:
      new, committed = dest.path(out.base), HEADLINE_DIR / f"{out.base}.json"
      if new.exists() and committed.exists():
        print(compare.render(out, read_json(new), read_json(committed), new, committed))
  return paths


def criteria_of(path: str | Path) -> list[dict[str, Any]] | None:
  """The criteria of a results file, computed from its own data (None: no study owns it)."""
  found = output_for(Path(path).stem)
  if found is None:
    return None
  payload = read_json(path)
  return [c.to_dict() for c in results.criteria_for(payload, found[1].criteria)]


def status(study: Study, folder: str | Path = HEADLINE_DIR) -> dict[str, list[dict[str, Any]] | None]:
  """Per results stem: the criteria of its committed file, or None when it has not been run."""
  out = {}
  for base in study.results_stems:
    path = Path(folder) / f"{base}.json"
    out[base] = criteria_of(path) if path.exists() else None
  return out


def add_criteria(folder: str | Path = HEADLINE_DIR) -> list[Path]:
  """Stores each results file's `criteria` (computed from its own data) in it, changing no other
  key: the migration of results written before criteria existed. Returns the files changed."""
  changed = []
  for path in sorted(Path(folder).glob("*.json")):
    crit = criteria_of(path) if path.name != "MANIFEST.json" else None
    if crit is None:
      continue
    payload = read_json(path)
    if payload.get("criteria") == crit:
      continue
    payload["criteria"] = crit  # replaces in place, or appends as the last key
    write_json(path, payload)
    changed.append(path)
  return changed


def redraw_all(out_dir: str | Path = "figures", stream=None) -> tuple[list[Path], list[str]]:
  """Redraws every figure whose results JSON is in `out_dir`; no training, no evaluation.

  Each file is drawn on its own: a broken results file or study is reported and the others are
  still drawn. Returns (paths drawn, one message per failure).
  """
  stream = stream or sys.stderr
  drawn: list[Path] = []
  failures: list[str] = []
  for json_path in sorted(Path(out_dir).glob("*.json")):
    if json_path.name == "MANIFEST.json":
      continue
    found = output_for(json_path.stem)
    if found is None:
      continue
    try:
      drawn += [Path(p) for p in found[1].plot(json_path)]
    except Exception as err:  # noqa: BLE001 - one broken figure must not stop the others
      plt.close("all")
      failures.append(f"{json_path}: {type(err).__name__}: {err}")
      traceback.print_exc(file=stream)
  return drawn, failures

"""icl_lab: a JAX lab for studying which learning algorithm in-context learning implements.

A short surface for notebooks (imported on first use, so `import icl_lab` stays cheap)::

  import icl_lab as il
  cfg, model = il.load_run("runs/cpu-4c1d1c8a6f", step=20_000)
  res = il.evaluate(model, ["ols", "ridge(0.1)", "gd(0.02)"], task=il.replace(cfg.task, noise_std=0.25))
  il.plot_curves(res)          # SPD/d against n, one curve per learner
  print(il.mspd_table(res))

The packages: `tasks` (what is trained), `models`, `training`, `analysis` (what is measured),
`constructions` (hand-built weights) and `studies` (the paper's figures and the knowledge studies).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings

__version__ = "0.1.0"

replace = dataclasses.replace  # il.replace(cfg.task, noise_std=0.25): a task variant

# name -> (module, attribute); attribute None means the module itself.
_SURFACE = {
    "load_run": ("icl_lab.training.train", "load_model"),
    "get_preset": ("icl_lab.config", "get_preset"),
    "apply_overrides": ("icl_lab.config", "apply_overrides"),
    "evaluate": ("icl_lab.analysis.evaluate", "evaluate_model"),
    "mspd_table": ("icl_lab.analysis.evaluate", "mspd_table"),
    "plot_curves": ("icl_lab.studies.plotting", "plot_result"),
    "get_learner": ("icl_lab.analysis.learners", "get_learner"),
}

# Module names of the flat layout before the packages, importable with a DeprecationWarning for
# one release: `from icl_lab import metrics` still works, `import icl_lab.metrics` does not.
# `tasks` (now the package of task kinds; the prompts are `tasks.regression`) and `evaluate` (now
# the function below; the module is `analysis.evaluate`) changed meaning.
_MOVED = {
    "model": "icl_lab.models.transformer", "task_api": "icl_lab.tasks", "train": "icl_lab.training.train",
    "token_lm": "icl_lab.tasks.bigram", "fact_world": "icl_lab.tasks.fact_world",
    "ensembles": "icl_lab.training.ensembles", "checkpoints": "icl_lab.training.checkpoints",
    "runlock": "icl_lab.training.runlock", "memory": "icl_lab.training.memory", "host": "icl_lab.training.host",
    "progress": "icl_lab.training.progress", "learners": "icl_lab.analysis.learners",
    "metrics": "icl_lab.analysis.metrics", "probes": "icl_lab.analysis.probes",
    "knowledge_entropy": "icl_lab.analysis.knowledge_entropy",
    "plotting": "icl_lab.studies.plotting",
}

__all__ = ["__version__", "replace", *_SURFACE]


def __getattr__(name: str):
  if name in _SURFACE:
    module, attr = _SURFACE[name]
    return getattr(importlib.import_module(module), attr)
  if name in _MOVED:
    warnings.warn(f"icl_lab.{name} moved to {_MOVED[name]}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=2)
    return importlib.import_module(_MOVED[name])
  raise AttributeError(f"module 'icl_lab' has no attribute {name!r}")

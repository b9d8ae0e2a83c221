"""What a run trains on. `base` holds the Task protocol and the ensemble `Member`; each task kind
is one module (regression prompts, the bigram LM, the fact world) and one line in `KINDS`."""

from __future__ import annotations

from icl_lab.config import Config
from icl_lab.tasks import bigram, fact_world, infusion, regression
from icl_lab.tasks.base import ENSEMBLE_KEYS, Member, Task, compute_dtype, member_of

# task.kind -> the class that implements it. Adding a task: one module, one line here.
KINDS = {"regression": regression.RegressionTask, "token_lm": bigram.TokenLMTask, "fact_lm": fact_world.FactLMTask,
         "infusion_lm": infusion.InfusionLMTask}

__all__ = ["ENSEMBLE_KEYS", "KINDS", "Member", "Task", "compute_dtype", "get_task", "member_of"]


def get_task(cfg: Config) -> Task:
  return KINDS[cfg.task.kind]()

"""What a run trains on: a task builds the model, samples a batch from (data seed, step) inside
jit, and computes the loss. The training loop (`train.py`) knows nothing else about tasks.

Ensembles train members that differ only in a few values (`Member`); a task reads them from
the member it is given, never from the config, so the same code serves a solo run (plain
Python numbers) and a vmapped ensemble (traced scalars).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab import model as model_lib
from icl_lab import tasks
from icl_lab.config import Config


class Member(NamedTuple):
  """The values in which members of one ensemble may differ (`ENSEMBLE_KEYS`)."""

  seed: Any  # model init (used outside jit only)
  data_seed: Any
  noise_std: Any
  weight_std: Any
  lr: Any
  weight_decay: Any


# `section.key` of every config field an ensemble may vary, in Member's order after `seed`.
ENSEMBLE_KEYS = ("train.seed", "train.data_seed", "task.noise_std", "task.weight_std", "train.lr",
                 "train.weight_decay")


def member_of(cfg: Config) -> Member:
  return Member(cfg.train.seed, cfg.train.data_seed, cfg.task.noise_std, cfg.task.weight_std,
                cfg.train.lr, cfg.train.weight_decay)


def compute_dtype(cfg: Config):
  return jnp.bfloat16 if cfg.train.compute_dtype == "bfloat16" else None


class Task(Protocol):
  def build_model(self, cfg: Config, seed: int) -> nnx.Module: ...

  def sample(self, cfg: Config, member: Member, step: jax.Array, batch_size: int) -> Any:
    """A batch pytree whose leaves all lead with the batch axis B."""

  def loss(self, model: nnx.Module, batch: Any, cfg: Config, member: Member, step: jax.Array) -> jax.Array:
    """The scalar training loss, in float32."""

  def sequence_len(self, cfg: Config) -> int:
    """Positions per sequence (for the memory estimate)."""

  def output_dim(self, cfg: Config) -> int:
    """Outputs per position (for the memory estimate)."""

  length_hint: str  # the config keys that set a batch's length, named when memory cannot hold it


class RegressionTask:
  """The paper's prompts: (x̃, ỹ) tokens, ŷ read at each x̃, squared error."""

  def build_model(self, cfg: Config, seed: int) -> nnx.Module:
    return model_lib.build_model(cfg.model, cfg.task, seed, dtype=compute_dtype(cfg))

  def member_task(self, cfg: Config, member: Member):
    return dataclasses.replace(cfg.task, noise_std=member.noise_std, weight_std=member.weight_std)

  def sample(self, cfg, member, step, batch_size):
    return tasks.sample_batch(self.member_task(cfg, member), member.data_seed, step, batch_size)

  def loss(self, model, batch, cfg, member, step):
    t = self.member_task(cfg, member)
    tokens_BxTxF = tasks.encode(batch.xs_BxNxD, batch.ys_BxN, t.token_format)
    preds_BxN = model(tokens_BxTxF)[:, 0::2].astype(jnp.float32)
    sq_BxN = (preds_BxN - batch.ys_BxN) ** 2
    if cfg.train.loss_weighting == "excess":
      sq_BxN = sq_BxN * position_weights_N(t, step)
    return jnp.mean(sq_BxN)

  def sequence_len(self, cfg: Config) -> int:
    return 2 * cfg.task.num_exemplars

  def output_dim(self, cfg: Config) -> int:
    return 1

  length_hint = "task.num_exemplars (sequence length) or train.batch_size"


def position_weights_N(task_cfg, step: jax.Array) -> jax.Array:
  """The `excess` loss weights: 1 / max(σ² + τ²·max(d_active − n, 0), τ²) per prefix length n,
  normalised to mean 1. The denominator is the Bayes predictor's error at n for isotropic x."""
  n_N = jnp.arange(task_cfg.num_exemplars)
  d_active = tasks.active_dims(task_cfg, step)
  tau2, sigma2 = task_cfg.weight_std**2, task_cfg.noise_std**2
  irreducible_N = sigma2 + tau2 * jnp.maximum(d_active - n_N, 0)
  weights_N = 1.0 / jnp.maximum(irreducible_N, tau2)
  return weights_N / weights_N.mean()


def get_task(cfg: Config) -> Task:
  from icl_lab import fact_world, token_lm

  kinds = {"regression": RegressionTask, "token_lm": token_lm.TokenLMTask, "fact_lm": fact_world.FactLMTask}
  return kinds[cfg.task.kind]()

"""What a run trains on: a task builds the model, samples a batch from (data seed, step) inside
jit, and computes the loss. The training loop (`train.py`) knows nothing else about tasks.

Ensembles train members that differ only in a few values (`Member`); a task reads them from
the member it is given, never from the config, so the same code serves a solo run (plain
Python numbers) and a vmapped ensemble (traced scalars).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab.config import Config


class Member(NamedTuple):
  """The values in which members of one ensemble may differ (`ENSEMBLE_KEYS`)."""

  seed: Any  # model init (used outside jit only)
  data_seed: Any
  noise_std: Any
  weight_std: Any
  lr: Any
  weight_decay: Any
  infuse_exposures: Any  # knowledge infusion's F (0 elsewhere)


# `section.key` of every config field an ensemble may vary, in Member's order after `seed`.
ENSEMBLE_KEYS = ("train.seed", "train.data_seed", "task.noise_std", "task.weight_std", "train.lr",
                 "train.weight_decay", "facts.infuse_exposures")


def stream_key(seed: int | jax.Array, stream: int, step: int | jax.Array) -> jax.Array:
  """A key unique to (seed, stream, step): a wide key tree, no chained splits."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), step)


def member_of(cfg: Config) -> Member:
  return Member(cfg.train.seed, cfg.train.data_seed, cfg.task.noise_std, cfg.task.weight_std,
                cfg.train.lr, cfg.train.weight_decay, cfg.facts.infuse_exposures)


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

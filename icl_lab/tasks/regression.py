"""Linear-regression prompts as a pure function of (seed, step), and their token encoding.

The x, w and noise streams each fold in their own constant before the step, so changing
the noise level never changes the xs or ws a run sees, and resuming needs no data state.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab.config import Config, ModelConfig, TaskConfig
from icl_lab.models import transformer as model_lib
from icl_lab.tasks.base import Member, compute_dtype, stream_key

# Stream ids folded into the data seed; fixed forever so results stay reproducible.
_X_STREAM, _W_STREAM, _NOISE_STREAM, _POOL_STREAM = 0, 1, 2, 3


class Batch(NamedTuple):
  xs_BxNxD: jax.Array
  ys_BxN: jax.Array
  ws_BxD: jax.Array


def x_scales_D(cfg: TaskConfig) -> jax.Array:
  """Per-coordinate standard deviations of x (Σ is diagonal)."""
  if cfg.x_cov == "identity":
    return jnp.ones((cfg.dim,), jnp.float32)
  eig_D = jnp.arange(1, cfg.dim + 1, dtype=jnp.float32) ** (-cfg.skew_power)
  eig_D = eig_D * cfg.dim / eig_D.sum()  # keep tr Σ = d so E[y²] matches the isotropic case
  return jnp.sqrt(eig_D)


def task_pool_PxD(cfg: TaskConfig, seed: int) -> jax.Array:
  """The fixed pool of P weight vectors (drawn once from the data seed)."""
  key = jax.random.fold_in(jax.random.key(seed), _POOL_STREAM)
  return cfg.weight_std * jax.random.normal(key, (cfg.task_pool_size, cfg.dim))


def active_dims(cfg: TaskConfig, step: int | jax.Array) -> jax.Array:
  """Number of active input dimensions under the curriculum (d when there is none)."""
  if cfg.curriculum_start_dim == 0 or cfg.curriculum_steps == 0:
    return jnp.asarray(cfg.dim, jnp.int32)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / cfg.curriculum_steps, 0.0, 1.0)
  span = cfg.dim - cfg.curriculum_start_dim
  return (cfg.curriculum_start_dim + jnp.floor(frac * span + 1e-6)).astype(jnp.int32)


def sample_batch(cfg: TaskConfig, seed: int | jax.Array, step: int | jax.Array,
                 batch_size: int, *, use_curriculum: bool = True) -> Batch:
  """Samples B prompts of N pairs. Pure in (cfg, seed, step, batch_size); jit-friendly."""
  n, d = cfg.num_exemplars, cfg.dim
  xs_BxNxD = jax.random.normal(stream_key(seed, _X_STREAM, step), (batch_size, n, d))
  xs_BxNxD = xs_BxNxD * x_scales_D(cfg)
  w_key = stream_key(seed, _W_STREAM, step)
  if cfg.weights == "ones":
    ws_BxD = jnp.ones((batch_size, d), jnp.float32)
  elif cfg.task_pool_size > 0:
    idx_B = jax.random.randint(w_key, (batch_size,), 0, cfg.task_pool_size)
    ws_BxD = task_pool_PxD(cfg, seed)[idx_B]
  else:
    ws_BxD = cfg.weight_std * jax.random.normal(w_key, (batch_size, d))
  if use_curriculum:
    mask_D = (jnp.arange(d) < active_dims(cfg, step)).astype(jnp.float32)
    xs_BxNxD = xs_BxNxD * mask_D
  ys_BxN = jnp.einsum("bnd,bd->bn", xs_BxNxD, ws_BxD)
  # σ may be a traced per-member value in an ensemble: then the noise is always drawn (adding
  # 0·ε leaves y bit for bit unchanged), otherwise only when σ > 0.
  if not isinstance(cfg.noise_std, (int, float)) or cfg.noise_std > 0:
    noise_BxN = jax.random.normal(stream_key(seed, _NOISE_STREAM, step), (batch_size, n))
    ys_BxN = ys_BxN + cfg.noise_std * noise_BxN
  return Batch(xs_BxNxD, ys_BxN, ws_BxD)


def token_dim(cfg: TaskConfig) -> int:
  return cfg.dim + 1 if cfg.token_format == "paper" else cfg.dim


def encode(xs_BxNxD: jax.Array, ys_BxN: jax.Array, token_format: str = "paper") -> jax.Array:
  """Interleaves x̃₁ ỹ₁ … x̃ₙ ỹₙ into tokens_Bx2NxF.

  paper: x̃ = [0, x], ỹ = [y, 0_d] (F = d+1); the leading slot flags which kind of token it is.
  garg:  x̃ = x,      ỹ = [y, 0_{d-1}] (F = d), Garg et al.'s format with no flag.
  """
  b, n, d = xs_BxNxD.shape
  if token_format == "paper":
    x_tok_BxNxF = jnp.concatenate([jnp.zeros((b, n, 1), xs_BxNxD.dtype), xs_BxNxD], -1)
    y_tok_BxNxF = jnp.concatenate([ys_BxN[..., None], jnp.zeros((b, n, d), xs_BxNxD.dtype)], -1)
  elif token_format == "garg":
    x_tok_BxNxF = xs_BxNxD
    y_tok_BxNxF = jnp.concatenate([ys_BxN[..., None], jnp.zeros((b, n, d - 1), xs_BxNxD.dtype)], -1)
  else:
    raise ValueError(f"unknown token_format {token_format!r}; accepted: paper, garg")
  return jnp.stack([x_tok_BxNxF, y_tok_BxNxF], axis=2).reshape(b, 2 * n, -1)


def zero_predictor_mse(cfg: TaskConfig) -> float:
  """E[y²] = τ² tr Σ + σ² = τ²d + σ²: the loss of always predicting 0."""
  if cfg.weights == "ones":
    return float(cfg.dim + cfg.noise_std**2)
  return float(cfg.weight_std**2 * cfg.dim + cfg.noise_std**2)


def build_model(model_cfg: ModelConfig, task_cfg: TaskConfig, seed: int, dtype=None) -> model_lib.Transformer:
  return model_lib.Transformer(model_cfg, token_dim(task_cfg), 2 * task_cfg.num_exemplars,
                               rngs=nnx.Rngs(seed), dtype=dtype)


def predict(model: model_lib.Transformer, xs_BxNxD: jax.Array, ys_BxN: jax.Array,
            token_format: str = "paper") -> jax.Array:
  """preds_BxN: ŷᵢ read at x̃ᵢ, which sees x₁..xᵢ and y₁..yᵢ₋₁ only (same signature as learners)."""
  out_Bx2N = model(encode(xs_BxNxD, ys_BxN, token_format))
  return out_Bx2N[:, 0::2]


class RegressionTask:
  """The paper's prompts: (x̃, ỹ) tokens, ŷ read at each x̃, squared error."""

  def build_model(self, cfg: Config, seed: int) -> nnx.Module:
    return build_model(cfg.model, cfg.task, seed, dtype=compute_dtype(cfg))

  def member_task(self, cfg: Config, member: Member):
    return dataclasses.replace(cfg.task, noise_std=member.noise_std, weight_std=member.weight_std)

  def sample(self, cfg, member, step, batch_size):
    return sample_batch(self.member_task(cfg, member), member.data_seed, step, batch_size)

  def loss(self, model, batch, cfg, member, step):
    t = self.member_task(cfg, member)
    tokens_BxTxF = encode(batch.xs_BxNxD, batch.ys_BxN, t.token_format)
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
  d_active = active_dims(task_cfg, step)
  tau2, sigma2 = task_cfg.weight_std**2, task_cfg.noise_std**2
  irreducible_N = sigma2 + tau2 * jnp.maximum(d_active - n_N, 0)
  weights_N = 1.0 / jnp.maximum(irreducible_N, tau2)
  return weights_N / weights_N.mean()

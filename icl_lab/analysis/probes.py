"""Probing: decode XᵀY, w_OLS and other learner quantities from every layer (paper §5, App. E).

Conventions, shared with `learners`:
- A prefix i ∈ [0, N) is the first i pairs; `probe_targets(...)[name][:, i]` is computed from
  pairs 0..i-1, exactly like `learners.ols(xs, ys).weights_BxNxD[:, i]`.
- The probe for prefix i may read tokens 0..2i: x̃₁ỹ₁ … x̃ᵢỹᵢ and the query x̃ᵢ₊₁ (token 2i),
  where the model predicts yᵢ₊₁ from exactly those i pairs, so that is where a learner-like
  model has to hold its estimate. ỹᵢ₊₁ and everything after are never read: they would reveal
  labels the target does not depend on.

The probe (App. E) pools the frozen hidden states of one layer with a learned softmax attention
over the allowed positions, projects the pooled state (to 512 by default), then applies a linear
head or a 2-layer GeLU MLP head. Attention scores are qᵀh_t/√H + s_t: a learned query q read
against each position's state plus a learned per-position score s; with q = 0 this is the
paper's position-only softmax(s). One probe per (layer, prefix) is trained; the probes of all
layers and prefixes are stacked and trained at once under jax.vmap. The simple baseline is
closed-form ridge on the state of the prefix's last allowed token (the query x̃ᵢ₊₁).

Hidden states are standardised per layer and feature and targets per prefix and coordinate,
with training-set statistics: a fixed affine map that changes no probe's expressivity but lets
one learning rate (Adam, 1e-3 as in the paper) serve layers and targets of very different scale.
Scores are held-out MSE per coordinate, in the target's own units, and R² = 1 − MSE / MSE of the
mean predictor (the training-set mean), so an uninformative probe scores R² ≈ 0 or below.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from icl_lab.analysis import learners
from icl_lab.tasks import regression

HEADS = ("linear", "mlp")
RIDGE_HEAD = "last_token_ridge"
STUDY_HEADS = HEADS + (RIDGE_HEAD,)


# ---------------------------------------------------------------------------
# Targets


def _exclusive_cumsum(a_BxNxD: jax.Array) -> jax.Array:
  return jnp.cumsum(a_BxNxD, axis=1) - a_BxNxD


def probe_targets(xs_BxNxD, ys_BxN, ws_BxD, names: Sequence[str]) -> dict[str, jax.Array]:
  """targets_BxNxD per name; index i is computed from the first i pairs.

  Names: "xty" (XᵀY = Σⱼ<ᵢ xⱼyⱼ), "w_ols" (min-norm least squares), "w" (the true w, the same at
  every prefix), or any learner name with weights, e.g. "ridge(0.1)", "gd(0.01)", "sgd(0.03)".
  """
  xs_BxNxD, ys_BxN = jnp.asarray(xs_BxNxD), jnp.asarray(ys_BxN)
  out = {}
  for name in names:
    if name == "xty":
      out[name] = _exclusive_cumsum(xs_BxNxD * ys_BxN[..., None])
    elif name in ("w_ols", "ols"):
      out[name] = learners.ols(xs_BxNxD, ys_BxN).weights_BxNxD
    elif name == "w":
      out[name] = jnp.broadcast_to(jnp.asarray(ws_BxD)[:, None, :], xs_BxNxD.shape)
    else:
      weights = learners.get_learner(name)(xs_BxNxD, ys_BxN).weights_BxNxD
      if weights is None:
        raise ValueError(f"learner {name!r} has no weight vector to probe for; use a linear learner")
      out[name] = weights
  return out


# ---------------------------------------------------------------------------
# Hidden states


@functools.partial(jax.jit, static_argnums=0)
def _hidden_chunk(graphdef, state, tokens_BxTxF):
  return nnx.merge(graphdef, state)(tokens_BxTxF, return_hidden=True)[1]


def collect_hidden(model, xs_BxNxD, ys_BxN, token_format: str = "paper",
                   chunk_size: int = 256) -> jax.Array:
  """hidden_LxBxTxH: the residual stream after the read-in (0) and after every block.

  Runs in chunks of `chunk_size` prompts (the last one padded, so one compiled shape serves
  all) to bound the memory of the forward pass.
  """
  graphdef, state = nnx.split(model)
  tokens_BxTxF = regression.encode(jnp.asarray(xs_BxNxD), jnp.asarray(ys_BxN), token_format)
  b = tokens_BxTxF.shape[0]
  size = min(chunk_size, b)
  chunks = []
  for start in range(0, b, size):
    tok_CxTxF = tokens_BxTxF[start:start + size]
    pad = size - tok_CxTxF.shape[0]
    if pad:
      tok_CxTxF = jnp.concatenate([tok_CxTxF, jnp.zeros((pad,) + tok_CxTxF.shape[1:], tok_CxTxF.dtype)])
    h_LxCxTxH = _hidden_chunk(graphdef, state, tok_CxTxF)
    chunks.append(h_LxCxTxH[:, :size - pad])
  return jnp.concatenate(chunks, axis=1)


def allowed_positions(prefixes: Sequence[int], seq_len: int) -> jax.Array:
  """allowed_PxT: the probe for prefix i may read tokens 0..2i (through the query x̃ᵢ₊₁)."""
  prefixes_P = jnp.asarray(prefixes)
  if prefixes_P.ndim != 1 or int(prefixes_P.min()) < 0 or 2 * int(prefixes_P.max()) >= seq_len:
    raise ValueError(f"prefixes {list(prefixes)} must lie in [0, {seq_len // 2}) for {seq_len} tokens")
  return jnp.arange(seq_len)[None, :] <= 2 * prefixes_P[:, None]


# ---------------------------------------------------------------------------
# The attention probe


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  head: Literal["linear", "mlp"] = "mlp"
  proj_dim: int = 512  # the paper's projection width
  steps: int = 2000
  batch_size: int = 256
  lr: float = 1e-3  # Adam, as in the paper; warmup then cosine decay as in the official probe trainer
  warmup_frac: float = 0.05
  weight_decay: float = 0.0
  content_query: bool = True  # False: position-only scores softmax(s), the paper's form
  seed: int = 0
  steps_per_call: int = 100  # steps fused into one jitted call (lax.scan)

  def __post_init__(self):
    if self.head not in HEADS:
      raise ValueError(f"head={self.head!r} is not accepted; accepted: {', '.join(HEADS)}")
    for name in ("proj_dim", "steps", "batch_size", "steps_per_call"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be a positive int")
    if not self.lr > 0:
      raise ValueError(f"lr={self.lr} must be > 0")


def init_probe(key: jax.Array, hidden: int, seq_len: int, out_dim: int, cfg: ProbeConfig) -> dict:
  """One probe's parameters (a plain pytree). Zero scores start it as uniform pooling."""
  k_proj, k_hid, k_out = jax.random.split(key, 3)
  p = cfg.proj_dim
  params = {
      "query_H": jnp.zeros((hidden,), jnp.float32),
      "pos_T": jnp.zeros((seq_len,), jnp.float32),
      "proj_HxP": jax.random.normal(k_proj, (hidden, p)) / math.sqrt(hidden),
      "proj_b_P": jnp.zeros((p,), jnp.float32),
      "out_PxD": jax.random.normal(k_out, (p, out_dim)) / math.sqrt(p),
      "out_b_D": jnp.zeros((out_dim,), jnp.float32),
  }
  if cfg.head == "mlp":
    params["mlp_PxP"] = jax.random.normal(k_hid, (p, p)) / math.sqrt(p)
    params["mlp_b_P"] = jnp.zeros((p,), jnp.float32)
  return params


def apply_probe(params: dict, h_BxTxH: jax.Array, allowed_T: jax.Array, head: str,
                content_query: bool = True) -> tuple[jax.Array, jax.Array]:
  """(pred_BxD, attn_BxT) from one layer's (standardised) states; attn is exactly 0 off `allowed_T`."""
  scores_BxT = jnp.broadcast_to(params["pos_T"], h_BxTxH.shape[:2])
  if content_query:
    scores_BxT = scores_BxT + h_BxTxH @ params["query_H"] / math.sqrt(h_BxTxH.shape[-1])
  # -inf, not a large negative number: exp gives exact zeros, so nothing from later tokens
  # enters the pooled state or its gradient.
  scores_BxT = jnp.where(allowed_T, scores_BxT, -jnp.inf)
  attn_BxT = jax.nn.softmax(scores_BxT, axis=-1)
  pooled_BxH = jnp.einsum("bt,bth->bh", attn_BxT, h_BxTxH)
  z_BxP = pooled_BxH @ params["proj_HxP"] + params["proj_b_P"]
  if head == "mlp":
    z_BxP = jax.nn.gelu(z_BxP @ params["mlp_PxP"] + params["mlp_b_P"])
  return z_BxP @ params["out_PxD"] + params["out_b_D"], attn_BxT


def _apply_bank(params_LxP, h_LxBxTxH, allowed_PxT, head, content_query):
  """Every (layer, prefix) probe on its layer's states: (pred_LxPxBxD, attn_LxPxBxT)."""
  per_prefix = jax.vmap(functools.partial(apply_probe, head=head, content_query=content_query),
                        in_axes=(0, None, 0))
  return jax.vmap(per_prefix, in_axes=(0, 0, None))(params_LxP, h_LxBxTxH, allowed_PxT)


class ProbeFit(NamedTuple):
  """Trained probes for every (layer, prefix), with the standardisation they were trained under."""

  params: Any  # pytree, leaves with leading axes (L, P)
  cfg: ProbeConfig
  prefixes: tuple[int, ...]
  h_mean_LxH: jax.Array
  h_std_LxH: jax.Array
  t_mean_PxD: jax.Array
  t_std_PxD: jax.Array
  loss_curve: np.ndarray  # mean standardised training loss per jitted call, per (layer, prefix)


def _standardise_h(h_LxBxTxH, mean_LxH, std_LxH):
  return (h_LxBxTxH - mean_LxH[:, None, None]) / std_LxH[:, None, None]


@functools.cache
def _trainer(cfg: ProbeConfig, num_steps: int):
  """A jitted call running `num_steps` probe steps from `start` (cached per config)."""
  warmup = int(cfg.warmup_frac * cfg.steps)
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1), 0.0)
  tx = optax.adamw(schedule, weight_decay=cfg.weight_decay)

  def loss_fn(params_LxP, h_LxbxTxH, y_bxPxD, allowed_PxT):
    pred_LxPxbxD, _ = _apply_bank(params_LxP, h_LxbxTxH, allowed_PxT, cfg.head, cfg.content_query)
    loss_LxP = jnp.mean((pred_LxPxbxD - jnp.swapaxes(y_bxPxD, 0, 1)[None]) ** 2, axis=(2, 3))
    # Probes are independent, so the sum gives each one its own gradient.
    return loss_LxP.sum(), loss_LxP

  def one_step(carry, step, h_LxBxTxH, y_BxPxD, allowed_PxT, h_mean_LxH, h_std_LxH):
    params, opt_state = carry
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), 1), step)
    idx_b = jax.random.randint(key, (cfg.batch_size,), 0, y_BxPxD.shape[0])
    h_LxbxTxH = _standardise_h(h_LxBxTxH[:, idx_b], h_mean_LxH, h_std_LxH)
    (_, loss_LxP), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, h_LxbxTxH, y_BxPxD[idx_b], allowed_PxT)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss_LxP

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def run(params, opt_state, start, h_LxBxTxH, y_BxPxD, allowed_PxT, h_mean_LxH, h_std_LxH):
    step_fn = functools.partial(one_step, h_LxBxTxH=h_LxBxTxH, y_BxPxD=y_BxPxD,
                                allowed_PxT=allowed_PxT, h_mean_LxH=h_mean_LxH, h_std_LxH=h_std_LxH)
    (params, opt_state), loss_KxLxP = jax.lax.scan(step_fn, (params, opt_state),
                                                   start + jnp.arange(num_steps))
    return params, opt_state, loss_KxLxP.mean(0)

  return tx, run


def _feature_stats(h_LxBxTxH, chunk: int = 512):
  """Per-layer, per-feature mean and std over prompts and positions (float64 sums, chunk by chunk)."""
  l, b, t, h = h_LxBxTxH.shape
  s1, s2 = np.zeros((l, h)), np.zeros((l, h))
  for start in range(0, b, chunk):
    part = np.asarray(h_LxBxTxH[:, start:start + chunk], np.float64)
    s1 += part.sum((1, 2))
    s2 += (part**2).sum((1, 2))
  mean = s1 / (b * t)
  std = np.sqrt(np.maximum(s2 / (b * t) - mean**2, 0.0))
  # Constant features (e.g. padding slots of the read-in) stay put instead of dividing by zero.
  std = np.where(std > 1e-6 * max(std.max(), 1e-30), std, 1.0)
  return jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)


def _target_stats(y_BxPxD):
  y = np.asarray(y_BxPxD, np.float64)
  mean, std = y.mean(0), y.std(0)
  std = np.where(std > 1e-12, std, 1.0)
  return jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)


def train_probes(h_LxBxTxH, targets_BxPxD, prefixes: Sequence[int], cfg: ProbeConfig) -> ProbeFit:
  """Trains one probe per (layer, prefix) on frozen states; deterministic given cfg.seed.

  targets_BxPxD[:, p] is the target at prefix `prefixes[p]` (e.g. targets_BxNxD[:, prefixes]).
  """
  h_LxBxTxH = jnp.asarray(h_LxBxTxH, jnp.float32)
  targets_BxPxD = jnp.asarray(targets_BxPxD, jnp.float32)
  l, b, t, hid = h_LxBxTxH.shape
  p, d = targets_BxPxD.shape[1:]
  if targets_BxPxD.shape[0] != b or len(prefixes) != p:
    raise ValueError(f"targets_BxPxD {targets_BxPxD.shape} must be ({b}, {len(prefixes)}, d) to match "
                     f"{b} prompts and prefixes {list(prefixes)}")
  allowed_PxT = allowed_positions(prefixes, t)
  h_mean_LxH, h_std_LxH = _feature_stats(h_LxBxTxH)
  t_mean_PxD, t_std_PxD = _target_stats(targets_BxPxD)
  y_BxPxD = (targets_BxPxD - t_mean_PxD) / t_std_PxD

  init_key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
  keys_LxP = jax.random.split(init_key, l * p).reshape(l, p)
  params = jax.vmap(jax.vmap(lambda k: init_probe(k, hid, t, d, cfg)))(keys_LxP)
  curve = []
  step = 0
  while step < cfg.steps:
    k = min(cfg.steps_per_call, cfg.steps - step)
    tx, run = _trainer(cfg, k)
    if step == 0:
      opt_state = tx.init(params)
    params, opt_state, loss_LxP = run(params, opt_state, jnp.asarray(step, jnp.int32), h_LxBxTxH,
                                      y_BxPxD, allowed_PxT, h_mean_LxH, h_std_LxH)
    loss_LxP = np.asarray(loss_LxP)
    if not np.isfinite(loss_LxP).all():
      raise FloatingPointError(
          f"probe loss became non-finite by step {step + k} (head={cfg.head}, lr={cfg.lr}); "
          f"lower the learning rate")
    curve.append(loss_LxP)
    step += k
  return ProbeFit(params, cfg, tuple(int(i) for i in prefixes), h_mean_LxH, h_std_LxH,
                  t_mean_PxD, t_std_PxD, np.stack(curve))


@functools.partial(jax.jit, static_argnames=("head", "content_query"))
def _predict_chunk(params, h_LxBxTxH, allowed_PxT, h_mean_LxH, h_std_LxH, head, content_query):
  return _apply_bank(params, _standardise_h(h_LxBxTxH, h_mean_LxH, h_std_LxH), allowed_PxT,
                     head, content_query)


def predict_probes(fit: ProbeFit, h_LxBxTxH, chunk_size: int = 512) -> tuple[jax.Array, jax.Array]:
  """(preds_LxPxBxD in target units, attn_LxPxBxT) of every trained probe."""
  h_LxBxTxH = jnp.asarray(h_LxBxTxH, jnp.float32)
  allowed_PxT = allowed_positions(fit.prefixes, h_LxBxTxH.shape[2])
  preds, attns = [], []
  for start in range(0, h_LxBxTxH.shape[1], chunk_size):
    pred, attn = _predict_chunk(fit.params, h_LxBxTxH[:, start:start + chunk_size], allowed_PxT,
                                fit.h_mean_LxH, fit.h_std_LxH, fit.cfg.head, fit.cfg.content_query)
    preds.append(pred)
    attns.append(attn)
  pred_LxPxBxD = jnp.concatenate(preds, axis=2)
  pred_LxPxBxD = pred_LxPxBxD * fit.t_std_PxD[None, :, None] + fit.t_mean_PxD[None, :, None]
  return pred_LxPxBxD, jnp.concatenate(attns, axis=2)


# ---------------------------------------------------------------------------
# Scoring


class ProbeScores(NamedTuple):
  mse_LxP: np.ndarray  # held-out MSE per coordinate
  r2_LxP: np.ndarray  # 1 − mse / baseline_mse
  baseline_mse_P: np.ndarray  # held-out MSE of the training-set mean
  attn_mean_LxPxT: np.ndarray | None  # held-out mean attention over positions (attention probes)


def mean_baseline_mse(train_targets_BxPxD, test_targets_BxPxD) -> np.ndarray:
  """baseline_mse_P: held-out MSE of always predicting the training-set mean."""
  mean_PxD = np.asarray(train_targets_BxPxD, np.float64).mean(0)
  return ((np.asarray(test_targets_BxPxD, np.float64) - mean_PxD) ** 2).mean((0, 2))


def _scores(pred_LxPxBxD, test_BxPxD, baseline_P, attn_mean=None) -> ProbeScores:
  err = np.asarray(pred_LxPxBxD, np.float64) - np.swapaxes(np.asarray(test_BxPxD, np.float64), 0, 1)[None]
  mse_LxP = (err**2).mean((2, 3))
  with np.errstate(divide="ignore", invalid="ignore"):
    r2_LxP = np.where(baseline_P > 0, 1.0 - mse_LxP / baseline_P, np.nan)
  return ProbeScores(mse_LxP, r2_LxP, baseline_P, attn_mean)


def score_probes(fit: ProbeFit, h_test_LxBxTxH, test_targets_BxPxD,
                 train_targets_BxPxD) -> ProbeScores:
  """Held-out MSE and R² of every (layer, prefix) probe, and its mean attention."""
  pred_LxPxBxD, attn_LxPxBxT = predict_probes(fit, h_test_LxBxTxH)
  baseline_P = mean_baseline_mse(train_targets_BxPxD, test_targets_BxPxD)
  return _scores(pred_LxPxBxD, test_targets_BxPxD, baseline_P, np.asarray(attn_LxPxBxT.mean(2)))


def last_token_ridge(h_train_LxBxTxH, train_targets_BxPxD, h_test_LxBxTxH, test_targets_BxPxD,
                     prefixes: Sequence[int], lam: float = 1e-2) -> ProbeScores:
  """The simple baseline: closed-form ridge from the state at token 2i (the query x̃ᵢ₊₁).

  Features are standardised and the penalty is λ·B on the standardised scale, so λ reads as a
  fraction of each feature's variance. Solved in float64.
  """
  tok_P = 2 * np.asarray(prefixes)

  def states(h_LxBxTxH):
    return np.asarray(np.asarray(h_LxBxTxH)[:, :, tok_P], np.float64)  # LxBxPxH

  z_tr, z_te = states(h_train_LxBxTxH), states(h_test_LxBxTxH)
  y_tr = np.asarray(train_targets_BxPxD, np.float64)
  mu_LxPxH, sd_LxPxH = z_tr.mean(1), z_tr.std(1)
  sd_LxPxH = np.where(sd_LxPxH > 1e-12, sd_LxPxH, 1.0)
  z_tr = (z_tr - mu_LxPxH[:, None]) / sd_LxPxH[:, None]
  z_te = (z_te - mu_LxPxH[:, None]) / sd_LxPxH[:, None]
  y_mean_PxD = y_tr.mean(0)
  b, hid = z_tr.shape[1], z_tr.shape[-1]
  gram_LxPxHxH = np.einsum("lbph,lbpk->lphk", z_tr, z_tr) + lam * b * np.eye(hid)
  rhs_LxPxHxD = np.einsum("lbph,bpd->lphd", z_tr, y_tr - y_mean_PxD)
  w_LxPxHxD = np.linalg.solve(gram_LxPxHxH, rhs_LxPxHxD)
  pred_LxPxBxD = np.einsum("lbph,lphd->lpbd", z_te, w_LxPxHxD) + y_mean_PxD[None, :, None]
  baseline_P = mean_baseline_mse(train_targets_BxPxD, test_targets_BxPxD)
  return _scores(pred_LxPxBxD, test_targets_BxPxD, baseline_P)


def first_layer_reaching(r2_L, threshold: float = 0.9) -> dict[str, Any]:
  """{"layer": first layer with R² ≥ threshold or None, "best_layer", "best_r2"}."""
  r2_L = np.asarray(r2_L, np.float64)
  hits = np.flatnonzero(r2_L >= threshold)
  best = int(np.nanargmax(r2_L)) if np.isfinite(r2_L).any() else None
  return {"layer": int(hits[0]) if hits.size else None, "best_layer": best,
          "best_r2": None if best is None else float(r2_L[best])}


# ---------------------------------------------------------------------------
# One model's probing study (what the Fig. 4 experiment runs per model)


def _clean(a) -> Any:
  """Nested lists with NaN → None, for strict JSON."""
  return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64).ravel()] \
      if np.ndim(a) == 1 else [_clean(row) for row in np.asarray(a)]


def target_label(name: str) -> str:
  if name == "xty":
    return "XᵀY"
  if name in ("w_ols", "ols"):
    return "w_OLS"
  return name


def probe_study(model, task_cfg, *, targets: Sequence[str], prefixes: Sequence[int],
                heads: Sequence[str] = STUDY_HEADS, probe_cfg: ProbeConfig = ProbeConfig(),
                num_train: int = 4096, num_test: int = 1024, data_seed: int = 1234,
                ridge_lam: float = 1e-2, headline_prefix: int | None = None,
                num_attn_prompts: int = 16, log=None) -> dict[str, Any]:
  """Probes every layer of `model` for each target and head on prompts from `task_cfg`.

  Training and held-out prompts are batches 0 and 1 of `data_seed`, so every model probed
  with the same seed sees the same prompts. Returns a JSON-ready dict: per target and head
  (the attention probes plus "last_token_ridge"), held-out mse and r2 per layer at the headline
  prefix (default: the last, i = N−1) and per prefix; baselines; attention summaries.
  """
  log = log or (lambda *_: None)
  prefixes = [int(i) for i in prefixes]
  headline = prefixes[-1] if headline_prefix is None else int(headline_prefix)
  hp = prefixes.index(headline)
  train_b = regression.sample_batch(task_cfg, data_seed, 0, num_train, use_curriculum=False)
  test_b = regression.sample_batch(task_cfg, data_seed, 1, num_test, use_curriculum=False)
  tgt_train = probe_targets(*train_b, targets)
  tgt_test = probe_targets(*test_b, targets)
  h_train = collect_hidden(model, train_b.xs_BxNxD, train_b.ys_BxN, task_cfg.token_format)
  h_test = collect_hidden(model, test_b.xs_BxNxD, test_b.ys_BxN, task_cfg.token_format)
  num_layers = h_train.shape[0]

  results: dict[str, Any] = {}
  baseline: dict[str, float] = {}
  baseline_by_prefix: dict[str, Any] = {}
  attention: dict[str, Any] = {}
  reach: dict[str, Any] = {}
  for name in targets:
    y_tr_BxPxD = np.asarray(tgt_train[name])[:, prefixes]
    y_te_BxPxD = np.asarray(tgt_test[name])[:, prefixes]
    base_P = mean_baseline_mse(y_tr_BxPxD, y_te_BxPxD)
    baseline[name] = float(base_P[hp])
    baseline_by_prefix[name] = {str(i): float(v) for i, v in zip(prefixes, base_P)}
    results[name], reach[name], fits = {}, {}, {}
    for head in heads:
      if head == RIDGE_HEAD:
        sc = last_token_ridge(h_train, y_tr_BxPxD, h_test, y_te_BxPxD, prefixes, ridge_lam)
      else:
        fits[head] = train_probes(h_train, y_tr_BxPxD, prefixes, dataclasses.replace(probe_cfg, head=head))
        sc = score_probes(fits[head], h_test, y_te_BxPxD, y_tr_BxPxD)
      entry = {"mse": _clean(sc.mse_LxP[:, hp]), "r2": _clean(sc.r2_LxP[:, hp]),
               "by_prefix": {str(i): {"mse": _clean(sc.mse_LxP[:, j]), "r2": _clean(sc.r2_LxP[:, j])}
                             for j, i in enumerate(prefixes)}}
      if head in fits:
        entry["final_train_loss"] = _clean(fits[head].loss_curve[-1][:, hp])
        entry["attn_mean_by_layer"] = sc.attn_mean_LxPxT[:, hp]
      results[name][head] = entry
      reach[name][head] = first_layer_reaching(sc.r2_LxP[:, hp])
      log(f"  {target_label(name):6s} {head:16s} R² by layer: "
          + " ".join("nan" if not np.isfinite(v) else f"{v:.2f}" for v in sc.r2_LxP[:, hp]))
    # The heat map shows the strongest attention probe (the MLP head when trained) at its best layer.
    if fits:
      head = "mlp" if "mlp" in fits else next(iter(fits))
      best = reach[name][head]["best_layer"] or 0
      _, attn_LxPxKxT = predict_probes(fits[head], h_test[:, :num_attn_prompts])
      attention[name] = {
          "head": head, "layer": best, "prefix": headline,
          "mean_by_layer": _clean(results[name][head]["attn_mean_by_layer"]),  # L x T, held-out mean
          "best_layer_mean": _clean(results[name][head]["attn_mean_by_layer"][best]),  # T
          "best_layer_prompts": _clean(np.asarray(attn_LxPxKxT[best, hp])),  # K x T
      }
    for entry in results[name].values():
      entry.pop("attn_mean_by_layer", None)
  return {"layers": list(range(num_layers)), "targets": list(targets), "heads": list(heads),
          "prefix": headline, "prefixes": prefixes, "results": results, "baseline_mse": baseline,
          "baseline_mse_by_prefix": baseline_by_prefix, "first_layer_r2_ge_0.9": reach,
          "attention": attention, "num_train": num_train, "num_test": num_test,
          "data_seed": data_seed, "seq_len": int(h_train.shape[2])}

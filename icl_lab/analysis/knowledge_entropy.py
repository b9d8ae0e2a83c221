"""Knowledge entropy, resuscitation, and the continual-learning scores of Kim et al. (ICLR 2025).

- Coefficients C: the input of each MLP's down-projection (silu(gate(x)) ⊙ up(x) for SwiGLU).
- C̄ˡ: |C| averaged over the tokens of each sequence, then over the sequences (paper §3.1; the
  official `analysis/entropy.py` sums over tokens instead, a scale that cancels in p).
- pˡ = C̄ˡ / Σᵢ C̄ˡᵢ (a plain normalisation, not a softmax); Hˡ = −Σᵢ pˡᵢ ln(pˡᵢ + 1e-9) (Eq. 2).
- H = Σₗ Hˡ; normalised by its maximum L·ln W, so models of other sizes compare.
- Resuscitation (Algorithm 1, official `analysis/change_parameters.py`): per layer, the units whose
  C̄ˡᵢ is at most the p-quantile of C̄ˡ get their up-projection scaled by uᵢ = q·mean(C̄ˡ) / C̄ˡᵢ.
- Acquisition A = (K_CL − K_PT) / |K_PT| and forgetting F = −(P_CL − P_PT) / P_PT (§4.1).

Attention entropy and next-token entropy (the paper's companion measures) are the lab's own
definitions: the Shannon entropy of each head's attention row, and of the next-token distribution,
averaged over query positions, heads and sequences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

EPS = 1e-9  # inside the log, as in the official code


@dataclasses.dataclass(frozen=True)
class EntropyReport:
  """Every entropy of one model on one set of sequences (nats)."""

  per_layer: tuple[float, ...]  # Hˡ
  total: float  # H = Σₗ Hˡ
  normalised: float  # H / (L ln W)
  attention_per_layer: tuple[float, ...]
  attention: float  # mean over layers
  next_token: float

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def entropy_of_means(cbar_LxW: np.ndarray) -> np.ndarray:
  """H_L: Eq. 2 of the paper on each layer's mean |coefficients| (float64)."""
  cbar_LxW = np.asarray(cbar_LxW, np.float64)
  p_LxW = cbar_LxW / cbar_LxW.sum(-1, keepdims=True)
  return -(p_LxW * np.log(p_LxW + EPS)).sum(-1)


@nnx.jit
def _chunk_stats(model, ids_BxT):
  """Per-sequence mean |C| (BxLxW), and sums over the chunk's sequences of the mean attention
  entropy (L) and the mean next-token entropy (scalar)."""
  logits_BxTxV, hidden_Lp1xBxTxH, coeffs_LxBxTxW = model(ids_BxT, return_hidden=True, return_coefficients=True)
  coeff_BxLxW = jnp.abs(coeffs_LxBxTxW.astype(jnp.float32)).mean(axis=2).transpose(1, 0, 2)
  attn = []
  for l, block in enumerate(model.blocks):
    probs_BxMxTxT = block.attn.attention_probs(block.ln1(hidden_Lp1xBxTxH[l])).astype(jnp.float32)
    ent_BxMxT = -jax.scipy.special.xlogy(probs_BxMxTxT, probs_BxMxTxT).sum(-1)
    attn.append(ent_BxMxT.mean(axis=(1, 2)).sum())
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  next_BxT = -(jnp.exp(logp_BxTxV) * logp_BxTxV).sum(-1)
  return coeff_BxLxW, jnp.stack(attn), next_BxT.mean(axis=1).sum()


def measure(model, ids_NxT, chunk: int = 256, num_boot: int = 0, seed: int = 0):
  """The entropies of `model` on the sequences it reads (ids_NxT), and C̄ (cbar_LxW, float64).

  With num_boot > 0 also returns H on `num_boot` bootstrap resamples of the sequences (C̄
  recomputed on each; `bootstrap_entropy`), as a third value."""
  ids_NxT = jnp.asarray(ids_NxT)
  n = ids_NxT.shape[0]
  coeff, attn_L, next_tok = [], 0.0, 0.0
  for i in range(0, n, chunk):
    c, a, t = _chunk_stats(model, ids_NxT[i:i + chunk])
    coeff.append(np.asarray(c, np.float64))
    attn_L = attn_L + np.asarray(a, np.float64)
    next_tok += float(t)
  coeff_NxLxW = np.concatenate(coeff)
  cbar_LxW = coeff_NxLxW.mean(0)
  per_layer = entropy_of_means(cbar_LxW)
  layers, width = cbar_LxW.shape
  attn_L = attn_L / n
  report = EntropyReport(tuple(per_layer.tolist()), float(per_layer.sum()),
                         float(per_layer.sum() / (layers * np.log(width))), tuple(attn_L.tolist()),
                         float(attn_L.mean()), next_tok / n)
  if not num_boot:
    return report, cbar_LxW
  return report, cbar_LxW, bootstrap_entropy(coeff_NxLxW, num_boot, seed)


def bootstrap_entropy(coeff_NxLxW: np.ndarray, num_boot: int = 200, seed: int = 0) -> np.ndarray:
  """h_R: H = Σₗ Hˡ on `num_boot` resamples (with replacement) of the sequences, the rows of the
  per-sequence mean |C|. Percentiles of h_R give its bootstrap interval; replicates of several
  models drawn with one seed can be averaged first, for the interval of their mean."""
  n = coeff_NxLxW.shape[0]
  counts_RxN = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=num_boot)
  cbar_RxLxW = np.einsum("rn,nlw->rlw", counts_RxN / n, coeff_NxLxW)
  return np.array([entropy_of_means(c).sum() for c in cbar_RxLxW])


def seed_bootstrap(reps_SxR, num_boot: int | None = None, seed: int = 0) -> np.ndarray:
  """mean_B: a hierarchical bootstrap of the mean over seeds. Each replicate resamples the S seeds
  with replacement, then gives every drawn seed one of its own item-level replicates (reps_SxR: a
  resample of its sequences or probe prompts each), drawn independently, so a seed drawn twice gets
  two item resamples. Its interval therefore includes the spread between seeds, which averaging the
  seeds' replicates first leaves out. The draws depend only on (S, R, num_boot, seed), so quantities
  bootstrapped with one seed stay paired and their differences have intervals too. With two seeds
  a quarter of the replicates are each seed alone, so the interval spans about both seeds' values."""
  reps_SxR = np.asarray(reps_SxR, np.float64)
  s, r = reps_SxR.shape
  rng = np.random.default_rng(seed)
  n = r if num_boot is None else num_boot
  seeds_BxS, items_BxS = rng.integers(0, s, (n, s)), rng.integers(0, r, (n, s))
  return reps_SxR[seeds_BxS, items_BxS].mean(1)


def knowledge_entropy(model, ids_NxT, chunk: int = 256) -> EntropyReport:
  """Knowledge entropy per layer and summed (with attention and next-token entropy)."""
  return measure(model, ids_NxT, chunk)[0]


def coefficient_means(model, ids_NxT, chunk: int = 256) -> np.ndarray:
  """cbar_LxW: mean |C| over tokens within each sequence, then over sequences."""
  return measure(model, ids_NxT, chunk)[1]


# ---------------------------------------------------------------------------
# Resuscitation


def resuscitation_scales(cbar_LxW: np.ndarray, p: float, q: float) -> np.ndarray:
  """scale_LxW: uᵢ = q·mean(C̄ˡ)/C̄ˡᵢ for the units at or below the p-quantile of C̄ˡ, else 1.

  The quantile interpolates linearly, as torch.quantile does. A unit with C̄ˡᵢ = 0 has no
  coefficient to lift by scaling and is left as it is."""
  cbar_LxW = np.asarray(cbar_LxW, np.float64)
  t_L = np.quantile(cbar_LxW, p, axis=-1)
  chosen_LxW = (cbar_LxW <= t_L[:, None]) & (cbar_LxW > 0)
  u_LxW = q * cbar_LxW.mean(-1, keepdims=True) / np.where(cbar_LxW > 0, cbar_LxW, 1.0)
  return np.where(chosen_LxW, u_LxW, 1.0)


def resuscitate(model, cbar_LxW: np.ndarray, p: float, q: float, layers: Sequence[int] | None = None):
  """A copy of `model` with Algorithm 1 applied (to `layers`, default all; every factor comes from
  the original model's C̄). Needs the bias-free SwiGLU MLP: there C is linear in `up`, so scaling
  unit i's column of up.kernel (its row in PyTorch's layout) scales exactly Cᵢ."""
  scale_LxW = resuscitation_scales(cbar_LxW, p, q)
  new = nnx.clone(model)
  for l, block in enumerate(new.blocks):
    if layers is not None and l not in layers:
      continue
    up = block.mlp.up
    if getattr(up, "bias", None) is not None or not hasattr(block.mlp, "gate"):
      raise ValueError("resuscitation needs the bias-free SwiGLU MLP (model.mlp=swiglu)")
    up.kernel[...] = up.kernel[...] * jnp.asarray(scale_LxW[l], up.kernel[...].dtype)
  return new


# ---------------------------------------------------------------------------
# Continual-learning scores and their correlations


def acquisition(k_cl: float, k_pt: float) -> float:
  """A = (K_CL − K_PT) / |K_PT|, K the mean log-probability of the new facts' targets."""
  return (k_cl - k_pt) / abs(k_pt)


def forgetting(p_cl: float, p_pt: float) -> float:
  """F = −(P_CL − P_PT) / P_PT, P the accuracy on the knowledge held before continual learning."""
  return -(p_cl - p_pt) / p_pt


def pearson(x, y) -> float:
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x, y = x - x.mean(), y - y.mean()
  denom = np.sqrt((x * x).sum() * (y * y).sum())
  return float((x * y).sum() / denom) if denom > 0 else float("nan")


def _ranks(x) -> np.ndarray:
  """Ranks from 1, ties sharing their mean rank."""
  x = np.asarray(x, np.float64)
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(1, len(x) + 1)
  for v in np.unique(x):
    tie = x == v
    ranks[tie] = ranks[tie].mean()
  return ranks


def spearman(x, y) -> float:
  return pearson(_ranks(x), _ranks(y))

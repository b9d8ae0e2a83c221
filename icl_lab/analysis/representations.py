"""Comparing representations across models: an affine map scored on held-out entities against a
row-permuted null, linear CKA, and stitching (a donor's representations, mapped affinely, read by a
receiver's head).

The affine fit has A + 1 parameters per output (A input dimensions and a bias); it is refused
unless the fitting entities number at least `MIN_RATIO` times that, since with fewer an affine map
fits anything, the permuted null included.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from icl_lab.models.mlp_link import MLPLink
from icl_lab.tasks.family_graph import Graph

MIN_RATIO = 3.0  # fitting entities per affine parameter per output


def fit_affine(x_NxA, y_NxB) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares W_AxB, b_B with y ≈ x W + b."""
  x_NxA, y_NxB = np.asarray(x_NxA, np.float64), np.asarray(y_NxB, np.float64)
  x1_NxA1 = np.concatenate([x_NxA, np.ones((len(x_NxA), 1))], axis=1)
  coef_A1xB = np.linalg.lstsq(x1_NxA1, y_NxB, rcond=None)[0]
  return coef_A1xB[:-1], coef_A1xB[-1]


def r2(y_NxB, pred_NxB) -> float:
  """1 − SS_res / SS_tot, pooled over outputs (SS_tot around each output's mean)."""
  y_NxB, pred_NxB = np.asarray(y_NxB, np.float64), np.asarray(pred_NxB, np.float64)
  ss_tot = ((y_NxB - y_NxB.mean(0)) ** 2).sum()
  return float(1.0 - ((y_NxB - pred_NxB) ** 2).sum() / ss_tot)


def check_enough(n_fit: int, in_dim: int, min_ratio: float = MIN_RATIO) -> None:
  need = int(np.ceil(min_ratio * (in_dim + 1)))
  if n_fit < need:
    raise ValueError(f"affine fit from {in_dim} dims needs >= {need} fitting entities "
                     f"({min_ratio:g}x {in_dim + 1} parameters per output), got {n_fit}")


def affine_r2(x_NxA, y_NxB, fit_idx, test_idx, seed: int = 0, min_ratio: float = MIN_RATIO) -> dict[str, float]:
  """Held-out R² of the affine map x -> y fitted on `fit_idx`, the same for y's rows permuted
  (the null: a map that only exploits dimension and sample size), and their difference."""
  x_NxA, y_NxB = np.asarray(x_NxA), np.asarray(y_NxB)
  fit_idx, test_idx = np.asarray(fit_idx), np.asarray(test_idx)
  check_enough(len(fit_idx), x_NxA.shape[1], min_ratio)
  w, b = fit_affine(x_NxA[fit_idx], y_NxB[fit_idx])
  real = r2(y_NxB[test_idx], x_NxA[test_idx] @ w + b)
  perm_N = np.random.default_rng(seed).permutation(len(y_NxB))
  y_perm_NxB = y_NxB[perm_N]
  w0, b0 = fit_affine(x_NxA[fit_idx], y_perm_NxB[fit_idx])
  null = r2(y_perm_NxB[test_idx], x_NxA[test_idx] @ w0 + b0)
  return {"r2": real, "null_r2": null, "excess_r2": real - null}


def linear_cka(x_NxA, y_NxB) -> float:
  """Linear CKA (Kornblith et al. 2019): ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on centred columns."""
  x_NxA, y_NxB = np.asarray(x_NxA, np.float64), np.asarray(y_NxB, np.float64)
  x_NxA, y_NxB = x_NxA - x_NxA.mean(0), y_NxB - y_NxB.mean(0)
  cross = np.linalg.norm(y_NxB.T @ x_NxA) ** 2
  return float(cross / (np.linalg.norm(x_NxA.T @ x_NxA) * np.linalg.norm(y_NxB.T @ y_NxB)))


def entity_embeddings(model: MLPLink) -> np.ndarray:
  return np.asarray(model.entity[...])


def stitch_map(donor_ExD, receiver_ExD, fit_idx, min_ratio: float = MIN_RATIO) -> tuple[np.ndarray, np.ndarray]:
  """The affine map from the donor's entity embeddings to the receiver's, fitted on `fit_idx`."""
  fit_idx = np.asarray(fit_idx)
  check_enough(len(fit_idx), np.asarray(donor_ExD).shape[1], min_ratio)
  return fit_affine(np.asarray(donor_ExD)[fit_idx], np.asarray(receiver_ExD)[fit_idx])


def stitched_correct(receiver: MLPLink, donor_ExD, w_DxD, b_D, g: Graph) -> np.ndarray:
  """correct_Q of the receiver's head reading the donor's mapped embeddings of each query's head.
  Only the head's representation is replaced: a tied receiver still scores answers against its
  own entity embeddings."""
  mapped_ExD = jnp.asarray(np.asarray(donor_ExD) @ w_DxD + b_D, jnp.float32)
  logits_QxE = receiver.head(mapped_ExD[jnp.asarray(g.heads_Q)], jnp.asarray(g.rels_Q))
  top_Q = np.asarray(jnp.argmax(logits_QxE, -1))
  return g.answers_QxE[np.arange(g.num_queries), top_Q]

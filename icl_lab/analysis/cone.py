"""The cone score of a 2-D node embedding (Baek, Li and Tegmark 2024, v2): how well "j is a
descendant of i" is told by "E_j lies in a fixed cone with apex E_i" (one direction u and one
half-angle α for every node).

The score is the best balanced accuracy, (TPR + TNR) / 2, over the ordered pairs i ≠ j, maximised
over u (a grid of `angles` directions) and α (every cut between the pairs' angles to u): balanced,
so that calling nothing a descendant scores 0.5, not the share of non-descendant pairs.
"""

from __future__ import annotations

import numpy as np


def cone_score(emb_NxD, rel_NxN, angles: int = 1440) -> dict[str, float]:
  """{"score", "direction" (radians), "half_angle" (radians)} of the best cone."""
  emb_NxD, rel_NxN = np.asarray(emb_NxD, np.float64), np.asarray(rel_NxN, bool)
  if emb_NxD.ndim != 2 or emb_NxD.shape[1] != 2:
    raise ValueError(f"the cone score needs 2-D embeddings, got shape {emb_NxD.shape}")
  n = len(emb_NxD)
  off_NxN = ~np.eye(n, dtype=bool)
  diff_PxD = (emb_NxD[None, :, :] - emb_NxD[:, None, :])[off_NxN]  # E_j − E_i for each pair (i, j)
  label_P = rel_NxN[off_NxN]
  n_pos, n_neg = int(label_P.sum()), int((~label_P).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError("the cone score needs related and unrelated pairs")
  phi_P = np.arctan2(diff_PxD[:, 1], diff_PxD[:, 0])
  theta_T = np.linspace(-np.pi, np.pi, angles, endpoint=False)
  # Angle between each pair's offset and each direction, in [0, π].
  dev_TxP = np.abs(np.angle(np.exp(1j * (phi_P[None, :] - theta_T[:, None]))))
  best = (-1.0, 0.0, 0.0)
  for t, dev_P in enumerate(dev_TxP):
    cuts_C = np.concatenate([[-1.0], np.unique(dev_P)])  # "inside" means dev ≤ cut
    pos_in_C = np.searchsorted(np.sort(dev_P[label_P]), cuts_C, side="right")
    neg_in_C = np.searchsorted(np.sort(dev_P[~label_P]), cuts_C, side="right")
    bal_C = 0.5 * (pos_in_C / n_pos + 1.0 - neg_in_C / n_neg)
    c = int(np.argmax(bal_C))
    if bal_C[c] > best[0]:
      best = (float(bal_C[c]), float(theta_T[t]), float(max(cuts_C[c], 0.0)))
  return {"score": best[0], "direction": best[1], "half_angle": best[2]}


def hand_cone_embedding(parent_N, shrink: float = 0.3) -> np.ndarray:
  """emb_Nx2 of a tree drawn downwards, self-similar: a node at depth d sits shrink^d·(side, −1) from
  its parent (side spread over [−1, 1] among siblings). Each subtree then lies in the downward cone of
  half-angle 45° from its root, and for shrink < 1/2 every other node lies outside it."""
  parent_N = np.asarray(parent_N)
  n = len(parent_N)
  emb_Nx2 = np.zeros((n, 2))
  depth_N = np.zeros(n, int)
  kids: dict[int, list[int]] = {}
  for j in range(1, n):
    kids.setdefault(int(parent_N[j]), []).append(j)
  for p, js in kids.items():  # breadth-first numbering: parents are placed before their children
    sides = np.linspace(-1.0, 1.0, len(js)) if len(js) > 1 else np.zeros(1)
    for j, side in zip(js, sides):
      depth_N[j] = depth_N[p] + 1
      emb_Nx2[j] = emb_Nx2[p] + shrink ** depth_N[p] * np.array([side, -1.0])
  return emb_Nx2

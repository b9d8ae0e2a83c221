"""The "descendant-of" relation on a complete tree (Baek, Li and Tegmark 2024, v2: a 15-node tree,
the complete binary tree of depth 3). Nodes are numbered breadth-first, so node i's children are
b·i + 1 … b·i + b and the root is 0."""

from __future__ import annotations

import numpy as np


def tree_parents(branching: int = 2, depth: int = 3) -> np.ndarray:
  """parent_N (−1 for the root) of the complete tree with `depth` levels below the root."""
  if branching < 1 or depth < 0:
    raise ValueError(f"a tree needs branching ≥ 1 and depth ≥ 0, got {branching} and {depth}")
  n = sum(branching**d for d in range(depth + 1))
  return np.array([-1] + [(i - 1) // branching for i in range(1, n)], np.int32)


def depths(parent_N) -> np.ndarray:
  depth_N = np.zeros(len(parent_N), np.int32)
  for i in range(1, len(parent_N)):  # breadth-first: a parent precedes its children
    depth_N[i] = depth_N[parent_N[i]] + 1
  return depth_N


def descendant_matrix(parent_N) -> np.ndarray:
  """desc_NxN[i, j]: j is a proper descendant of i."""
  n = len(parent_N)
  desc_NxN = np.zeros((n, n), bool)
  for j in range(n):
    i = parent_N[j]
    while i >= 0:
      desc_NxN[i, j] = True
      i = parent_N[i]
  return desc_NxN

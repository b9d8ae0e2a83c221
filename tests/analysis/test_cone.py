"""The cone score against ground truth, and the descendant tree."""

import numpy as np
import pytest

from icl_lab.analysis.cone import cone_score, hand_cone_embedding
from icl_lab.tasks import descendants


def test_the_15_node_tree():
  parent_N = descendants.tree_parents(2, 3)
  desc_NxN = descendants.descendant_matrix(parent_N)
  assert len(parent_N) == 15 and desc_NxN.sum() == 14 + 2 * 6 + 4 * 2
  assert desc_NxN[0, 1:].all() and not desc_NxN.diagonal().any() and not desc_NxN[7:].any()
  assert desc_NxN[1].nonzero()[0].tolist() == [3, 4, 7, 8, 9, 10]
  assert descendants.depths(parent_N).tolist() == [0, 1, 1] + [2] * 4 + [3] * 8
  with pytest.raises(ValueError, match="branching ≥ 1"):
    descendants.tree_parents(0, 3)


@pytest.mark.parametrize("branching,depth", [(2, 3), (3, 3), (2, 4)])
def test_a_hand_built_cone_embedding_scores_one(branching, depth):
  parent_N = descendants.tree_parents(branching, depth)
  desc_NxN = descendants.descendant_matrix(parent_N)
  emb_Nx2 = hand_cone_embedding(parent_N)
  found = cone_score(emb_Nx2, desc_NxN)
  assert found["score"] == 1.0
  # The cone points down and every descendant's offset lies within its half-angle, no other node's.
  u = np.array([np.cos(found["direction"]), np.sin(found["direction"])])
  assert u[1] < -0.9
  for i in range(len(parent_N)):
    for j in range(len(parent_N)):
      if i != j:
        d = emb_Nx2[j] - emb_Nx2[i]
        angle = np.arccos(np.clip(d @ u / np.linalg.norm(d), -1, 1))
        assert (angle <= found["half_angle"] + 1e-9) == desc_NxN[i, j]


def test_the_score_ignores_similarity_transforms_and_random_embeddings_score_low():
  parent_N = descendants.tree_parents(2, 3)
  desc_NxN = descendants.descendant_matrix(parent_N)
  rot = np.array([[0.6, -0.8], [0.8, 0.6]])
  assert cone_score(3.0 * hand_cone_embedding(parent_N) @ rot.T + 5.0, desc_NxN)["score"] == 1.0
  rng = np.random.default_rng(0)
  scores = [cone_score(rng.normal(size=(15, 2)), desc_NxN)["score"] for _ in range(5)]
  assert max(scores) < 0.85 and min(scores) >= 0.5
  # Every node on one point: no cone separates anything, the balanced score is chance.
  assert cone_score(np.zeros((15, 2)) + 1e-12 * rng.normal(size=(15, 2)), desc_NxN)["score"] < 0.9
  with pytest.raises(ValueError, match="2-D embeddings"):
    cone_score(np.zeros((15, 3)), desc_NxN)

"""The vmapped link-predictor ensemble: it fits Hinton's trees, and each member trains as it would alone."""

import numpy as np

from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import LinkTrain, train_ensemble

G = fg.graph(fg.hinton())


def test_members_fit_the_trees_and_match_their_solo_runs():
  spec = LinkTrain(dim=8, width=32, steps=300, eval_every=100, lr=1e-2)
  train_KxQ = np.stack([fg.split(G, 1.0, 0), fg.split(G, 0.5, 1)])
  ens = train_ensemble(G, spec, [0, 1], [0.0, 0.1], train_KxQ, ~train_KxQ)
  assert ens.train_acc_KxC.shape == (2, 4) and list(ens.steps_C) == [0, 100, 200, 300]
  assert ens.train_acc_KxC[0, -1] == 1.0 and ens.train_acc_KxC[1, -1] == 1.0
  assert ens.train_acc_KxC[0, 0] < 0.5
  solo = train_ensemble(G, spec, [1], [0.1], train_KxQ[1:], ~train_KxQ[1:])
  np.testing.assert_allclose(solo.test_acc_KxC[0], ens.test_acc_KxC[1])
  # vmapped sums round differently, so parameters agree to training noise, not bitwise
  np.testing.assert_allclose(solo.params_K["entity"][0], ens.params_K["entity"][1], atol=2e-2)
  np.testing.assert_array_equal(ens.correct_KxQ[1], solo.correct_KxQ[0])

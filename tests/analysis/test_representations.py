"""Representation tools against ground truth: exact affine copies, permuted nulls, CKA's
invariances, the refusal of under-determined fits, and stitching a model to itself."""

import numpy as np
import pytest

from icl_lab.analysis import representations as rep
from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import LinkTrain, correct, train_ensemble


def _data(n=200, a=5, b=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, a))
  return x, x @ rng.normal(size=(a, b)) + rng.normal(size=b)


def test_affine_r2_is_one_for_an_affine_copy_and_near_zero_for_the_null():
  x, y = _data()
  out = rep.affine_r2(x, y, np.arange(100), np.arange(100, 200))
  assert out["r2"] == pytest.approx(1.0, abs=1e-9)
  assert abs(out["null_r2"]) < 0.15
  assert out["excess_r2"] > 0.85


def test_affine_r2_of_unrelated_representations_is_near_the_null():
  x, _ = _data(seed=1)
  y = np.random.default_rng(2).normal(size=(200, 4))
  out = rep.affine_r2(x, y, np.arange(100), np.arange(100, 200))
  assert abs(out["r2"]) < 0.15 and abs(out["excess_r2"]) < 0.2


def test_affine_fit_refuses_too_few_entities():
  x, y = _data(n=40, a=5)
  with pytest.raises(ValueError, match=r"needs >= 18 fitting entities"):
    rep.affine_r2(x, y, np.arange(17), np.arange(17, 40))
  rep.affine_r2(x, y, np.arange(18), np.arange(18, 40))  # 3 x (5 + 1) is enough


def test_cka_is_invariant_to_rotations_and_isotropic_scaling():
  x, y = _data(n=100, a=6, b=6)
  q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(6, 6)))
  assert rep.linear_cka(x, x) == pytest.approx(1.0)
  assert rep.linear_cka(x, 2.5 * x @ q) == pytest.approx(1.0)
  assert rep.linear_cka(x, y) == pytest.approx(rep.linear_cka(3.0 * x @ q, y @ q.T))
  z = np.random.default_rng(4).normal(size=(100, 6))
  assert rep.linear_cka(x, z) < 0.3


def test_stitching_a_model_to_itself_through_the_identity_reproduces_its_accuracy():
  g = fg.graph(fg.hinton())
  train_Q = fg.split(g, 0.8, 0)
  for tied in (False, True):
    spec = LinkTrain(dim=4, width=32, steps=200, eval_every=100, lr=1e-2, tied=tied)
    model = train_ensemble(g, spec, [0], [0.0], train_Q[None], ~train_Q[None]).model(0)
    emb = rep.entity_embeddings(model)
    own = np.asarray(correct(model(g.heads_Q, g.rels_Q), g.answers_QxE))
    np.testing.assert_array_equal(rep.stitched_correct(model, emb, np.eye(4), np.zeros(4), g), own)
    w, b = rep.stitch_map(emb, emb, np.arange(24))  # the fitted self-map is the identity
    np.testing.assert_allclose(w, np.eye(4), atol=1e-6)
    np.testing.assert_array_equal(rep.stitched_correct(model, emb, w, b, g), own)
    with pytest.raises(ValueError, match="fitting entities"):
      rep.stitch_map(emb, emb, np.arange(10))

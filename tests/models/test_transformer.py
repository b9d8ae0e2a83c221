"""The transformer is causal: ŷ at x̃ᵢ ignores yᵢ and every later token."""

import jax
import jax.numpy as jnp
import numpy as np

from icl_lab.config import ModelConfig, TaskConfig
from icl_lab.tasks import regression

TASK = TaskConfig(dim=3, num_exemplars=6)
MODEL = ModelConfig(layers=2, hidden=16, heads=2)


def _model():
  return regression.build_model(MODEL, TASK, seed=0)


def test_prediction_ignores_own_label_and_later_tokens():
  m = _model()
  b = regression.sample_batch(TASK, 0, 0, 4)
  base = np.asarray(regression.predict(m, b.xs_BxNxD, b.ys_BxN))
  i = 3
  ys2 = b.ys_BxN.at[:, i:].add(10.0)
  xs2 = b.xs_BxNxD.at[:, i + 1:].add(-5.0)
  pert = np.asarray(regression.predict(m, xs2, ys2))
  np.testing.assert_array_equal(pert[:, : i + 1], base[:, : i + 1])
  assert not np.allclose(pert[:, i + 1:], base[:, i + 1:])


def test_gradient_of_output_wrt_later_tokens_is_zero():
  m = _model()
  b = regression.sample_batch(TASK, 0, 1, 2)
  tokens = regression.encode(b.xs_BxNxD, b.ys_BxN)
  t = 5
  grad = jax.grad(lambda tok: m(tok)[:, t].sum())(tokens)
  np.testing.assert_array_equal(grad[:, t + 1:], 0.0)
  assert np.abs(np.asarray(grad[:, : t + 1])).sum() > 0


def test_hidden_states_have_one_entry_per_layer_and_match_output():
  m = _model()
  b = regression.sample_batch(TASK, 0, 2, 3)
  tokens = regression.encode(b.xs_BxNxD, b.ys_BxN)
  out, hidden = m(tokens, return_hidden=True)
  assert hidden.shape == (MODEL.layers + 1, 3, 12, MODEL.hidden)
  np.testing.assert_allclose(m.read_out(m.ln_f(hidden[-1]))[..., 0], out, rtol=1e-6)
  np.testing.assert_array_equal(out, m(tokens))


def test_too_long_sequence_is_rejected():
  m = _model()
  import pytest
  with pytest.raises(ValueError, match="longer than the model's 12 positions"):
    m(jnp.zeros((1, 13, 4)))

"""Stored bits and non-embedding parameters (Allen-Zhu and Li 3.3), checked against hand counts and
against fake models whose cross-entropy on every fact is known exactly."""

import numpy as np
import pytest
from flax import nnx

from icl_lab.analysis import capacity
from icl_lab.config import FactConfig, ModelConfig
from icl_lab.models.transformer import TokenTransformer
from icl_lab.tasks import fact_world as fw

FC = FactConfig(persons=24, relations=3, templates=2, values=8, filler_vocab=8, sentences=2, paraphrase_facts=0,
                once_facts=0, name_tokens=2, name_pool=8)


@pytest.mark.parametrize("layers, hidden, mlp", [(2, 16, "gelu"), (1, 8, "swiglu"), (3, 12, "gelu")])
def test_non_embedding_params_match_a_hand_count(layers, hidden, mlp):
  h, w = hidden, 4 * hidden
  attention = 4 * (h * h + h)  # q, k, v, o with biases
  mlp_params = (h * w + w + w * h + h) if mlp == "gelu" else 3 * h * w  # SwiGLU: gate, up, down, no biases
  layer_norms = 2 * 2 * h  # scale and bias, twice per block
  hand = layers * (attention + mlp_params + layer_norms) + 2 * h  # and the final LayerNorm
  model = TokenTransformer(ModelConfig(layers=layers, hidden=hidden, heads=2, mlp=mlp), 50, 20, rngs=nnx.Rngs(0))
  assert capacity.non_embedding_params(model) == hand
  if (layers, hidden, mlp) == (2, 16, "gelu"):
    assert hand == 6592  # written out once: 2 · (1088 + 2128 + 64) + 32


def _fake_model(fc, p_true):
  """Logits that put probability `p_true` on each prompt's true value and spread the rest evenly
  over the other tokens (p_true = None: uniform over the whole vocabulary)."""
  pr = fw.known_probe(fc)
  size = fw.vocab_size(fc)

  def model(ids_NxT):
    ids_NxT = np.asarray(ids_NxT)
    logits = np.zeros((*ids_NxT.shape, size), np.float32)
    if p_true is None:
      return logits
    rows = [np.flatnonzero((pr.ids_NxL[:, :ids_NxT.shape[1]] == r).all(1))[0] for r in ids_NxT]
    logits[:, -1] = np.log((1 - p_true) / (size - 1)) if p_true < 1 else -1e9
    logits[np.arange(len(rows)), -1, pr.target_N[rows]] = np.log(p_true)
    return logits

  return model


def test_a_model_certain_of_every_fact_stores_log2_v_per_fact():
  got = capacity.measure(_fake_model(FC, 1.0), FC)
  facts = 24 * 3
  assert got["facts"] == facts and got["log2v_total"] == pytest.approx(facts * 3.0)
  assert got["stored_bits"] == pytest.approx(facts * 3.0, rel=1e-6) and got["facts_stored"] == facts


def test_a_uniform_model_stores_nothing_and_half_confidence_stores_one_bit_less():
  assert capacity.measure(_fake_model(FC, None), FC)["stored_bits"] == 0.0
  half = capacity.measure(_fake_model(FC, 0.5), FC)
  assert half["stored_bits"] == pytest.approx(24 * 3 * (3.0 - 1.0), rel=1e-5) and half["facts_stored"] == 0


def test_stored_bits_are_floored_at_zero_per_fact():
  np.testing.assert_allclose(capacity.stored_bits_per_fact([0.0, 1.0, 5.0], values=8), [3.0, 2.0, 0.0])

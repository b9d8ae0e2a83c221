"""Knowledge entropy, resuscitation and the continual-learning scores, against hand computations."""

import jax
import numpy as np
import pytest
from flax import nnx

from icl_lab.analysis import knowledge_entropy as ke
from icl_lab.config import ModelConfig
from icl_lab.models import transformer as model_lib

VOCAB, T = 11, 6
CFG = ModelConfig(layers=2, hidden=8, heads=2, mlp_ratio=2, mlp="swiglu")


def _model(cfg=CFG, seed=0):
  return model_lib.TokenTransformer(cfg, VOCAB, T, rngs=nnx.Rngs(seed))


def _ids(n=5, seed=0):
  return np.asarray(jax.random.randint(jax.random.key(seed), (n, T), 0, VOCAB))


# ---------------------------------------------------------------------------
# A float64 NumPy forward pass of the token model, written from the architecture


def _np(v):
  return np.asarray(v[...], np.float64)


def _layer_norm(ln, x):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + ln.epsilon) * _np(ln.scale) + _np(ln.bias)


def _linear(lin, x):
  out = x @ _np(lin.kernel)
  return out if lin.bias is None else out + _np(lin.bias)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _silu(x):
  return x / (1 + np.exp(-x))


def numpy_forward(m, ids):
  """(logits_BxTxV, [coeffs_BxTxW per layer], [probs_BxMxTxT per layer]) in float64."""
  b, t = ids.shape
  h = _np(m.read_in.embedding)[ids] + _np(m.pos_TxH)[:t]
  coeffs, attn = [], []
  for block in m.blocks:
    x = _layer_norm(block.ln1, h)
    heads, hid = block.attn.heads, x.shape[-1]
    q, k, v = (_linear(lin, x).reshape(b, t, heads, hid // heads) for lin in (block.attn.q, block.attn.k, block.attn.v))
    logits = np.einsum("btmk,bsmk->bmts", q, k) / np.sqrt(hid // heads)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    probs = _softmax(logits)
    attn.append(probs)
    h = h + _linear(block.attn.o, np.einsum("bmts,bsmk->btmk", probs, v).reshape(b, t, hid))
    x = _layer_norm(block.ln2, h)
    c = _silu(_linear(block.mlp.gate, x)) * _linear(block.mlp.up, x)
    coeffs.append(c)
    h = h + _linear(block.mlp.down, c)
  return _linear(m.read_out, _layer_norm(m.ln_f, h)), coeffs, attn


def test_swiglu_coefficients_and_logits_match_a_float64_forward_pass():
  m, ids = _model(), _ids()
  logits, coeffs_LxBxTxW = m(ids, return_coefficients=True)
  ref_logits, ref_coeffs, _ = numpy_forward(m, ids)
  assert coeffs_LxBxTxW.shape == (CFG.layers, 5, T, CFG.mlp_ratio * CFG.hidden)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(coeffs_LxBxTxW, np.stack(ref_coeffs), rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(m(ids), logits)  # the extra output changes nothing
  out, hidden, coeffs2 = m(ids, return_hidden=True, return_coefficients=True)
  assert hidden.shape == (CFG.layers + 1, 5, T, CFG.hidden)
  np.testing.assert_array_equal(coeffs2, coeffs_LxBxTxW)


def test_swiglu_is_bias_free_and_gelu_keeps_its_parameters():
  def names(cfg):
    block = model_lib.Block(cfg, rngs=nnx.Rngs(0))
    return {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(block, nnx.Param))}

  gelu = names(ModelConfig(hidden=8, heads=2))
  assert {n for n in gelu if n.startswith("mlp")} == {"mlp.up.kernel", "mlp.up.bias", "mlp.down.kernel",
                                                       "mlp.down.bias"}
  swiglu = names(ModelConfig(hidden=8, heads=2, mlp="swiglu"))
  assert {n for n in swiglu if n.startswith("mlp")} == {"mlp.gate.kernel", "mlp.up.kernel", "mlp.down.kernel"}
  assert gelu - {n for n in gelu if n.startswith("mlp")} == swiglu - {n for n in swiglu if n.startswith("mlp")}


def test_knowledge_entropy_matches_eq2_computed_by_hand():
  m, ids = _model(), _ids()
  logits, coeffs, attn = numpy_forward(m, ids)
  report, cbar_LxW = ke.measure(m, ids, chunk=2)  # chunks of 2, 2 and 1 sequences
  # C̄: |C| averaged over the tokens of each sequence, then over the sequences.
  ref_cbar = np.stack([np.abs(c).mean(axis=1).mean(axis=0) for c in coeffs])
  np.testing.assert_allclose(cbar_LxW, ref_cbar, rtol=1e-5)
  p = ref_cbar / ref_cbar.sum(-1, keepdims=True)
  ref_h = -(p * np.log(p + 1e-9)).sum(-1)
  np.testing.assert_allclose(report.per_layer, ref_h, rtol=1e-6)
  assert report.total == pytest.approx(ref_h.sum(), rel=1e-6)
  width = CFG.mlp_ratio * CFG.hidden
  assert report.normalised == pytest.approx(ref_h.sum() / (CFG.layers * np.log(width)), rel=1e-6)
  with np.errstate(divide="ignore", invalid="ignore"):
    ref_attn = [np.nan_to_num(-(a * np.log(a))).sum(-1).mean() for a in attn]
  np.testing.assert_allclose(report.attention_per_layer, ref_attn, rtol=1e-4)
  probs = _softmax(logits)
  assert report.next_token == pytest.approx(-(probs * np.log(probs)).sum(-1).mean(), rel=1e-5)
  assert ke.knowledge_entropy(m, ids).total == pytest.approx(report.total, rel=1e-6)


def test_entropy_of_means_on_hand_values():
  h = ke.entropy_of_means(np.array([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0], [1.0, 3.0, 0.0, 0.0]]))
  ref = [np.log(4), 0.0, -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))]
  np.testing.assert_allclose(h, ref, atol=1e-8)
  # Plain normalisation: scaling a layer's coefficients leaves its entropy unchanged.
  np.testing.assert_allclose(ke.entropy_of_means([[2.0, 6.0]]), ke.entropy_of_means([[1.0, 3.0]]), rtol=1e-12)


# ---------------------------------------------------------------------------
# Resuscitation


def test_resuscitation_scales_on_hand_values():
  cbar = np.array([[1.0, 2.0, 3.0, 4.0, 10.0], [4.0, 4.0, 4.0, 4.0, 4.0]])
  # Layer 0: median 3, mean 4, so units ≤ 3 go to q·4. Layer 1: every unit is at the median.
  np.testing.assert_allclose(ke.resuscitation_scales(cbar, 0.5, 2.0),
                             [[8.0, 4.0, 8 / 3, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
  # The quantile interpolates linearly (torch.quantile's default): 0.3 → 2.2, so units 1 and 2.
  np.testing.assert_allclose(ke.resuscitation_scales(cbar[:1], 0.3, 1.0), [[4.0, 2.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize("q", [0.5, 1.0, 2.0])
def test_resuscitated_units_reach_q_times_the_layer_mean_exactly(q):
  m, ids = _model(), _ids(8, seed=1)
  before = np.asarray(m.blocks[0].mlp.up.kernel[...]).copy()
  cbar = ke.coefficient_means(m, ids)
  scales = ke.resuscitation_scales(cbar, 0.5, q)
  for l in range(CFG.layers):
    new = ke.resuscitate(m, cbar, 0.5, q, layers=[l])
    after = ke.coefficient_means(new, ids)
    chosen = scales[l] != 1.0
    assert chosen.sum() == CFG.mlp_ratio * CFG.hidden // 2
    # up is linear and bias-free: each chosen unit's mean |C| becomes q × the layer's old mean.
    np.testing.assert_allclose(after[l, chosen], q * cbar[l].mean(), rtol=1e-5)
    np.testing.assert_allclose(after[l, ~chosen], cbar[l, ~chosen], rtol=1e-5)
    np.testing.assert_allclose(after[:l], cbar[:l], rtol=1e-6)  # earlier layers see the same input
  np.testing.assert_array_equal(m.blocks[0].mlp.up.kernel[...], before)  # the original is untouched


def test_resuscitation_with_q_1_raises_knowledge_entropy():
  m, ids = _model(seed=3), _ids(8, seed=2)
  report, cbar = ke.measure(m, ids)
  after = ke.knowledge_entropy(ke.resuscitate(m, cbar, 0.5, 1.0), ids)
  assert after.per_layer[0] > report.per_layer[0]
  assert after.total > report.total


def test_resuscitation_refuses_the_gelu_mlp():
  m = _model(ModelConfig(layers=1, hidden=8, heads=2, mlp_ratio=2))
  with pytest.raises(ValueError, match="SwiGLU"):
    ke.resuscitate(m, np.ones((1, 16)), 0.5, 1.0)


# ---------------------------------------------------------------------------
# Acquisition, forgetting, correlations


def test_acquisition_and_forgetting_on_hand_values():
  assert ke.acquisition(-2.0, -4.0) == pytest.approx(0.5)  # log-probability up by half of |K_PT|
  assert ke.acquisition(-3.0, -2.0) == pytest.approx(-0.5)
  assert ke.forgetting(0.6, 0.8) == pytest.approx(0.25)
  assert ke.forgetting(0.9, 0.8) == pytest.approx(-0.125)
  # The paper's OLMo numbers: (A, F) of 25.2% / 10.5% early, 18.8% / 19.5% final.
  assert ke.acquisition(-0.748, -1.0) == pytest.approx(0.252)
  assert ke.forgetting(0.805, 1.0) == pytest.approx(0.195)


def test_rank_and_linear_correlations():
  assert ke.spearman([1, 2, 3, 4], [10, 9, 8, -50]) == pytest.approx(-1.0)
  assert ke.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
  # Ties share their mean rank: ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4].
  x, y = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4])
  ref = np.corrcoef(x, y)[0, 1]
  assert ke.spearman([0, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(ref)


def test_entropy_bootstrap_resamples_sequences_of_the_hand_computed_cbar():
  m, ids = _model(), _ids()
  _, coeffs, _ = numpy_forward(m, ids)
  report, _, h_R = ke.measure(m, ids, chunk=2, num_boot=300, seed=1)
  per_seq_NxLxW = np.stack([np.abs(c).mean(axis=1) for c in coeffs], axis=1)
  np.testing.assert_allclose(h_R, ke.bootstrap_entropy(per_seq_NxLxW, 300, seed=1), rtol=1e-5)
  # Each replicate is Eq. 2 on the C̄ of one resample: the first, redone by hand.
  rng = np.random.default_rng(1)
  n = per_seq_NxLxW.shape[0]
  counts = rng.multinomial(n, np.full(n, 1.0 / n), size=300)[0]
  cbar = (counts[:, None, None] * per_seq_NxLxW).sum(0) / n
  p = cbar / cbar.sum(-1, keepdims=True)
  assert h_R[0] == pytest.approx(-(p * np.log(p + 1e-9)).sum(), rel=1e-5)
  lo, hi = np.quantile(h_R, [0.025, 0.975])
  assert lo < report.total < hi and h_R.std() > 0
  same_NxLxW = np.repeat(per_seq_NxLxW[:1], n, axis=0)  # identical sequences: no spread
  assert np.ptp(ke.bootstrap_entropy(same_NxLxW, 50)) == pytest.approx(0.0, abs=1e-12)


def test_seed_bootstrap_covers_the_spread_between_seeds():
  """Two seeds whose values differ far more than their own item-level spread (forgetting 0.134 and
  0.080): the within-seed interval sits between them; the hierarchical one spans both."""
  rng = np.random.default_rng(0)
  reps_SxR = np.stack([rng.normal(0.134, 0.003, 400), rng.normal(0.080, 0.003, 400)])
  within = np.quantile(reps_SxR.mean(0), [0.025, 0.975])
  lo, hi = np.quantile(ke.seed_bootstrap(reps_SxR), [0.025, 0.975])
  assert within[0] > 0.1 and within[1] < 0.115  # the interval the study used to report
  assert lo < 0.080 + 0.006 and hi > 0.134 - 0.006 and hi - lo > 5 * (within[1] - within[0])
  # Paired: one draw for every quantity of the same shape, so differences have intervals too.
  shifted_SxR = reps_SxR + 0.01
  np.testing.assert_allclose(ke.seed_bootstrap(shifted_SxR) - ke.seed_bootstrap(reps_SxR), 0.01)
  # One seed: only its own item-level replicates, resampled.
  one = ke.seed_bootstrap(reps_SxR[:1], num_boot=1000)
  assert one.shape == (1000,) and set(one) <= set(reps_SxR[0])

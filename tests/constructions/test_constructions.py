"""The hand-compiled constructions: each primitive against its definition, the GD, SGD and ridge
networks against independent float64 numpy references, the LSA GD layer, and error vs scale."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_lab import results
from icl_lab.constructions import linear_attention, primitives
from icl_lab.constructions.compiler import ProgramBuilder, compile_program, nonzero_params, shape_of, size_of
from icl_lab.constructions.gd import gd_program, sgd_program
from icl_lab.constructions.network import scan_forward
from icl_lab.constructions.primitives import Affine, MeanOverY, Mul, Read, Recip, div_layers
from icl_lab.constructions.ridge import ridge_program
from icl_lab.models import transformer as model
from icl_lab.tasks import regression

# ---------------------------------------------------------------------------
# Independent float64 references: preds[:, i] predicts y_i from pairs 0..i-1.


def ref_sgd(xs, ys, alpha):
  b, n, d = xs.shape
  preds, w = np.zeros((b, n)), np.zeros((b, d))
  for i in range(n):
    preds[:, i] = np.einsum("bd,bd->b", xs[:, i], w)
    resid = np.einsum("bd,bd->b", xs[:, i], w) - ys[:, i]
    w = w - 2 * alpha * resid[:, None] * xs[:, i]
  return preds


def ref_gd(xs, ys, alpha, steps=1):
  b, n, d = xs.shape
  preds = np.zeros((b, n))
  for i in range(n):
    x, y = xs[:, :i], ys[:, :i]
    w = np.zeros((b, d))
    for _ in range(steps):
      w = w - 2 * alpha * (np.einsum("bnd,bne,be->bd", x, x, w) - np.einsum("bnd,bn->bd", x, y))
    preds[:, i] = np.einsum("bd,bd->b", xs[:, i], w)
  return preds


def ref_ridge(xs, ys, lam):
  b, n, d = xs.shape
  preds = np.zeros((b, n))
  for i in range(n):
    x, y = xs[:, :i], ys[:, :i]
    a = lam * np.eye(d) + np.einsum("bnd,bne->bde", x, x)
    w = np.linalg.solve(a, np.einsum("bnd,bn->bd", x, y)[..., None])[..., 0]
    preds[:, i] = np.einsum("bd,bd->b", xs[:, i], w)
  return preds


def random_prompts(b, n, d, seed=0):
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((b, n, d))
  return xs, np.einsum("bnd,bd->bn", xs, rng.standard_normal((b, d)))


def run_construction(prog, xs, ys, dtype, scale=None):
  with jax.enable_x64(dtype == "float64"):
    net = compile_program(prog, dtype=dtype, scale=scale)
    out = scan_forward(net)(regression.encode(jnp.asarray(xs, dtype), jnp.asarray(ys, dtype)))
    return np.asarray(out[:, 0::2], np.float64)


def hidden_after(prog, tokens_BxTxF, dtype="float64", scale=None, heads=2):
  """The residual stream after the last layer, for feeding primitives arbitrary token values."""
  with jax.enable_x64(dtype == "float64"):
    net = compile_program(prog, dtype=dtype, scale=scale, heads=heads)
    _, hid = net(jnp.asarray(tokens_BxTxF, dtype), return_hidden=True)
    return np.asarray(hid[-1], np.float64)


# ---------------------------------------------------------------------------
# Primitives


def test_gelu_matches_jax_and_identity_pair_is_exact():
  z = np.linspace(-30, 30, 2001)
  np.testing.assert_allclose(primitives.gelu(z), np.asarray(jax.nn.gelu(jnp.asarray(z))), atol=1e-5)
  # The aff primitive rests on gelu(z) − gelu(−z) = z, exact for the tanh GeLU too.
  np.testing.assert_allclose(primitives.gelu(z) - primitives.gelu(-z), z, rtol=1e-15, atol=1e-15)


def test_mul_approx_error_is_second_order_in_scale():
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal(100), rng.standard_normal(100)
  for s in (1e-1, 3e-2):
    err = primitives.mul_approx(a, b, s) - a * b
    lead = primitives.mul_error_leading(a, b, s)
    # The leading term 2κs²ab(a² + b²) explains the error up to O(s⁴).
    np.testing.assert_allclose(err, lead, atol=2 * s**4 * np.max((a**2 + b**2) ** 2))
  e1 = np.abs(primitives.mul_approx(a, b, 1e-1) - a * b).max()
  e2 = np.abs(primitives.mul_approx(a, b, 5e-2) - a * b).max()
  assert 3.5 < e1 / e2 < 4.5


def test_read_moves_rows_from_the_addressed_position_exactly():
  b = ProgramBuilder("read", 3, 5)
  dst = {o: b.alloc(f"dst{o}", 4) for o in (0, 1, 2, 3)}
  b.layer([Read(dst[o], b.layout["tok"], o) for o in dst])
  prog = b.build(dst[0][0])
  tokens = np.random.default_rng(1).standard_normal((2, 10, 4))
  with pytest.raises(ValueError, match="heads=2 is too few"):
    shape_of(prog, heads=2)
  for dtype in ("float32", "float64"):
    h = hidden_after(prog, tokens, dtype, heads=4)
    for o, rows in dst.items():
      src_T = np.maximum(np.arange(10) - o, 0)  # the nearest visible position to p − o
      np.testing.assert_allclose(h[:, :, rows], tokens[:, src_T], rtol=1e-6, atol=1e-6)


def test_mean_over_y_tokens():
  b = ProgramBuilder("mean", 2, 4)
  b.feature("isy")
  dst = b.alloc("dst", 3)
  b.layer([MeanOverY(dst, b.layout["tok"])])
  tokens = np.random.default_rng(2).standard_normal((2, 8, 3))
  h = hidden_after(b.build(dst[0]), tokens)
  for p in range(8):
    ys_seen = [s for s in range(1, p + 1, 2)]
    want = tokens[:, ys_seen].mean(1) if ys_seen else tokens[:, 0]
    np.testing.assert_allclose(h[:, p, list(dst)], want, rtol=1e-10, atol=1e-12)


def test_affine_is_exact():
  b = ProgramBuilder("aff", 3, 2)
  out = b.alloc("out", 2)
  tok = b.layout["tok"]
  b.layer([], [Affine(out[0], ((tok[0], 2.5), (tok[1], -1.0)), 0.75),
               Affine(out[1], ((tok[2], 3.0), (tok[0], 0.5)))])
  tokens = 5 * np.random.default_rng(3).standard_normal((3, 4, 4))
  h = hidden_after(b.build(out[0]), tokens, "float32")
  np.testing.assert_allclose(h[..., out[0]], 2.5 * tokens[..., 0] - tokens[..., 1] + 0.75, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h[..., out[1]], 3.0 * tokens[..., 2] + 0.5 * tokens[..., 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-1, 1e-2])
def test_mul_in_the_network_matches_its_formula(scale):
  b = ProgramBuilder("mul", 2, 2)
  out = b.alloc("out", 2)
  tok = b.layout["tok"]
  b.layer([], [Mul(out[0], tok[0], tok[1]), Mul(out[1], tok[2], tok[2], 0.5)])
  tokens = np.random.default_rng(4).standard_normal((4, 4, 3))
  h = hidden_after(b.build(out[0]), tokens, scale=scale)
  a, c, e = tokens[..., 0], tokens[..., 1], tokens[..., 2]
  np.testing.assert_allclose(h[..., out[0]], primitives.mul_approx(a, c, scale), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(h[..., out[1]], 0.5 * primitives.square_approx(e, scale), rtol=1e-9, atol=1e-9)
  # ... and so ab to within the leading error 2κs²ab(a² + b²) and its O(s⁴) remainder.
  bound = np.abs(primitives.mul_error_leading(a, c, scale)) + 2 * scale**4 * (a**2 + c**2) ** 3 + 1e-9
  assert np.all(np.abs(h[..., out[0]] - a * c) <= bound)


def test_recip_seed_and_div():
  lo, hi, knots = 1.0, 500.0, 32
  den = np.geomspace(1.0, 480.0, 48).reshape(3, 16)
  num = np.random.default_rng(5).standard_normal((3, 16))
  # Recip alone: the piecewise-linear seed, whose GeLU kinks match ReLUs away from the knots.
  b = ProgramBuilder("recip", 1, 8)
  r = b.alloc("r", 1)[0]
  b.layer([], [Recip(r, b.tok_y[0], lo, hi, knots)])
  tokens = np.stack([den, num], -1)
  h = hidden_after(b.build(r), tokens)
  seed = primitives.recip_pwl(den, lo, hi, knots)
  np.testing.assert_allclose(h[..., r], seed, rtol=1e-3)
  assert np.max(np.abs(den * seed - 1)) <= primitives.recip_seed_error(lo, hi, knots) + 1e-12
  # div: seed + 2 Newton steps, error (seed error)⁴ plus the mul error.
  b = ProgramBuilder("div", 1, 8)
  q, r, t = b.alloc("q", 1), b.alloc("r", 1)[0], b.alloc("t", 1)[0]
  b.extend(div_layers(q, b.tok_x, b.tok_y[0], r, t, lo=lo, hi=hi, knots=knots, newton_steps=2,
                      num_mag=1.0, den_mag=math.sqrt(hi)))
  h = hidden_after(b.build(q[0]), tokens)
  expect = primitives.newton_error(primitives.recip_seed_error(lo, hi, knots), 2)
  np.testing.assert_allclose(h[..., q[0]], num / den, rtol=expect + 1e-6, atol=1e-9)


# ---------------------------------------------------------------------------
# Theorem 1 and batch GD


@pytest.mark.parametrize("d,alpha", [(1, 0.1), (3, 0.03), (5, 0.01)])
def test_sgd_construction_is_one_pass_sgd(d, alpha):
  xs, ys = random_prompts(16, 7, d, seed=d)
  ref = ref_sgd(xs, ys, alpha)
  np.testing.assert_allclose(run_construction(sgd_program(d, 7, alpha), xs, ys, "float64"), ref,
                             atol=1e-8, rtol=1e-8)


def test_sgd_construction_float32():
  xs, ys = random_prompts(16, 7, 3, seed=7)
  pred = run_construction(sgd_program(3, 7, 0.03), xs, ys, "float32")
  np.testing.assert_allclose(pred, ref_sgd(xs, ys, 0.03), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("d,alpha,steps", [(2, 0.02, 1), (4, 0.01, 1), (3, 0.02, 3)])
def test_gd_construction_is_batch_gd(d, alpha, steps):
  xs, ys = random_prompts(16, 6, d, seed=10 + d)
  pred = run_construction(gd_program(d, 6, alpha, steps), xs, ys, "float64")
  np.testing.assert_allclose(pred, ref_gd(xs, ys, alpha, steps), atol=1e-8, rtol=1e-8)


def test_construction_matches_the_lab_learners():
  from icl_lab.analysis import learners
  xs, ys = random_prompts(8, 6, 3, seed=20)
  with jax.enable_x64(True):
    x64, y64 = jnp.asarray(xs), jnp.asarray(ys)
    for prog, lrn in [(sgd_program(3, 6, 0.03), learners.sgd(x64, y64, alpha=0.03)),
                      (gd_program(3, 6, 0.02), learners.gd(x64, y64, alpha=0.02))]:
      np.testing.assert_allclose(run_construction(prog, xs, ys, "float64"), np.asarray(lrn.preds_BxN),
                                 atol=1e-8)


# ---------------------------------------------------------------------------
# Theorem 2


@pytest.mark.parametrize("d,lam", [(1, 0.5), (2, 0.1), (3, 1.0), (4, 0.5)])
def test_ridge_construction_is_ridge(d, lam):
  xs, ys = random_prompts(16, 6, d, seed=30 + d)
  pred = run_construction(ridge_program(d, 6, lam), xs, ys, "float64")
  np.testing.assert_allclose(pred, ref_ridge(xs, ys, lam), atol=1e-6, rtol=1e-6)


def test_ridge_construction_float32_is_close():
  xs, ys = random_prompts(16, 5, 2, seed=40)
  pred = run_construction(ridge_program(2, 5, 0.5), xs, ys, "float32")
  np.testing.assert_allclose(pred, ref_ridge(xs, ys, 0.5), atol=2e-2)


# ---------------------------------------------------------------------------
# Error vs scale: it must shrink as the scale goes to 0 (float64, above the rounding floor).


@pytest.mark.parametrize("name", ["sgd", "ridge"])
def test_error_shrinks_with_scale(name):
  xs, ys = random_prompts(8, 5, 2, seed=50)
  if name == "sgd":
    prog, ref = sgd_program(2, 5, 0.05), ref_sgd(xs, ys, 0.05)
  else:
    prog, ref = ridge_program(2, 5, 0.5), ref_ridge(xs, ys, 0.5)
  errs = [np.abs(run_construction(prog, xs, ys, "float64", scale=s) - ref).max()
          for s in (1e-2, 1e-3, 1e-4)]
  assert errs[0] > errs[1] > errs[2]
  # Second order: a 10× smaller scale gives about 100× less error.
  assert errs[0] / errs[1] > 30 and errs[1] / errs[2] > 30


# ---------------------------------------------------------------------------
# The network itself


def test_ordinary_forward_equals_scan_forward_and_lab_predict():
  prog = sgd_program(2, 4, 0.05)
  xs, ys = random_prompts(4, 4, 2, seed=60)
  with jax.enable_x64(True):
    net = compile_program(prog, dtype="float64")
    x64, y64 = jnp.asarray(xs), jnp.asarray(ys)
    by_predict = np.asarray(regression.predict(net, x64, y64))
    by_scan = np.asarray(scan_forward(net)(regression.encode(x64, y64))[:, 0::2])
  np.testing.assert_allclose(by_predict, by_scan, atol=1e-12)
  np.testing.assert_allclose(by_predict, ref_sgd(xs, ys, 0.05), atol=1e-8)


def _np_forward(net, tokens_BxTxF):
  """A float64 numpy forward of h = read_in + pos; h += Attn(h); h += MLP(h); read_out: no LayerNorm."""
  p = lambda a: np.asarray(a[...], np.float64)  # noqa: E731
  lin = lambda layer, a: a @ p(layer.kernel) + p(layer.bias)  # noqa: E731
  t = tokens_BxTxF.shape[1]
  h = lin(net.read_in, tokens_BxTxF) + p(net.pos_TxH)[:t]
  for blk in net.blocks:
    att, m = blk.attn, blk.attn.heads
    b, _, hid = h.shape
    q, k, v = (lin(layer, h).reshape(b, t, m, hid // m) for layer in (att.q, att.k, att.v))
    logits = np.einsum("btmk,bsmk->bmts", q, k) / np.sqrt(hid // m)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    h = h + lin(att.o, np.einsum("bmts,bsmk->btmk", probs, v).reshape(b, t, hid))
    h = h + lin(blk.mlp.down, primitives.gelu(lin(blk.mlp.up, h)))
  return lin(net.read_out, h)[..., 0]


def test_network_reuses_the_lab_blocks_without_layernorm():
  net = compile_program(sgd_program(2, 3, 0.05))
  assert isinstance(net.blocks[0].attn, model.CausalSelfAttention)
  assert isinstance(net.blocks[0].mlp, model.MLP)
  assert not hasattr(net, "ln_f") and not hasattr(net.blocks[0], "ln1")
  # The forward pass is the plain residual stack: a LayerNorm anywhere (each token's state has its
  # own norm) would move the output far from this numpy forward, and from one-pass SGD.
  xs, ys = random_prompts(4, 3, 2, seed=61)
  with jax.enable_x64(True):
    net = compile_program(sgd_program(2, 3, 0.05), dtype="float64")
    tokens = regression.encode(jnp.asarray(xs), jnp.asarray(ys))
    out = np.asarray(net(tokens), np.float64)
  ref = _np_forward(net, np.asarray(tokens, np.float64))
  np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
  np.testing.assert_allclose(ref[:, 0::2], ref_sgd(xs, ys, 0.05), atol=1e-8)


def test_float64_without_x64_is_refused():
  with jax.enable_x64(False), pytest.raises(ValueError, match="enable_x64"):
    compile_program(sgd_program(2, 3, 0.05), dtype="float64")


def test_sizes_follow_the_theorems():
  sgd = {d: size_of(sgd_program(d, 8, 0.05)) for d in (2, 4, 8, 16)}
  ridge = {d: size_of(ridge_program(d, 8, 0.5)) for d in (2, 4, 8, 16)}
  # Theorem 1: a constant number of layers per example and O(d) width.
  assert len({s["layers"] for s in sgd.values()}) == 1 and sgd[2]["layers"] == 2 * 7 + 1
  assert all(s["hidden"] <= 3 * d + 8 for d, s in sgd.items())
  # Theorem 2: constant layers per update, O(d²) width (the heads carry A⁻¹ and w twice).
  assert len({s["layers"] for s in ridge.values()}) == 1 and ridge[2]["layers"] == 9 * 7 + 1
  assert all(s["hidden"] <= max(2 * (d * d + d), d * d + 5 * d + 10) + 2 for d, s in ridge.items())
  for prog in (sgd_program(3, 4, 0.05), gd_program(2, 4, 0.05, steps=2), ridge_program(2, 3, 0.5)):
    leaves = [np.asarray(v) for v in jax.tree.leaves(nnx.state(compile_program(prog)))]
    assert sum(v.size for v in leaves) == shape_of(prog).param_count()
    assert sum(int(np.count_nonzero(v)) for v in leaves) == nonzero_params(prog)


# ---------------------------------------------------------------------------
# von Oswald et al.'s linear self-attention layer


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_lsa_construction_is_one_gd_step(dtype, tol):
  xs, ys = random_prompts(16, 9, 4, seed=70)
  with jax.enable_x64(dtype == "float64"):
    layer = linear_attention.gd_layer(4, 2 * 0.03, dtype)
    pred = np.asarray(layer(jnp.asarray(xs, dtype), jnp.asarray(ys, dtype)), np.float64)
  ref = ref_gd(xs, ys, 0.03)
  np.testing.assert_allclose(pred, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_lsa_construction_on_hand_values_and_its_alignment():
  # d = 1, x = 1, 2, 3, y = 2x, η = 0.5: ŷⱼ = η Σ_{i<j} yᵢxᵢxⱼ = 0, 0.5·2·1·2 = 2, 0.5·(2·1 + 4·2)·3 = 15.
  layer = linear_attention.gd_layer(1, 0.5)
  pred = layer(jnp.asarray([[[1.0], [2.0], [3.0]]]), jnp.asarray([[2.0, 4.0, 6.0]]))
  np.testing.assert_allclose(np.asarray(pred), [[0.0, 2.0, 15.0]], rtol=1e-6)
  w_kq, w_pv = linear_attention.gd_weights(2, 0.3)
  np.testing.assert_array_equal(w_kq, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
  np.testing.assert_array_equal(w_pv, [[0, 0, 0], [0, 0, 0], [0, 0, 0.3]])
  # (−2·W_KQ, −W_PV/2) is the same layer: fully aligned, the same effective rate.
  layer = linear_attention.gd_layer(2, 0.3)
  layer.w_kq[...] = jnp.asarray(-2 * w_kq, jnp.float32)
  layer.w_pv[...] = jnp.asarray(-w_pv / 2, jnp.float32)
  al = linear_attention.alignment(layer, 0.3)
  assert al["cos_kq"] == pytest.approx(1.0) and al["cos_pv"] == pytest.approx(1.0)
  assert al["eta_effective"] == pytest.approx(0.3) and al["rel_err_effective"] == pytest.approx(0.0, abs=1e-7)
  # Ones in the whole x-x block of W_KQ: against the construction's used 3×2 block, cos = 2/(2·√2);
  # the trace keeps η_eff = 0.3, and the off-diagonal error is ‖0.3(J − I)‖ / ‖0.3·I‖ = √2/√2 = 1.
  layer.w_kq[...] = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  layer.w_pv[...] = jnp.asarray(w_pv, jnp.float32)
  al = linear_attention.alignment(layer, 0.3)
  assert al["cos_kq"] == pytest.approx(1 / np.sqrt(2), rel=1e-6) and al["eta_effective"] == pytest.approx(0.3)
  assert al["rel_err_effective"] == pytest.approx(1.0, rel=1e-6)  # ‖0.3·(J − I)‖ / ‖0.3·I‖ = √2/√2


def test_lsa_training_reaches_the_construction():
  res = linear_attention.study(3, 8, steps=400, batch=128, eval_batch=4096)
  assert res["loss_trained"] < 1.05 * res["loss_construction"]
  assert abs(res["loss_construction"] - res["loss_construction_theory"]) < 0.1 * res["loss_construction_theory"]
  assert res["cos_kq"] > 0.95 and res["cos_pv"] > 0.95
  assert abs(res["eta_effective"] / res["eta_construction"] - 1) < 0.1


# ---------------------------------------------------------------------------
# Results files


def test_plot_draws_from_json_alone(tmp_path):
  row = dict(prefix=[0, 1, 2], spd_over_d=[0.0, 1e-20, 2e-20], mspd_over_d=1e-20,
             mspd_over_d_underdetermined=1e-20, max_abs_err=1e-9, scale=1e-6)
  res = dict(agreement={"sgd": dict(learner="sgd(0.03)", params={}, by_dtype={"float64": {"2": row}})},
             scale_sweep={"sgd": dict(d=2, n=3, dtype="float64", scales=[1e-2, 1e-3],
                                      mspd_over_d=[1e-8, 1e-12], max_abs_err=[1e-4, 1e-6])},
             trained_model={"sgd": {"2": dict(prefix=[0, 1, 2], spd_over_d=[0, 1e-3, 1e-3], run="x")}},
             meta=dict(seed=0, wall_clock_s=1.0))
  from icl_lab.studies import constructions

  dest = results.Destination(tmp_path, "_tiny", headline=False)
  paths = results.write(dest, "constructions", res, preset="tiny", seeds=results.Seeds(eval_data=0), wall_s=1.0,
                        plot=constructions.plot)
  assert json.loads(paths[0].read_text()) == res
  assert json.loads((tmp_path / "MANIFEST.json").read_text())["constructions_tiny"]["preset"] == "tiny"
  assert [p.name for p in paths] == ["constructions_tiny.json", "constructions_tiny.png", "constructions_tiny.pdf"]
  assert all(p.stat().st_size > 0 for p in paths)

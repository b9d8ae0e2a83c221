"""Flax NNX decoder-only transformers: over interleaved (x̃, ỹ) tokens, and over token ids.

Pre-LN blocks (h += Attn(LN(h)); h += MLP(LN(h))), causal softmax multi-head attention,
a GeLU MLP of width mlp_ratio·H (or a bias-free SwiGLU one, `model.mlp`), learned absolute
positions, a final LayerNorm and a linear read-out of ŷ (or of vocabulary logits). The paper's
official release takes the residual from the normalised stream; we use the standard pre-LN block
instead (see README, "Model choices").

Mixed precision: with `dtype=jnp.bfloat16` the dense layers compute in bf16 while parameters,
the residual stream, LayerNorm, the softmax and the read-out stay in float32 (bf16's 8-bit
mantissa is enough for matmul inputs, not for a softmax or a sum over a long residual).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab.config import ModelConfig


class CausalSelfAttention(nnx.Module):
  """Softmax attention with separate q, k, v, o projections (the constructions set them)."""

  def __init__(self, hidden: int, heads: int, *, rngs: nnx.Rngs, dtype=None):
    self.heads = heads
    self.q = nnx.Linear(hidden, hidden, dtype=dtype, rngs=rngs)
    self.k = nnx.Linear(hidden, hidden, dtype=dtype, rngs=rngs)
    self.v = nnx.Linear(hidden, hidden, dtype=dtype, rngs=rngs)
    self.o = nnx.Linear(hidden, hidden, dtype=dtype, rngs=rngs)

  def attention_probs(self, h_BxTxH: jax.Array) -> jax.Array:
    """probs_BxMxTxT: each head's causal attention of every query over the keys."""
    b, t, hid = h_BxTxH.shape
    m = self.heads
    split = lambda a: a.reshape(b, t, m, hid // m)
    q_BxTxMxK, k_BxTxMxK = split(self.q(h_BxTxH)), split(self.k(h_BxTxH))
    logits_BxMxTxT = jnp.einsum("btmk,bsmk->bmts", q_BxTxMxK, k_BxTxMxK)
    # The softmax runs in at least float32 (bf16 logits), float64 stays float64 (constructions).
    logits_BxMxTxT = logits_BxMxTxT.astype(jnp.promote_types(logits_BxMxTxT.dtype, jnp.float32))
    logits_BxMxTxT = logits_BxMxTxT / jnp.sqrt(hid // m)
    causal_TxT = jnp.tril(jnp.ones((t, t), bool))
    logits_BxMxTxT = jnp.where(causal_TxT, logits_BxMxTxT, jnp.finfo(logits_BxMxTxT.dtype).min)
    return jax.nn.softmax(logits_BxMxTxT, axis=-1)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    b, t, hid = h_BxTxH.shape
    v_BxTxMxK = self.v(h_BxTxH).reshape(b, t, self.heads, hid // self.heads)
    probs_BxMxTxT = self.attention_probs(h_BxTxH).astype(v_BxTxMxK.dtype)
    out_BxTxMxK = jnp.einsum("bmts,bsmk->btmk", probs_BxMxTxT, v_BxTxMxK)
    return self.o(out_BxTxMxK.reshape(b, t, hid))


class MLP(nnx.Module):
  """down(gelu(up(h))), with biases. Its coefficients are gelu(up(h)), the input of `down`."""

  def __init__(self, hidden: int, width: int, *, rngs: nnx.Rngs, dtype=None):
    self.up = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)

  def coefficients(self, h_BxTxH: jax.Array) -> jax.Array:
    return jax.nn.gelu(self.up(h_BxTxH))

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    return self.down(self.coefficients(h_BxTxH))


class SwiGLUMLP(nnx.Module):
  """down(silu(gate(h)) ⊙ up(h)), bias-free (OLMo's MLP). Its coefficients C = silu(gate(h)) ⊙ up(h)
  are linear in `up`: scaling unit i's column of up.kernel scales exactly Cᵢ (resuscitation)."""

  def __init__(self, hidden: int, width: int, *, rngs: nnx.Rngs, dtype=None):
    self.gate = nnx.Linear(hidden, width, use_bias=False, dtype=dtype, rngs=rngs)
    self.up = nnx.Linear(hidden, width, use_bias=False, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(width, hidden, use_bias=False, dtype=dtype, rngs=rngs)

  def coefficients(self, h_BxTxH: jax.Array) -> jax.Array:
    return jax.nn.silu(self.gate(h_BxTxH)) * self.up(h_BxTxH)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    return self.down(self.coefficients(h_BxTxH))


MLPS = {"gelu": MLP, "swiglu": SwiGLUMLP}


class Block(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=None):
    self.ln1 = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.attn = CausalSelfAttention(cfg.hidden, cfg.heads, dtype=dtype, rngs=rngs)
    self.ln2 = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.mlp = MLPS[cfg.mlp](cfg.hidden, cfg.mlp_ratio * cfg.hidden, dtype=dtype, rngs=rngs)

  def __call__(self, h_BxTxH: jax.Array, *, return_coefficients: bool = False):
    """The block's output, and with return_coefficients also its MLP coefficients coeffs_BxTxW."""
    # Sub-layer outputs join the float32 residual stream (a no-op without mixed precision).
    h_BxTxH = h_BxTxH + self.attn(self.ln1(h_BxTxH)).astype(h_BxTxH.dtype)
    coeffs_BxTxW = self.mlp.coefficients(self.ln2(h_BxTxH))
    out_BxTxH = h_BxTxH + self.mlp.down(coeffs_BxTxW).astype(h_BxTxH.dtype)
    return (out_BxTxH, coeffs_BxTxW) if return_coefficients else out_BxTxH


class Transformer(nnx.Module):
  """Maps tokens_BxTxF to a scalar read-out at every position."""

  def __init__(self, cfg: ModelConfig, token_dim: int, max_len: int, *, rngs: nnx.Rngs, dtype=None):
    self.read_in = nnx.Linear(token_dim, cfg.hidden, rngs=rngs)
    self.pos_TxH = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, cfg.hidden)))
    self.blocks = nnx.List([Block(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.layers)])
    self.ln_f = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.read_out = nnx.Linear(cfg.hidden, 1, rngs=rngs)

  def __call__(self, tokens_BxTxF: jax.Array, *, return_hidden: bool = False):
    """Returns out_BxT, and with return_hidden also hidden_Lp1xBxTxH: the residual stream
    after the read-in (index 0) and after each of the L blocks (index l)."""
    return run_stack(self, tokens_BxTxF, self.ln_f, return_hidden=return_hidden)


class TokenTransformer(nnx.Module):
  """The same blocks over token ids: an embedding, learned positions, vocabulary logits."""

  def __init__(self, cfg: ModelConfig, vocab_size: int, max_len: int, *, rngs: nnx.Rngs, dtype=None):
    self.read_in = nnx.Embed(vocab_size, cfg.hidden, rngs=rngs)
    self.pos_TxH = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, cfg.hidden)))
    self.blocks = nnx.List([Block(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.layers)])
    self.ln_f = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.read_out = nnx.Linear(cfg.hidden, vocab_size, rngs=rngs)

  def __call__(self, ids_BxT: jax.Array, *, return_hidden: bool = False, return_coefficients: bool = False):
    """Returns logits_BxTxV, then hidden_Lp1xBxTxH with return_hidden, then every layer's MLP
    coefficients coeffs_LxBxTxW (the input of each down-projection) with return_coefficients."""
    return run_stack(self, ids_BxT, self.ln_f, return_hidden=return_hidden, scalar_out=False,
                     return_coefficients=return_coefficients)


def run_stack(net: nnx.Module, tokens_BxTxF: jax.Array, final=None, *, return_hidden: bool = False,
              scalar_out: bool = True, return_coefficients: bool = False):
  """The forward pass shared by the transformers and the LayerNorm-free constructions network:
  read-in plus positions, the blocks, then `final` (a norm, or None) and the read-out of `net`
  (squeezed to out_BxT when `scalar_out`). Extra outputs follow `out` in argument order."""
  t = tokens_BxTxF.shape[1]
  if t > net.pos_TxH.shape[0]:
    raise ValueError(f"sequence of {t} tokens is longer than the model's {net.pos_TxH.shape[0]} positions")
  h_BxTxH = net.read_in(tokens_BxTxF) + net.pos_TxH[...][:t]
  hidden, coeffs = [h_BxTxH], []
  for block in net.blocks:
    if return_coefficients:
      h_BxTxH, coeffs_BxTxW = block(h_BxTxH, return_coefficients=True)
      coeffs.append(coeffs_BxTxW)
    else:
      h_BxTxH = block(h_BxTxH)
    hidden.append(h_BxTxH)
  out_BxTxO = net.read_out(h_BxTxH if final is None else final(h_BxTxH))
  out = out_BxTxO[..., 0] if scalar_out else out_BxTxO
  extra = ([jnp.stack(hidden)] if return_hidden else []) + ([jnp.stack(coeffs)] if return_coefficients else [])
  return (out, *extra) if extra else out

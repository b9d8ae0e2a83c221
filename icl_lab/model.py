"""A Flax NNX decoder-only transformer over interleaved (x̃, ỹ) tokens.

Pre-LN blocks (h += Attn(LN(h)); h += MLP(LN(h))), causal softmax multi-head attention,
a GeLU MLP of width mlp_ratio·H, learned absolute positions, a final LayerNorm and a
linear read-out of ŷ. The paper's official release takes the residual from the normalised
stream; we use the standard pre-LN block instead (see README, "Model choices").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab import tasks
from icl_lab.config import ModelConfig, TaskConfig


class CausalSelfAttention(nnx.Module):
  """Softmax attention with separate q, k, v, o projections (the constructions set them)."""

  def __init__(self, hidden: int, heads: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.q = nnx.Linear(hidden, hidden, rngs=rngs)
    self.k = nnx.Linear(hidden, hidden, rngs=rngs)
    self.v = nnx.Linear(hidden, hidden, rngs=rngs)
    self.o = nnx.Linear(hidden, hidden, rngs=rngs)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    b, t, hid = h_BxTxH.shape
    m = self.heads
    split = lambda a: a.reshape(b, t, m, hid // m)
    q_BxTxMxK, k_BxTxMxK, v_BxTxMxK = split(self.q(h_BxTxH)), split(self.k(h_BxTxH)), split(self.v(h_BxTxH))
    logits_BxMxTxT = jnp.einsum("btmk,bsmk->bmts", q_BxTxMxK, k_BxTxMxK) / jnp.sqrt(hid // m)
    causal_TxT = jnp.tril(jnp.ones((t, t), bool))
    logits_BxMxTxT = jnp.where(causal_TxT, logits_BxMxTxT, jnp.finfo(logits_BxMxTxT.dtype).min)
    probs_BxMxTxT = jax.nn.softmax(logits_BxMxTxT, axis=-1)
    out_BxTxMxK = jnp.einsum("bmts,bsmk->btmk", probs_BxMxTxT, v_BxTxMxK)
    return self.o(out_BxTxMxK.reshape(b, t, hid))


class MLP(nnx.Module):
  def __init__(self, hidden: int, width: int, *, rngs: nnx.Rngs):
    self.up = nnx.Linear(hidden, width, rngs=rngs)
    self.down = nnx.Linear(width, hidden, rngs=rngs)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(h_BxTxH)))


class Block(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.attn = CausalSelfAttention(cfg.hidden, cfg.heads, rngs=rngs)
    self.ln2 = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.mlp = MLP(cfg.hidden, cfg.mlp_ratio * cfg.hidden, rngs=rngs)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    h_BxTxH = h_BxTxH + self.attn(self.ln1(h_BxTxH))
    return h_BxTxH + self.mlp(self.ln2(h_BxTxH))


class Transformer(nnx.Module):
  """Maps tokens_BxTxF to a scalar read-out at every position."""

  def __init__(self, cfg: ModelConfig, token_dim: int, max_len: int, *, rngs: nnx.Rngs):
    self.read_in = nnx.Linear(token_dim, cfg.hidden, rngs=rngs)
    self.pos_TxH = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, cfg.hidden)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.layers)])
    self.ln_f = nnx.LayerNorm(cfg.hidden, rngs=rngs)
    self.read_out = nnx.Linear(cfg.hidden, 1, rngs=rngs)

  def __call__(self, tokens_BxTxF: jax.Array, *, return_hidden: bool = False):
    """Returns out_BxT, and with return_hidden also hidden_Lp1xBxTxH: the residual stream
    after the read-in (index 0) and after each of the L blocks (index l)."""
    return run_stack(self, tokens_BxTxF, self.ln_f, return_hidden=return_hidden)


def run_stack(net: nnx.Module, tokens_BxTxF: jax.Array, final=None, *, return_hidden: bool = False):
  """The forward pass shared by Transformer and the LayerNorm-free constructions network: read-in
  plus positions, the blocks, then `final` (a norm, or None) and the read-out of `net`."""
  t = tokens_BxTxF.shape[1]
  if t > net.pos_TxH.shape[0]:
    raise ValueError(f"sequence of {t} tokens is longer than the model's {net.pos_TxH.shape[0]} positions")
  h_BxTxH = net.read_in(tokens_BxTxF) + net.pos_TxH[...][:t]
  hidden = [h_BxTxH]
  for block in net.blocks:
    h_BxTxH = block(h_BxTxH)
    hidden.append(h_BxTxH)
  out_BxT = net.read_out(h_BxTxH if final is None else final(h_BxTxH))[..., 0]
  if return_hidden:
    return out_BxT, jnp.stack(hidden)
  return out_BxT


def build_model(model_cfg: ModelConfig, task_cfg: TaskConfig, seed: int) -> Transformer:
  return Transformer(model_cfg, tasks.token_dim(task_cfg), 2 * task_cfg.num_exemplars,
                     rngs=nnx.Rngs(seed))


def predict(model: Transformer, xs_BxNxD: jax.Array, ys_BxN: jax.Array,
            token_format: str = "paper") -> jax.Array:
  """preds_BxN: ŷᵢ read at x̃ᵢ, which sees x₁..xᵢ and y₁..yᵢ₋₁ only (same signature as learners)."""
  out_Bx2N = model(tasks.encode(xs_BxNxD, ys_BxN, token_format))
  return out_Bx2N[:, 0::2]

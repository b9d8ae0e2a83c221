"""The network the constructions compile to: the lab's Transformer with LayerNorm removed.

`CompiledTransformer` reuses model.py's `CausalSelfAttention` (softmax, causal, q/k/v/o with
bias) and `MLP` (up, tanh-GeLU, down) unchanged, with the same read-in, learned positions
and read-out. The one difference: no LayerNorm (neither ln1/ln2 in the blocks nor ln_f).

Why not keep LayerNorm and neutralise it: a pre-LN block hands its sublayers h/σ(h), and the
state's norm varies per token (it holds x, w, A⁻¹…). The paper's remedy, padding with large
constant rows ±K, makes σ(h) ≈ K·const with relative error ‖content‖²/K², but then the
mean that LayerNorm subtracts carries a rounding error of order eps·K, so float32 bottoms out
near eps^(2/3) before any arithmetic is done. Removing LayerNorm isolates the error of the
primitives themselves; the div primitive is built without it (see primitives.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from icl_lab.models.transformer import MLP, CausalSelfAttention, run_stack


class NormFreeBlock(nnx.Module):
  """h += Attn(h); h += MLP(h): model.Block without its two LayerNorms."""

  def __init__(self, hidden: int, heads: int, mlp_width: int, *, rngs: nnx.Rngs):
    self.attn = CausalSelfAttention(hidden, heads, rngs=rngs)
    self.mlp = MLP(hidden, mlp_width, rngs=rngs)

  def __call__(self, h_BxTxH: jax.Array) -> jax.Array:
    h_BxTxH = h_BxTxH + self.attn(h_BxTxH)
    return h_BxTxH + self.mlp(h_BxTxH)


class CompiledTransformer(nnx.Module):
  """Maps tokens_BxTxF to a scalar read-out at every position; same call as model.Transformer,
  so `icl_lab.tasks.regression.predict(net, xs, ys)` runs it."""

  def __init__(self, token_dim: int, hidden: int, heads: int, mlp_width: int, layers: int,
               max_len: int, *, rngs: nnx.Rngs):
    self.read_in = nnx.Linear(token_dim, hidden, rngs=rngs)
    self.pos_TxH = nnx.Param(jnp.zeros((max_len, hidden)))
    self.blocks = nnx.List([NormFreeBlock(hidden, heads, mlp_width, rngs=rngs) for _ in range(layers)])
    self.read_out = nnx.Linear(hidden, 1, rngs=rngs)

  def __call__(self, tokens_BxTxF: jax.Array, *, return_hidden: bool = False):
    return run_stack(self, tokens_BxTxF, None, return_hidden=return_hidden)


def scan_forward(net: CompiledTransformer):
  """A jitted tokens_BxTxF -> out_BxT equal to net(tokens), scanning one block body over the
  stacked block parameters so that compile time does not grow with depth; networks of the
  same shape share one compiled function."""
  graphs = (nnx.split(net.read_in)[0], nnx.split(net.blocks[0])[0], nnx.split(net.read_out)[0])
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.split(b)[1] for b in net.blocks])
  params = (nnx.split(net.read_in)[1], stacked, nnx.split(net.read_out)[1], net.pos_TxH[...])
  return lambda tokens_BxTxF: _scan_run(graphs, params, tokens_BxTxF)


@functools.partial(jax.jit, static_argnums=0)
def _scan_run(graphs, params, tokens_BxTxF):
  graph_in, graph_blk, graph_out = graphs
  state_in, stacked, state_out, pos_TxH = params
  t = tokens_BxTxF.shape[1]
  h_BxTxH = nnx.merge(graph_in, state_in)(tokens_BxTxF) + pos_TxH[:t]

  def body(h_BxTxH, state):
    return nnx.merge(graph_blk, state)(h_BxTxH), None

  h_BxTxH, _ = jax.lax.scan(body, h_BxTxH, stacked)
  return nnx.merge(graph_out, state_out)(h_BxTxH)[..., 0]

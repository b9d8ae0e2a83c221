"""Compiles a program (a layout and a list of primitive layers) into CompiledTransformer weights.

Conventions every program shares:
- Tokens are the paper's format: x̃ = [0, x], ỹ = [y, 0_d], interleaved; x̃ⱼ sits at position
  p = 2j − 2 (0-based) and the prediction for yⱼ is read there.
- The read-in copies the token into rows "tok" and its bias sets "one" = 1 and each program
  constant (e.g. A⁻¹ = I/λ); the learned positions hold p, p² and, when asked for, "isy"
  (1 on y-tokens) and "cnt" (y-tokens at positions ≤ p, divided by n).
- A `Read` head scores key s against query p by −β(s − (p − offset))², up to terms that are
  constant in s; a gap of β between the best and the next position makes the softmax a hard
  read (e^−β underflows in float32 for β = 200, and is ~1e-87 in float64).
- Heads are groups of reads with the same address; a group wider than the head dimension
  H/M is split across heads. H grows until every layer's groups fit in M heads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from icl_lab.constructions.network import CompiledTransformer
from icl_lab.constructions.primitives import C0, Affine, Layer, Layout, MeanOverY, Mul, Read, Recip, recip_knots

DEFAULT_BETA = 200.0
# The mul scale s at which truncation (≈ 2κs²) and rounding (≈ eps/s) errors roughly balance.
DEFAULT_SCALE = {"float32": 1e-3, "float64": 2e-6}
# Sharpness of the Recip units, per knot spacing: gelu(ρz)/ρ is relu(z) to ~1e-9 once |ρz| ≥ 6.
RECIP_SHARPNESS = 30.0


@dataclasses.dataclass
class Program:
  """What a construction computes, before weights: layout, layers, read-out row and constants."""

  name: str
  d: int
  n: int  # the most (x, y) pairs a prompt may have: the network has 2n positions
  layout: Layout
  layers: list[Layer]
  readout: int
  constants: dict[int, float]
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


class ProgramBuilder:
  """Allocates rows and appends layers; `build` returns the Program."""

  def __init__(self, name: str, d: int, n: int, **meta):
    self.name, self.d, self.n, self.meta = name, d, n, meta
    self.layout = Layout()
    tok = self.layout.alloc("tok", d + 1)
    self.tok_y, self.tok_x = tok[:1], tok[1:]
    self.one = self.layout.alloc("one", 1)[0]
    self.pos = self.layout.alloc("pos", 1)[0]
    self.pos2 = self.layout.alloc("pos2", 1)[0]
    self.layers: list[Layer] = []
    self.constants: dict[int, float] = {}

  def alloc(self, name: str, size: int) -> tuple[int, ...]:
    return self.layout.alloc(name, size)

  def feature(self, name: str) -> int:
    """A position feature row ("isy" or "cnt"), allocated on first use."""
    if name not in ("isy", "cnt"):
      raise ValueError(f"unknown position feature {name!r}; accepted: isy, cnt")
    if name not in self.layout:
      self.layout.alloc(name, 1)
    return self.layout[name][0]

  def layer(self, attn=(), mlp=()) -> None:
    self.layers.append(Layer(list(attn), list(mlp)))

  def extend(self, layers: list[Layer]) -> None:
    self.layers.extend(layers)

  def build(self, readout: int) -> Program:
    return Program(self.name, self.d, self.n, self.layout, self.layers, readout,
                   dict(self.constants), dict(self.meta))


# ---------------------------------------------------------------------------
# Sizing


def _head_groups(layer: Layer) -> list[tuple[tuple, list[tuple[int, int, float]]]]:
  """Reads grouped by address: [(address, [(src, dst, sign), ...])]."""
  groups: dict[tuple, list[tuple[int, int, float]]] = {}
  for op in layer.attn:
    if isinstance(op, Read):
      key = ("read", op.offset)
      sign = op.sign
    elif isinstance(op, MeanOverY):
      key, sign = ("meany",), 1.0
    else:
      raise TypeError(f"{type(op).__name__} is not an attention op")
    if len(op.src) != len(op.dst):
      raise ValueError(f"{op}: src and dst must have the same number of rows")
    groups.setdefault(key, []).extend((s, t, sign) for s, t in zip(op.src, op.dst))
  return list(groups.items())


def _heads_needed(layer: Layer, head_dim: int) -> int:
  return sum(math.ceil(len(ch) / head_dim) for _, ch in _head_groups(layer))


def _mlp_units(layer: Layer) -> int:
  lin_src = {s for op in layer.mlp if isinstance(op, Affine) for s, _ in op.terms}
  lin_src |= {op.src for op in layer.mlp if isinstance(op, Recip)}
  units = 2 * len(lin_src)
  for op in layer.mlp:
    if isinstance(op, Mul):
      units += 2 if op.a == op.b else 4
    elif isinstance(op, Recip):
      units += op.knots - 1
    elif not isinstance(op, Affine):
      raise TypeError(f"{type(op).__name__} is not an MLP op")
  return units


@dataclasses.dataclass(frozen=True)
class Shape:
  """The architecture a program needs."""

  token_dim: int
  hidden: int
  heads: int
  mlp_width: int
  layers: int
  max_len: int

  def param_count(self) -> int:
    h, w, f = self.hidden, self.mlp_width, self.token_dim
    block = 4 * (h * h + h) + (h * w + w) + (w * h + h)
    return (f * h + h) + self.max_len * h + self.layers * block + (h + 1)


def shape_of(prog: Program, heads: int = 2) -> Shape:
  """The smallest hidden width (a multiple of `heads`, at least the layout) whose heads fit."""
  for i, layer in enumerate(prog.layers):
    if len(_head_groups(layer)) > heads:
      raise ValueError(f"layer {i} of {prog.name!r} reads from {len(_head_groups(layer))} addresses; "
                       f"each needs its own head, so heads={heads} is too few")
  hidden = max(prog.layout.size, 2 * heads)
  hidden += (-hidden) % heads
  while any(_heads_needed(layer, hidden // heads) > heads for layer in prog.layers):
    hidden += heads
  # Read heads need two query/key dims; a head dimension of at least 2 is ensured above.
  width = max([1] + [_mlp_units(layer) for layer in prog.layers])
  return Shape(prog.d + 1, hidden, heads, width, max(1, len(prog.layers)), 2 * prog.n)


# ---------------------------------------------------------------------------
# Weights


def _attn_weights(layer: Layer, hidden: int, heads: int, beta: float, feat: dict[str, int]):
  kdim = hidden // heads
  wq, wk, wv, wo = (np.zeros((hidden, hidden)) for _ in range(4))
  bq = np.zeros(hidden)
  # The model divides logits by √K; scale the query so the logit gap is β.
  qs = beta * math.sqrt(kdim)
  m = 0
  for address, channels in _head_groups(layer):
    for start in range(0, len(channels), kdim):
      base = m * kdim
      if address[0] == "read":
        offset = address[1]
        # logit = β(2s(p − o) − s²) = −β(s − (p − o))² + (terms constant in s)
        wq[feat["pos"], base] = 2 * qs
        bq[base] = -2 * qs * offset
        bq[base + 1] = -qs
        wk[feat["pos"], base] = 1.0
        wk[feat["pos2"], base + 1] = 1.0
      else:
        # logit = β·isy(s): uniform over the visible y-tokens.
        bq[base] = qs
        wk[feat["isy"], base] = 1.0
      for c, (src, dst, sign) in enumerate(channels[start:start + kdim]):
        wv[src, base + c] = 1.0
        wo[base + c, dst] += sign
      m += 1
  assert m <= heads
  zeros = np.zeros(hidden)
  return dict(q=(wq, bq), k=(wk, zeros), v=(wv, zeros), o=(wo, zeros))


def _mlp_weights(layer: Layer, hidden: int, width: int, scale: float):
  up, bup = np.zeros((hidden, width)), np.zeros(width)
  down, bdown = np.zeros((width, hidden)), np.zeros(hidden)
  ident: dict[int, tuple[int, int]] = {}
  u = 0

  def identity_units(src: int) -> tuple[int, int]:
    # gelu(z) − gelu(−z) = z exactly, so a unit pair passes h[src] through linearly.
    nonlocal u
    if src not in ident:
      up[src, u], up[src, u + 1] = 1.0, -1.0
      ident[src] = (u, u + 1)
      u += 2
    return ident[src]

  for op in layer.mlp:
    if isinstance(op, Affine):
      for src, coef in op.terms:
        pos, neg = identity_units(src)
        down[pos, op.dst] += coef
        down[neg, op.dst] -= coef
      bdown[op.dst] += op.const
    elif isinstance(op, Mul):
      sa, sb = scale / op.mag_a, scale / op.mag_b
      # (gelu(z) + gelu(−z)) / C0 ≈ z² for small z; with z = sa·a ± sb·b,
      # ab = ((sa·a + sb·b)² − (sa·a − sb·b)²) / (4·sa·sb).
      if op.a == op.b:
        sig = math.sqrt(sa * sb)
        up[op.a, u], up[op.a, u + 1] = sig, -sig
        down[u:u + 2, op.dst] += op.coef / (C0 * sig**2)
        u += 2
      else:
        out = op.coef / (4 * C0 * sa * sb)
        for j, (ca, cb, sgn) in enumerate([(1, 1, 1), (-1, -1, 1), (1, -1, -1), (-1, 1, -1)]):
          up[op.a, u + j] += ca * sa
          up[op.b, u + j] += cb * sb
          down[u + j, op.dst] += sgn * out
        u += 4
    elif isinstance(op, Recip):
      t_K = recip_knots(op.lo, op.hi, op.knots)
      slopes = -1.0 / (t_K[:-1] * t_K[1:])
      # f(b) = 1/t₀ + slope₀(b − t₀) + Σₖ Δslopeₖ relu(b − tₖ): the linear part exactly,
      # each kink from a GeLU sharp enough to be a ReLU away from its knot.
      pos, neg = identity_units(op.src)
      down[pos, op.dst] += slopes[0]
      down[neg, op.dst] -= slopes[0]
      bdown[op.dst] += 1.0 / t_K[0] - slopes[0] * t_K[0]
      dslope = np.diff(np.concatenate([slopes, [0.0]]))
      for k in range(1, op.knots):
        rho = RECIP_SHARPNESS / (t_K[k] - t_K[k - 1])
        up[op.src, u], bup[u] = rho, -rho * t_K[k]
        down[u, op.dst] += dslope[k - 1] / rho
        u += 1
    else:
      raise TypeError(f"{type(op).__name__} is not an MLP op")
  assert u <= width
  return dict(up=(up, bup), down=(down, bdown))


def _positions(prog: Program, t: int, hid: int, feat: dict[str, int]) -> np.ndarray:
  p_T = np.arange(t, dtype=np.float64)
  pos_TxH = np.zeros((t, hid))
  pos_TxH[:, feat["pos"]] = p_T
  pos_TxH[:, feat["pos2"]] = p_T**2
  if "isy" in feat:
    pos_TxH[:, feat["isy"]] = p_T % 2
  if "cnt" in feat:
    pos_TxH[:, feat["cnt"]] = np.floor((p_T + 1) / 2) / prog.n
  return pos_TxH


def compile_program(prog: Program, *, heads: int = 2, dtype: str = "float32",
                    scale: float | None = None, beta: float = DEFAULT_BETA) -> CompiledTransformer:
  """The CompiledTransformer whose ordinary forward pass runs `prog`.

  scale: the mul scale s (the approximation knob; exact as s → 0 up to float rounding);
  defaults to DEFAULT_SCALE[dtype]. float64 needs `with jax.enable_x64(True):` around both
  compiling and running.
  """
  if dtype not in DEFAULT_SCALE:
    raise ValueError(f"dtype={dtype!r} is not accepted; use float32 or float64")
  if dtype == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("dtype='float64' needs 64-bit JAX: wrap the call in `with jax.enable_x64(True):`")
  scale = DEFAULT_SCALE[dtype] if scale is None else scale
  shape = shape_of(prog, heads)
  hid, t = shape.hidden, shape.max_len
  lay = prog.layout
  feat = {name: lay[name][0] for name in ("pos", "pos2", "isy", "cnt") if name in lay}

  cast = lambda a: jnp.asarray(a, dtype)
  linear = lambda kernel, bias: {"kernel": cast(kernel), "bias": cast(bias)}

  w_in, b_in = np.zeros((shape.token_dim, hid)), np.zeros(hid)
  for f, row in enumerate(lay["tok"]):
    w_in[f, row] = 1.0
  b_in[lay["one"][0]] = 1.0
  for row, value in prog.constants.items():
    b_in[row] += value

  pos_TxH = _positions(prog, t, hid, feat)

  w_out = np.zeros((hid, 1))
  w_out[prog.readout, 0] = 1.0

  def block_params(layer: Layer) -> dict:
    attn = _attn_weights(layer, hid, heads, beta, feat)
    mlp = _mlp_weights(layer, hid, shape.mlp_width, scale)
    return {"attn": {k: linear(*v) for k, v in attn.items()},
            "mlp": {k: linear(*v) for k, v in mlp.items()}}

  layers = prog.layers or [Layer()]
  # Building the graph from a one-block template and merging each block's weights in costs
  # milliseconds; initialising a deep network only to overwrite it costs seconds.
  template = nnx.eval_shape(lambda: CompiledTransformer(shape.token_dim, hid, heads, shape.mlp_width,
                                                        1, t, rngs=nnx.Rngs(0)))
  graph_net, _ = nnx.split(template)
  graph_blk, _ = nnx.split(template.blocks[0])
  net = nnx.merge(graph_net, {"read_in": linear(w_in, b_in), "pos_TxH": cast(pos_TxH),
                              "read_out": linear(w_out, np.zeros(1)),
                              "blocks": {0: block_params(layers[0])}})
  net.blocks = nnx.List([nnx.merge(graph_blk, block_params(layer)) for layer in layers])
  return net


def nonzero_params(prog: Program, heads: int = 2) -> int:
  """Weights the program actually sets: most of each uniform-width matrix stays zero."""
  shape = shape_of(prog, heads)
  hid = shape.hidden
  lay = prog.layout
  feat = {name: lay[name][0] for name in ("pos", "pos2", "isy", "cnt") if name in lay}
  count = (prog.d + 1) + 1 + len(prog.constants) + 1  # read-in copy, "one", constants, read-out
  count += int(np.count_nonzero(_positions(prog, shape.max_len, hid, feat)))
  for layer in prog.layers:
    for arrays in (_attn_weights(layer, hid, heads, DEFAULT_BETA, feat),
                   _mlp_weights(layer, hid, shape.mlp_width, DEFAULT_SCALE["float32"])):
      count += sum(int(np.count_nonzero(a)) for pair in arrays.values() for a in pair)
  return count


def size_of(prog: Program, heads: int = 2, *, nonzero: bool = False) -> dict[str, Any]:
  """Layers, heads, hidden width, MLP width and parameter count of the compiled network
  (and, with nonzero=True, how many of those parameters are nonzero)."""
  s = shape_of(prog, heads)
  out = dict(name=prog.name, d=prog.d, n=prog.n, layers=s.layers, heads=s.heads,
             hidden=s.hidden, layout_rows=prog.layout.size, mlp_width=s.mlp_width,
             params=s.param_count(), **prog.meta)
  if nonzero:
    out["nonzero_params"] = nonzero_params(prog, heads)
  return out

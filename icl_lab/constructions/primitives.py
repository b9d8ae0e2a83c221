"""The primitive operations of a hand-compiled transformer, and the arithmetic they rest on.

A program works on a residual stream laid out in named row blocks (`Layout`): the token's
own rows, position features, and scratch rows, so the hidden state is wider than the token
(as in Akyürek et al. 2023, App. A–C). Each primitive names the sublayer that runs it:

- `Read` (the paper's mov): an attention head reads rows of another position, picked by
  position alone (p − offset, the nearest visible one when p − offset < 0).
- `MeanOverY`: an attention head averages rows over the y-tokens it can see (batch GD).
- `Affine` (aff): h[dst] += Σ c·h[src] + const. MLP units in pairs use the identity
  gelu(z) − gelu(−z) = z, exact for both the erf and the tanh GeLU (tanh is odd).
- `Mul` (mul): h[dst] += c·h[a]·h[b] from GeLU's quadratic regime at small scale:
  gelu(sz) + gelu(−sz) = c₀s²z²(1 + κs²z² + O(s⁴z⁴)), c₀ = √(2/π), and
  ab = ((a+b)² − (a−b)²)/4. The result is ab(1 + 2κs²(a²+b²)) + O(s⁴): the error falls
  as s² until float rounding (≈ eps/s relative) takes over.
- `Recip` (the first half of div): a piecewise-linear fit of 1/b on geometric knots, built
  from GeLUs at large scale (where gelu(ρz)/ρ ≈ relu(z)). `div` then refines it by Newton
  steps r ← r(2 − br), each two `Mul` layers, so the error squares per step.
  The paper divides with LayerNorm; our variant network has none (see network.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

C0 = math.sqrt(2.0 / math.pi)  # gelu(z) + gelu(−z) = C0·z² + O(z⁴)
# For the tanh GeLU, z·tanh(C0(z + 0.044715z³)) = C0 z²(1 + KAPPA z² + O(z⁴)).
KAPPA = 0.044715 - C0**2 / 3.0


def gelu(z):
  """The tanh-approximate GeLU that jax.nn.gelu (and so the lab's MLP) uses, in numpy."""
  z = np.asarray(z, np.float64)
  return 0.5 * z * (1.0 + np.tanh(C0 * (z + 0.044715 * z**3)))


def square_approx(z, scale: float):
  """z² from two GeLUs at small scale: (gelu(sz) + gelu(−sz)) / (C0 s²)."""
  z = np.asarray(z, np.float64)
  return (gelu(scale * z) + gelu(-scale * z)) / (C0 * scale**2)


def mul_approx(a, b, scale: float):
  """ab by polarisation of `square_approx`: four GeLU units."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (square_approx(a + b, scale) - square_approx(a - b, scale)) / 4.0


def mul_error_leading(a, b, scale: float):
  """The leading term of mul_approx(a, b, s) − ab: 2κs²·ab(a² + b²)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return 2.0 * KAPPA * scale**2 * a * b * (a**2 + b**2)


def recip_knots(lo: float, hi: float, knots: int) -> np.ndarray:
  return np.geomspace(lo, hi, knots)


def recip_pwl(b, lo: float, hi: float, knots: int):
  """The exact piecewise-linear seed that `Recip` approximates: 1/b interpolated on geometric
  knots in [lo, hi], extended linearly below lo and flat (1/hi) above hi."""
  return _pwl_eval(b, recip_knots(lo, hi, knots))


def _pwl_eval(b, t_K):
  b = np.asarray(b, np.float64)
  slopes = -1.0 / (t_K[:-1] * t_K[1:])
  out = 1.0 / t_K[0] + slopes[0] * (b - t_K[0])
  dslope = np.diff(np.concatenate([slopes, [0.0]]))
  for k in range(1, len(t_K)):
    out = out + dslope[k - 1] * np.maximum(b - t_K[k], 0.0)
  return out


def recip_seed_error(lo: float, hi: float, knots: int) -> float:
  """Worst relative error |b·f(b) − 1| of the piecewise-linear seed on [lo, hi]."""
  # Between knots t and rt, with x = b/t: b·f(b) = x(r + 1 − x)/r, largest at x = (r + 1)/2.
  r = (hi / lo) ** (1.0 / (knots - 1))
  return float((r - 1.0) ** 2 / (4.0 * r))


def newton_error(seed_error: float, steps: int) -> float:
  """r ← r(2 − br) maps the relative error e to e²."""
  return seed_error ** (2**steps)


# ---------------------------------------------------------------------------
# The residual-stream layout


class Layout:
  """Named blocks of rows in the hidden state."""

  def __init__(self):
    self.blocks: dict[str, tuple[int, ...]] = {}
    self.size = 0

  def alloc(self, name: str, n: int) -> tuple[int, ...]:
    if name in self.blocks:
      raise ValueError(f"row block {name!r} is already allocated")
    rows = tuple(range(self.size, self.size + n))
    self.blocks[name] = rows
    self.size += n
    return rows

  def __getitem__(self, name: str) -> tuple[int, ...]:
    return self.blocks[name]

  def __contains__(self, name: str) -> bool:
    return name in self.blocks


# ---------------------------------------------------------------------------
# Primitive operations (rows are absolute indices into the hidden state)


@dataclasses.dataclass(frozen=True)
class Read:
  """Attention (mov): h_p[dst] += sign · h_s[src], with s the visible position nearest p − offset."""

  dst: tuple[int, ...]
  src: tuple[int, ...]
  offset: int
  sign: float = 1.0


@dataclasses.dataclass(frozen=True)
class MeanOverY:
  """Attention: h_p[dst] += the mean of h_s[src] over the y-token positions s ≤ p.

  At p = 0 no y-token is visible and the head reads position 0 itself."""

  dst: tuple[int, ...]
  src: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Affine:
  """MLP (aff): h[dst] += Σ coef · h[src] + const, exact."""

  dst: int
  terms: tuple[tuple[int, float], ...] = ()
  const: float = 0.0


@dataclasses.dataclass(frozen=True)
class Mul:
  """MLP (mul): h[dst] += coef · h[a] · h[b].

  mag_a, mag_b: the typical sizes of h[a] and h[b]. The GeLUs see scale·(a/mag_a ± b/mag_b),
  so the relative error is about 2κ·scale²·((a/mag_a)² + (b/mag_b)²) and the rounding error
  grows with the imbalance between a/mag_a and b/mag_b: balanced hints matter in float32.
  """

  dst: int
  a: int
  b: int
  coef: float = 1.0
  mag_a: float = 1.0
  mag_b: float = 1.0


@dataclasses.dataclass(frozen=True)
class Recip:
  """MLP: h[dst] += the piecewise-linear fit of 1/h[src] on `knots` geometric knots in [lo, hi]."""

  dst: int
  src: int
  lo: float
  hi: float
  knots: int = 64


@dataclasses.dataclass
class Layer:
  """One pre-norm-free block: its attention ops run first, then its MLP ops see the result."""

  attn: list = dataclasses.field(default_factory=list)
  mlp: list = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------
# Multi-layer macros


def clear(rows) -> list[Affine]:
  """MLP ops that zero scratch rows (h[r] −= h[r]) so a later round can reuse them."""
  return [Affine(r, ((r, -1.0),)) for r in rows]


def div_layers(dst: tuple[int, ...], num: tuple[int, ...], den: int, scratch_r: int, scratch_t: int,
               *, lo: float, hi: float, knots: int, newton_steps: int, num_mag: float,
               den_mag: float) -> list[Layer]:
  """div: h[dst_i] += h[num_i] / h[den] for den in [lo, hi], as 2 + 2·newton_steps MLP layers.

  r ≈ 1/den from `Recip`, then Newton r ← r(2 − den·r) (t = den·r in scratch_t), then
  dst = num·r. den_mag is den's typical size; r's is taken as 1/den_mag. Leaves scratch_r
  holding r; the caller clears it.
  """
  r_mag = 1.0 / den_mag
  layers = [Layer(mlp=[Recip(scratch_r, den, lo, hi, knots)])]
  for _ in range(newton_steps):
    layers.append(Layer(mlp=[Mul(scratch_t, den, scratch_r, 1.0, den_mag, r_mag)]))
    layers.append(Layer(mlp=[Affine(scratch_r, ((scratch_r, 1.0),)),
                             Mul(scratch_r, scratch_r, scratch_t, -1.0, r_mag, 1.0)]
                        + clear([scratch_t])))
  layers.append(Layer(mlp=[Mul(d, n, scratch_r, 1.0, num_mag, r_mag) for d, n in zip(dst, num)]))
  return layers


# The paper's names for the primitives.
mov, aff, mul, div = Read, Affine, Mul, div_layers

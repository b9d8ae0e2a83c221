"""Theorem 2: a transformer whose predictions are ridge regression, by Sherman–Morrison updates.

Each column carries A⁻¹ (d² rows, row-major) and w. Starting from A₀⁻¹ = I/λ and w₀ = 0 (read-in
constants), one round applies the recursive-least-squares form of one Sherman–Morrison step
on a pair (x, y):

  u = A⁻¹x,  b = 1 + xᵀu,  g = u/b  (= A_new⁻¹x),
  A_new⁻¹ = A⁻¹ − g uᵀ,  w_new = w + g (y − xᵀw),

so that after pairs 1..i, A⁻¹ = (λI + XᵀX)⁻¹ and w = (λI + XᵀX)⁻¹Xᵀy: ridge(λ) exactly.
As in gd.sgd_program, round r at x̃ⱼ's column reads the previous x-column's (A⁻¹, w) and
applies the step on (xⱼ₋₁, yⱼ₋₁), so n − 1 rounds give ridge on every prefix. Column 1 gets
x = 0 (a cancelling head), for which the step is the identity.

Per round: 1 layer (mov + u, y − xᵀw), 1 (b), 2 + 2·newton_steps (div: b⁻¹ and g = u/b),
1 (the rank-one update): 5 + 2·newton_steps layers, constant in d; width O(d²).
Depth therefore grows as O(n): the updates are sequential in the examples. The paper counts
one update; a network for n pairs has (n − 1) rounds.

div is approximate: b = 1 + xᵀA⁻¹x lies in [1, 1 + ‖x‖²/λ]; the piecewise-linear seed covers
[1, b_max] (beyond 2·b_max Newton would diverge) and Newton squares its error per step.
"""

from __future__ import annotations

from icl_lab.constructions.compiler import Program, ProgramBuilder
from icl_lab.constructions.primitives import Affine, Mul, Read, clear, div_layers


def ridge_program(d: int, n: int, lam: float, *, knots: int = 64, newton_steps: int = 2,
                  b_max: float | None = None) -> Program:
  """ridge(λ) on the pairs before each query, via n − 1 rounds of Sherman–Morrison."""
  if lam <= 0:
    raise ValueError(f"lam={lam} must be > 0")
  # ‖x‖² ≤ 25d covers x ~ N(0, I) with a wide margin (its mean is d).
  b_max = 1.0 + 25.0 * d / lam if b_max is None else b_max
  b = ProgramBuilder("ridge", d, n, learner=f"ridge({lam})", lam=lam, knots=knots,
                     newton_steps=newton_steps, b_max=b_max,
                     layers_per_step=5 + 2 * newton_steps, width_order="O(d^2)")
  a_inv = b.alloc("a_inv", d * d)
  w = b.alloc("w", d)
  x_prev = b.alloc("x_prev", d)
  y_prev = b.alloc("y_prev", 1)[0]
  u = b.alloc("u", d)
  err = b.alloc("err", 1)[0]
  den = b.alloc("den", 1)[0]
  r = b.alloc("recip", 1)[0]
  t = b.alloc("newton_t", 1)[0]
  g = b.alloc("gain", d)
  pred = b.alloc("pred", 1)[0]
  for k in range(d):
    b.constants[a_inv[k * d + k]] = 1.0 / lam
  state = a_inv + w
  # Typical operand sizes (see primitives.Mul). Over the rounds A⁻¹ falls from I/λ towards
  # I/i, u = A⁻¹x from x/λ to x/i and b from d/λ to 1, so the hints sit mid-range
  # (geometrically): they matter for float32 only.
  mag_a = 1.0 / lam
  mag_u = 1.0 / lam**0.5
  mag_b = (1.0 + d / lam) ** 0.5
  for rnd in range(1, n):
    if rnd == 1:
      attn = [Read(x_prev, b.tok_x, 2), Read(x_prev, b.tok_x, 1, -1.0), Read((y_prev,), b.tok_y, 1)]
    else:
      attn = [Read(state, state, 2), Read(state, state, 0, -1.0)]
    # u = A⁻¹x; err = y − xᵀw
    mlp = [Mul(u[k], a_inv[k * d + l], x_prev[l], 1.0, mag_a, 1.0) for k in range(d) for l in range(d)]
    mlp += [Affine(err, ((y_prev, 1.0),))] + [Mul(err, x_prev[k], w[k], -1.0) for k in range(d)]
    b.layer(attn, mlp)
    # b = 1 + xᵀu
    b.layer([], [Affine(den, const=1.0)] + [Mul(den, x_prev[k], u[k], 1.0, 1.0, mag_u) for k in range(d)])
    # g = u / b
    b.extend(div_layers(g, u, den, r, t, lo=1.0, hi=b_max, knots=knots, newton_steps=newton_steps,
                        num_mag=mag_u, den_mag=mag_b))
    # A⁻¹ ← A⁻¹ − g uᵀ; w ← w + g·err; clear the scratch rows for the next round.
    mlp = [Mul(a_inv[k * d + l], g[k], u[l], -1.0, mag_u / mag_b, mag_u) for k in range(d) for l in range(d)]
    mlp += [Mul(w[k], g[k], err, 1.0, mag_u / mag_b, 1.0) for k in range(d)]
    mlp += clear(u + g + (err, den, r))
    b.layer([], mlp)
  b.layer([], [Mul(pred, b.tok_x[k], w[k]) for k in range(d)])
  return b.build(pred)

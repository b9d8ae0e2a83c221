"""Theorem 1 and its batch variant: transformers whose predictions are gradient-descent fits.

`sgd_program` (Theorem 1). Each round is two layers and one GD step on a single example,
  w ← w − 2α x(xᵀw − y), with O(d) hidden width. Round r at x̃ⱼ's column reads the weight of
  x̃ⱼ₋₁'s column (mov, offset 2) and applies the step on (xⱼ₋₁, yⱼ₋₁), moved in once by the
  first layer. After r rounds column j holds SGD started at w = 0 on pairs j−r..j−1 in
  order, so n − 1 rounds give exactly one-pass SGD(α) at every column: the learner
  `learners.sgd(α)`. Depth 2(n − 1) + 1: constant per example, O(n) in all.
  Column 1 has no previous pair: the heads that would read one land on column 1 itself,
  and a cancelling head (offset 1 with sign −1) zeroes the moved x there, so its step
  is the identity and column 1 stays a fixed point.

`gd_program` (batch GD by attention averaging). y-tokens form xᵢyᵢ (and xᵢxᵢᵀ), one head
  averages them over the y-tokens before the query (softmax with equal logits), and the
  count j − 1 (a position feature) turns the mean into the sum. The first step from w₀ = 0 is
  w = 2α Σ xᵢyᵢ; each further step w ← w − 2α(Gw − c), G = XᵀX, c = Xᵀy, is one MLP layer.
  This is `learners.gd(α, steps=k)`: depth k + 2, width O(d) for k = 1 and O(d²) for k ≥ 2.
"""

from __future__ import annotations

from icl_lab.constructions.compiler import Program, ProgramBuilder
from icl_lab.constructions.primitives import Affine, MeanOverY, Mul, Read, clear

# Typical operand sizes for the products (see primitives.Mul): x ~ N(0, I), |w| ~ 1.


def sgd_program(d: int, n: int, alpha: float) -> Program:
  """One-pass SGD(α) from w₀ = 0: Theorem 1's single-example GD step, once per example."""
  b = ProgramBuilder("sgd", d, n, learner=f"sgd({alpha})", alpha=alpha,
                     layers_per_step=2, width_order="O(d)")
  w = b.alloc("w", d)
  x_prev = b.alloc("x_prev", d)
  y_prev = b.alloc("y_prev", 1)[0]
  err = b.alloc("err", 1)[0]
  pred = b.alloc("pred", 1)[0]
  for r in range(1, n):
    if r == 1:
      # x̃ⱼ₋₁ sits 2 back, ỹⱼ₋₁ 1 back. The offset-1 head also subtracts the x rows it reads:
      # those of a y-token (0) except at column 1, where both heads read column 1 itself.
      attn = [Read(x_prev, b.tok_x, 2), Read(x_prev, b.tok_x, 1, -1.0), Read((y_prev,), b.tok_y, 1)]
    else:
      # w of the previous x-column replaces this column's w.
      attn = [Read(w, w, 2), Read(w, w, 0, -1.0)]
    # err = y − xᵀw
    mlp = [Affine(err, ((y_prev, 1.0),))]
    mlp += [Mul(err, x_prev[k], w[k], -1.0) for k in range(d)]
    b.layer(attn, mlp)
    # w ← w + 2α·x·err
    b.layer([], [Mul(w[k], x_prev[k], err, 2.0 * alpha, 1.0, 2.0) for k in range(d)] + clear([err]))
  b.layer([], [Mul(pred, b.tok_x[k], w[k]) for k in range(d)])
  return b.build(pred)


def gd_program(d: int, n: int, alpha: float, steps: int = 1) -> Program:
  """`steps` steps of batch GD(α) from w₀ = 0 on the pairs before each query."""
  if steps < 1:
    raise ValueError(f"steps={steps} must be >= 1")
  b = ProgramBuilder("gd" if steps == 1 else f"gd{steps}", d, n,
                     learner=f"gd({alpha})" if steps == 1 else f"gd_k({alpha},{steps})",
                     alpha=alpha, steps=steps, layers_per_step=1,
                     width_order="O(d)" if steps == 1 else "O(d^2)")
  cnt = b.feature("cnt")
  b.feature("isy")
  x_here = b.alloc("x_here", d)
  xy = b.alloc("xy", d)
  mean_xy = b.alloc("mean_xy", d)
  w = b.alloc("w", d)
  pred = b.alloc("pred", 1)[0]
  pairs = [(k, l) for k in range(d) for l in range(k, d)]
  if steps > 1:
    xx = b.alloc("xx", d * d)
    mean_xx = b.alloc("mean_xx", d * d)
    gram = b.alloc("gram", d * d)
    xty = b.alloc("xty", d)

  # Layer 0: at ỹᵢ, bring xᵢ over from x̃ᵢ and form xᵢyᵢ (and xᵢxᵢᵀ). On x-tokens the y row is 0,
  # so xy = 0 there; xx is nonzero on x̃₁ only, where the count below is 0.
  mlp = [Mul(xy[k], x_here[k], b.tok_y[0], 1.0, 1.0, d ** 0.5) for k in range(d)]
  if steps > 1:
    for k, l in pairs:
      mlp.append(Mul(xx[k * d + l], x_here[k], x_here[l]))
      if k != l:
        mlp.append(Mul(xx[l * d + k], x_here[k], x_here[l]))
  b.layer([Read(x_here, b.tok_x, 1)], mlp)

  # Layer 1: means over the visible y-tokens, then × count (cnt = (j − 1)/n, so the coefficient
  # carries n): w = 2α·Σᵢ xᵢyᵢ, and c, G for the later steps.
  attn = [MeanOverY(mean_xy, xy)]
  mlp = [Mul(w[k], cnt, mean_xy[k], 2.0 * alpha * n, 0.5, 0.5) for k in range(d)]
  if steps > 1:
    attn.append(MeanOverY(mean_xx, xx))
    mlp += [Mul(xty[k], cnt, mean_xy[k], float(n), 0.5, 0.5) for k in range(d)]
    mlp += [Mul(gram[i], cnt, mean_xx[i], float(n), 0.5, 1.0) for i in range(d * d)]
  b.layer(attn, mlp)

  # Layers 2..steps: w ← w − 2α(Gw − c).
  for _ in range(steps - 1):
    mlp = [Affine(w[k], ((xty[k], 2.0 * alpha),)) for k in range(d)]
    mlp += [Mul(w[k], gram[k * d + l], w[l], -2.0 * alpha, n / 2.0, 1.0) for k in range(d) for l in range(d)]
    b.layer([], mlp)

  b.layer([], [Mul(pred, b.tok_x[k], w[k]) for k in range(d)])
  return b.build(pred)

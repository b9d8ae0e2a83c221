"""Training throughput at the `quick` model size, against a large float32 matmul measured here.

Prints steps/s, tokens/s and achieved GFLOP/s (XLA's own FLOP count of the compiled step) for
the fused multi-step call and for one step per call, and each as a fraction of matmul peak.

  python benchmarks/bench_train.py [--steps 300] [--preset quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from icl_lab import config, train


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best / 1e9


def step_flops(multi_step, state) -> float:
  """XLA's FLOP count of one training step (compiled, not run)."""
  # XLA counts a scan body once, so take the FLOPs of a single-step compile.
  cost = multi_step.lower(state, jnp.asarray(0, jnp.int32), 1).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def train_throughput(cfg: config.Config, steps: int, steps_per_call: int) -> dict[str, float]:
  tx = train.make_optimizer(cfg.train)
  graphdef, state = train.init_state(cfg, tx)
  multi_step = train.make_multi_step(cfg, graphdef, tx, mesh=None)
  start = jnp.asarray(0, jnp.int32)
  flops_per_step = step_flops(multi_step, state)
  state, m = multi_step(state, start, steps_per_call)  # compile + warm up
  jax.block_until_ready(m)
  calls = max(steps // steps_per_call, 1)
  t0 = time.perf_counter()
  for c in range(calls):
    state, m = multi_step(state, jnp.asarray((c + 1) * steps_per_call, jnp.int32), steps_per_call)
  jax.block_until_ready(m)
  dt = time.perf_counter() - t0
  sps = calls * steps_per_call / dt
  tokens = cfg.train.batch_size * 2 * cfg.task.num_exemplars
  return {"steps_per_s": sps, "tokens_per_s": sps * tokens, "gflops": sps * flops_per_step / 1e9,
          "flops_per_step": flops_per_step}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--preset", default="quick")
  p.add_argument("--steps", type=int, default=300)
  args = p.parse_args()
  cfg = config.get_preset(args.preset)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; model {train.config_summary(cfg)}")
  peak = matmul_gflops()
  print(f"float32 2048x2048 matmul: {peak:.1f} GFLOP/s (baseline, measured now)")
  for k in (cfg.train.steps_per_call, 1):
    r = train_throughput(cfg, args.steps, k)
    print(f"steps_per_call={k:4d}: {r['steps_per_s']:.1f} steps/s, {r['tokens_per_s']:.0f} tokens/s, "
          f"{r['gflops']:.1f} GFLOP/s ({r['flops_per_step'] / 1e9:.2f} GFLOP/step) "
          f"= {r['gflops'] / peak:.2f} of matmul peak")


if __name__ == "__main__":
  main()

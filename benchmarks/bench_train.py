"""Training throughput, each figure a ratio against a baseline measured in the same run.

  python benchmarks/bench_train.py [--steps 300] [--torch PYTHON] [--skip-ensembles]

- single model at the quick size (L8/H64/M4, d = 8, N = 20, batch 64): the fused step on two
  host devices (the CLI's default on a 2-core CPU) and on one, against a float32 2048² matmul
  and, with --torch, the PyTorch GPT-2 eager loop of Garg et al.'s recipe
  (../shared/bench/torch_gpt2_baseline.py, run by that interpreter in a subprocess);
- the task interface: the step through `task_api` against the regression step written out by
  hand (the loop before the interface), same run;
- bf16 against float32 compute;
- ensembles of K = 1, 2, 4, 8 at the quick size and at L4/H32: models per hour against K
  separate runs (one solo run's rate).
"""

from __future__ import annotations

import sys

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__file__)))
from icl_lab.training import host  # noqa: E402

host.use_host_devices()  # before jax: two CPU devices on a 2-core host

import argparse  # noqa: E402
import functools  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from icl_lab import config, tasks  # noqa: E402
from icl_lab.tasks import regression  # noqa: E402
from icl_lab.training import train  # noqa: E402

TORCH_BASELINE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "torch_gpt2_baseline.py"


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


def legacy_multi_step(cfg: config.Config, graphdef, tx):
  """The regression step as it was before the task interface: sampling, encoding and the
  squared error called directly (the baseline that shows the interface costs nothing)."""
  t, tr = cfg.task, cfg.train

  def one_step(state, step):
    batch = regression.sample_batch(t, tr.data_seed, step, tr.batch_size)
    tokens_BxTxF = regression.encode(batch.xs_BxNxD, batch.ys_BxN, t.token_format)

    def loss_of(params):
      preds_BxN = nnx.merge(graphdef, params)(tokens_BxTxF)[:, 0::2]
      return jnp.mean((preds_BxN - batch.ys_BxN) ** 2)

    loss, grads = jax.value_and_grad(loss_of)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return train.TrainState(optax.apply_updates(state.params, updates), opt_state), (loss, optax.tree.norm(grads))

  @functools.partial(jax.jit, static_argnums=2, donate_argnums=0)
  def multi_step(state, start_step, num_steps):
    return jax.lax.scan(one_step, state, start_step + jnp.arange(num_steps))

  return multi_step


def time_calls(multi_step, state, steps: int, per_call: int) -> float:
  """Steps per second over `steps` steps after one warm-up call."""
  state, m = multi_step(state, jnp.asarray(0, jnp.int32), per_call)
  jax.block_until_ready(m)
  calls = max(steps // per_call, 1)
  t0 = time.perf_counter()
  for c in range(calls):
    state, m = multi_step(state, jnp.asarray((c + 1) * per_call, jnp.int32), per_call)
  jax.block_until_ready(m)
  return calls * per_call / (time.perf_counter() - t0)


def solo(cfg: config.Config, steps: int, *, devices: str = "all", legacy: bool = False) -> tuple[float, float]:
  """(steps/s, FLOPs per step) of one model; devices "all" shards the batch as `train` does."""
  tx = train.make_optimizer(cfg.train)
  graphdef, state = train.init_state(cfg, tx)
  mesh = train.make_mesh() if devices == "all" else None
  if mesh is not None:
    state = jax.device_put(state, NamedSharding(mesh, P()))
  ms = legacy_multi_step(cfg, graphdef, tx) if legacy else train.make_multi_step(cfg, graphdef, tx, mesh)
  flops = step_flops(ms, state) if devices == "one" and not legacy else float("nan")
  return time_calls(ms, state, steps, cfg.train.steps_per_call), flops


def ensemble(cfg: config.Config, k: int, steps: int) -> float:
  """Steps/s of K members trained in one vmapped step (seeds 0..K−1), as `train_many` does."""
  cfgs = [config.apply_overrides(cfg, [f"train.seed={i}", f"train.data_seed={i}"]) for i in range(k)]
  tx = train.make_optimizer(cfg.train)
  states = [train.init_state(c, tx) for c in cfgs]
  graphdef = states[0][0]
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *[s for _, s in states])
  mesh = train.make_mesh()
  if mesh is not None and k % jax.device_count() == 0:
    state = jax.device_put(state, NamedSharding(mesh, P("data")))
  ms = train.make_multi_step(cfg, graphdef, tx, None, [tasks.member_of(c) for c in cfgs])
  return time_calls(ms, state, steps, cfg.train.steps_per_call)


def torch_steps_per_s(python: str, cfg: config.Config, steps: int) -> float:
  m, t = cfg.model, cfg.task
  args = [str(a) for a in (t.dim, t.num_exemplars, m.layers, m.hidden, m.heads, cfg.train.batch_size, steps)]
  out = subprocess.run([python, str(TORCH_BASELINE), *args], capture_output=True, text=True, check=True).stdout
  return float(out.split("steps/s=")[1].split()[0])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--torch", metavar="PYTHON", help="an interpreter with torch and transformers installed")
  p.add_argument("--skip-ensembles", action="store_true")
  args = p.parse_args()
  quick = config.apply_overrides(config.get_preset("quick"), ["train.steps_per_call=50"])
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; quick size {train.config_summary(quick)}")
  peak = matmul_gflops()
  print(f"float32 2048x2048 matmul: {peak:.1f} GFLOP/s (baseline, measured now)")

  sps_one, flops = solo(quick, args.steps, devices="one")
  sps_all, _ = solo(quick, args.steps, devices="all")
  for name, sps in (("1 device", sps_one), (f"{jax.device_count()} host devices", sps_all)):
    print(f"single model, {name}: {sps:.1f} steps/s, {sps * flops / 1e9:.1f} GFLOP/s "
          f"({flops / 1e9:.2f} GFLOP/step) = {sps * flops / 1e9 / peak:.2f} of the matmul rate")
  print(f"  {jax.device_count()} host devices / 1 device: {sps_all / sps_one:.2f}x")
  # Imported here: bench_step_profile imports this module.
  from benchmarks.bench_step_profile import backward_over_forward, part_times
  med, _, flops, _ = part_times(config.apply_overrides(quick, ["train.steps_per_call=20"]), 20, 3)
  print("  backward / forward ({} host devices, medians of 3 interleaved rounds): {:.2f}x in time, "
        "{:.2f}x in XLA FLOPs".format(jax.device_count(), *backward_over_forward(med, flops)))
  if args.torch:
    peer = torch_steps_per_s(args.torch, quick, args.steps)
    print(f"PyTorch GPT-2 eager loop (Garg et al.'s recipe), same size: {peer:.1f} steps/s; "
          f"lab / peer: {sps_all / peer:.2f}x")

  # On one device: the hand-written step has no batch-sharding constraint, so on two host devices
  # it would be measured against a differently partitioned program.
  legacy, _ = solo(quick, args.steps, devices="one", legacy=True)
  print(f"task interface, 1 device: {sps_one:.1f} steps/s vs the hand-written regression step "
        f"{legacy:.1f}: {sps_one / legacy:.2f}x")
  bf16 = config.apply_overrides(quick, ["train.compute_dtype=bfloat16"])
  sps_bf16, _ = solo(bf16, args.steps, devices="all")
  print(f"bf16 compute (CPU): {sps_bf16:.1f} steps/s vs float32 {sps_all:.1f}: {sps_bf16 / sps_all:.2f}x")

  if args.skip_ensembles:
    return
  small = config.apply_overrides(quick, ["model.layers=4", "model.hidden=32"])
  for name, cfg in (("quick size L8/H64", quick), ("small L4/H32", small)):
    base_sps, _ = solo(cfg, args.steps // 2, devices="all")
    print(f"ensembles at the {name}: one solo run {base_sps:.1f} steps/s")
    for k in (1, 2, 4, 8):
      sps = ensemble(cfg, k, max(args.steps // (2 * k), cfg.train.steps_per_call))
      print(f"  K={k}: {sps:.1f} steps/s, {k * sps / base_sps:.2f}x the models per hour of K separate runs")


if __name__ == "__main__":
  main()

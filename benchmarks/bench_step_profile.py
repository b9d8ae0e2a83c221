"""Where the quick-size training step's time goes: forward, backward, optimiser, and per op.

  python benchmarks/bench_step_profile.py [--rounds 5] [--steps 20] [--ab NAME ...] [--no-profile]

Built for a loaded machine, where absolute rates drift with the neighbours' load: every figure is
a median over interleaved rounds in one process, and the float32 2048² matmul is re-measured in
every round, so each rate is a fraction of the matmul rate measured next to it.

- breakdown: per step, sampling alone, the loss (forward), value_and_grad (forward + backward) and
  the full optimiser step, each `--steps` steps fused in one lax.scan as `train` runs them;
  backward / forward = (fwd+bwd − fwd) / fwd, both net of sampling;
- per op: one traced call of the full step (jax.profiler), each op's time summed by kind (dot,
  softmax, LayerNorm, GeLU, copies, collectives, ...) and by pass (forward, backward, optimiser),
  read from the optimised HLO's op_name metadata (autodiff's backward ops carry "transpose(");
- --ab NAME: the full step against a variant (VARIANTS below), rounds interleaved A, B, B, A, and
  whether the variant's parameters after `--steps` steps are bit-identical to the baseline's.
"""

from __future__ import annotations

import sys

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__file__)))
from icl_lab.training import host  # noqa: E402

host.use_host_devices()  # before jax: two CPU devices on a 2-core host

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from benchmarks.bench_train import matmul_gflops, step_flops  # noqa: E402
from icl_lab import config, tasks  # noqa: E402
from icl_lab.models import transformer  # noqa: E402
from icl_lab.training import train  # noqa: E402


def quick_config(steps_per_call: int) -> config.Config:
  return config.apply_overrides(config.get_preset("quick"), [f"train.steps_per_call={steps_per_call}"])


def fresh_state(cfg: config.Config, mesh):
  tx = train.make_optimizer(cfg.train)
  graphdef, state = train.init_state(cfg, tx)
  if mesh is not None:
    state = jax.device_put(state, NamedSharding(mesh, P()))
  return graphdef, tx, state


def make_probe(cfg: config.Config, graphdef, mesh, kind: str):
  """jitted probe(params, start_step, num_steps) -> scalar: `num_steps` steps of one part of the
  training step ("sample", "fwd" or "fwd_bwd") in one lax.scan, sharded as `make_multi_step` does.
  Each step's result feeds the carry so XLA cannot drop it."""
  task, member = tasks.get_task(cfg), tasks.member_of(cfg)
  sharding = NamedSharding(mesh, P("data")) if mesh is not None else None

  def body(params, acc, step):
    batch = task.sample(cfg, member, step, cfg.train.batch_size)
    if sharding is not None:
      batch = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), batch)
    if kind == "sample":
      return acc + sum(jnp.sum(a) for a in jax.tree.leaves(batch))
    loss_of = lambda p: task.loss(nnx.merge(graphdef, p), batch, cfg, member, step)
    if kind == "fwd":
      return acc + loss_of(params)
    loss, grads = jax.value_and_grad(loss_of)(params)
    return acc + loss + optax.tree.norm(grads)

  @functools.partial(jax.jit, static_argnums=2)
  def probe(params, start_step, num_steps):
    steps = start_step + jnp.arange(num_steps)
    return jax.lax.scan(lambda acc, s: (body(params, acc, s), None), jnp.float32(0), steps)[0]

  return probe


def probe_flops(probe, params) -> float:
  cost = probe.lower(params, jnp.asarray(0, jnp.int32), 1).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def seconds_per_step(fn, steps: int) -> float:
  """One timed call of `fn(steps)` (already compiled), per step."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(steps))
  return (time.perf_counter() - t0) / steps


# ---------------------------------------------------------------------------
# Per-op breakdown

# An op's kind from the ops inside it (first match wins), for the optimised CPU HLO.
KINDS = (("collective", r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)\("),
         ("dot, batched (attention)", r"\bdot\(.*lhs_batch_dims=\{\d"),
         ("dot", r"\b(dot|convolution)\(|custom_call_target=\"__(xnn|ynn|onednn)"),
         ("rng (threefry)", r"\bshift-right-logical\("),
         ("softmax (exp)", r"\bexponential\("),
         ("GeLU (tanh)", r"\btanh\("),
         ("LayerNorm (rsqrt)", r"\brsqrt\("),
         ("Adam (sqrt)", r"\bsqrt\("),
         ("reduce", r"\breduce\("),
         ("copy / transpose", r"\b(copy|transpose)\("),
         ("elementwise / other", r""))


def hlo_ops(hlo_text: str) -> dict[str, tuple[str, str]]:
  """name -> (kind, pass) for every instruction of the optimised HLO; a fusion's kind comes from
  the computation it calls, its pass from its op_name: backward ops carry "transpose(", the
  optimiser's sit outside the value_and_grad."""
  comps, cur = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      cur = head.group(1)
      comps[cur] = []
    elif cur is not None and line.strip() not in ("}", ""):
      comps[cur].append(line)

  def body_of(name: str, depth: int = 0) -> str:
    lines = comps.get(name, [])
    text = "\n".join(lines)
    if depth < 3:
      for sub in re.findall(r"calls=%?([\w.\-]+)", text):
        text += "\n" + body_of(sub, depth + 1)
    return text

  ops = {}
  for lines in comps.values():
    for line in lines:
      m = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = ", line)
      if not m:
        continue
      called = re.search(r"calls=%?([\w.\-]+)", line)
      text = line + ("\n" + body_of(called.group(1)) if called else "")
      kind = next(k for k, pat in KINDS if re.search(pat, text))
      op_name = (re.search(r'op_name="([^"]*)"', line) or re.search(r'op_name="([^"]*)"', text))
      op_name = op_name.group(1) if op_name else ""
      where = ("backward" if "transpose(" in op_name else
               "forward" if "jvp(" in op_name or "loss" in op_name else "optimiser / other")
      ops[m.group(1)] = (kind, where)
  return ops


def profile_step(multi_step, state, start: int, steps: int):
  """(seconds by (kind, pass), seconds by op, wall seconds) of one traced call of `steps` steps;
  op times are summed over both host devices' threads (each core runs its half of the batch)."""
  hlo = multi_step.lower(state, jnp.asarray(start, jnp.int32), steps).compile().as_text()
  ops = hlo_ops(hlo)
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp)
    t0 = time.perf_counter()
    state, metrics = multi_step(state, jnp.asarray(start, jnp.int32), steps)
    jax.block_until_ready(metrics)
    wall = time.perf_counter() - t0
    jax.profiler.stop_trace()
    data = jax.profiler.ProfileData.from_file(glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)[0])
  by_kind, by_op = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        if ev.name in ops:
          by_kind[ops[ev.name]] += ev.duration_ns / 1e9
          by_op[ev.name] += ev.duration_ns / 1e9
  return by_kind, by_op, ops, wall, state


# ---------------------------------------------------------------------------
# Variants for --ab: each a context manager under which the full step is built (and compiled);
# it yields a dict of overrides: "compiler_options", "steps_per_call", "devices".


@contextlib.contextmanager
def patched(cls, name, fn):
  old = getattr(cls, name)
  setattr(cls, name, fn)
  try:
    yield {}
  finally:
    setattr(cls, name, old)


def _split_heads(a_BxTxH, m):
  b, t, hid = a_BxTxH.shape
  return a_BxTxH.reshape(b, t, m, hid // m)


def _qkv_fused(self, h_BxTxH):
  """q, k, v from one matmul against the three kernels concatenated at call time."""
  lins = (self.q, self.k, self.v)
  kernel_Hx3H = jnp.concatenate([lin.kernel[...] for lin in lins], axis=1)
  bias_3H = jnp.concatenate([lin.bias[...] for lin in lins])
  dtype = self.q.dtype or h_BxTxH.dtype
  qkv_BxTx3H = jnp.dot(h_BxTxH.astype(dtype), kernel_Hx3H.astype(dtype)) + bias_3H.astype(dtype)
  return jnp.split(qkv_BxTx3H, 3, axis=-1)


def _attention(self, q_BxTxH, k_BxTxH, v_BxTxH, *, additive: bool):
  b, t, hid = q_BxTxH.shape
  m = self.heads
  q_BxTxMxK, k_BxTxMxK, v_BxTxMxK = (_split_heads(a, m) for a in (q_BxTxH, k_BxTxH, v_BxTxH))
  logits_BxMxTxT = jnp.einsum("btmk,bsmk->bmts", q_BxTxMxK, k_BxTxMxK)
  logits_BxMxTxT = logits_BxMxTxT.astype(jnp.promote_types(logits_BxMxTxT.dtype, jnp.float32))
  logits_BxMxTxT = logits_BxMxTxT / jnp.sqrt(hid // m)
  causal_TxT = jnp.tril(jnp.ones((t, t), bool))
  if additive:
    bias_TxT = jnp.where(causal_TxT, 0.0, jnp.finfo(logits_BxMxTxT.dtype).min).astype(logits_BxMxTxT.dtype)
    logits_BxMxTxT = logits_BxMxTxT + bias_TxT
  else:
    logits_BxMxTxT = jnp.where(causal_TxT, logits_BxMxTxT, jnp.finfo(logits_BxMxTxT.dtype).min)
  probs_BxMxTxT = jax.nn.softmax(logits_BxMxTxT, axis=-1).astype(v_BxTxMxK.dtype)
  out_BxTxMxK = jnp.einsum("bmts,bsmk->btmk", probs_BxMxTxT, v_BxTxMxK)
  return self.o(out_BxTxMxK.reshape(b, t, hid))


def _attn_call(fused: bool, additive: bool):
  def call(self, h_BxTxH):
    qkv = _qkv_fused(self, h_BxTxH) if fused else (self.q(h_BxTxH), self.k(h_BxTxH), self.v(h_BxTxH))
    return _attention(self, *qkv, additive=additive)
  return call


def _attn_heads_major(self, h_BxTxH):
  """q, k, v projected straight into head-major B×M×T×K, so both attention einsums batch over
  leading (b, m) axes; the output projection contracts (m, k) with o's kernel as M×K×H."""
  b, t, hid = h_BxTxH.shape
  m = self.heads
  kk = hid // m

  def proj(lin):
    w_HxMxK = lin.kernel[...].reshape(hid, m, kk)
    return jnp.einsum("bth,hmk->bmtk", h_BxTxH, w_HxMxK) + lin.bias[...].reshape(m, 1, kk)

  q_BxMxTxK, k_BxMxTxK, v_BxMxTxK = proj(self.q), proj(self.k), proj(self.v)
  logits_BxMxTxT = jnp.einsum("bmtk,bmsk->bmts", q_BxMxTxK, k_BxMxTxK) / jnp.sqrt(kk)
  causal_TxT = jnp.tril(jnp.ones((t, t), bool))
  logits_BxMxTxT = jnp.where(causal_TxT, logits_BxMxTxT, jnp.finfo(logits_BxMxTxT.dtype).min)
  probs_BxMxTxT = jax.nn.softmax(logits_BxMxTxT, axis=-1)
  out_BxMxTxK = jnp.einsum("bmts,bmsk->bmtk", probs_BxMxTxT, v_BxMxTxK)
  w_MxKxH = self.o.kernel[...].reshape(m, kk, hid)
  return jnp.einsum("bmtk,mkh->bth", out_BxMxTxK, w_MxKxH) + self.o.bias[...]


def _gelu_exact(self, h_BxTxH):
  return jax.nn.gelu(self.up(h_BxTxH), approximate=False)


@contextlib.contextmanager
def overrides(**kw):
  yield kw


VARIANTS = {
    "control": lambda: overrides(),  # the baseline against itself: the noise floor, and bit-identity
    "qkv_fused": lambda: patched(transformer.CausalSelfAttention, "__call__", _attn_call(True, False)),
    "additive_mask": lambda: patched(transformer.CausalSelfAttention, "__call__", _attn_call(False, True)),
    "heads_major": lambda: patched(transformer.CausalSelfAttention, "__call__", _attn_heads_major),
    "eigen_1thread": lambda: overrides(compiler_options={"xla_cpu_multi_thread_eigen": False}),
    "gelu_exact": lambda: patched(transformer.MLP, "coefficients", _gelu_exact),
    # make_multi_step's lax.scan unrolled twice (the only scan in the step is that one).
    "unroll2": lambda: patched(jax.lax, "scan", functools.partial(jax.lax.scan, unroll=2)),
    "one_device": lambda: overrides(devices=1),
    "no_ynn": lambda: overrides(compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""}),
    "sched_concurrency": lambda: overrides(
        compiler_options={"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"}),
    "sched_memory": lambda: overrides(
        compiler_options={"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}),
    "steps_per_call_5": lambda: overrides(steps_per_call=5),
    "fast_math": lambda: overrides(compiler_options={"xla_cpu_enable_fast_math": True}),
}


def one_device_flops(cfg: config.Config, kinds=("sample", "fwd", "fwd_bwd")) -> dict[str, float]:
  """XLA's FLOPs per step of the probes and of the full step, compiled for one device: a program
  partitioned over host devices reports one device's share."""
  graphdef, tx, state = fresh_state(cfg, None)
  flops = {k: probe_flops(make_probe(cfg, graphdef, None, k), state.params) for k in kinds}
  flops["step"] = step_flops(train.make_multi_step(cfg, graphdef, tx, None), state)
  return flops


def build_step(cfg: config.Config, ov: dict, steps: int):
  """(run(steps) -> metrics, params after `steps` steps from the initial state, FLOPs/step)."""
  mesh = None if ov.get("devices") == 1 else train.make_mesh()
  graphdef, tx, state = fresh_state(cfg, mesh)
  multi = train.make_multi_step(cfg, graphdef, tx, mesh)
  flops = one_device_flops(cfg, kinds=())
  n = cfg.train.steps_per_call
  compiled = multi.lower(state, jnp.asarray(0, jnp.int32), n).compile(ov.get("compiler_options") or None)
  held = {"state": state, "step": 0}

  def run(steps):
    """`steps` more steps, from where the last call stopped."""
    for _ in range(max(steps // n, 1)):
      held["state"], metrics = compiled(held["state"], jnp.asarray(held["step"], jnp.int32))
      held["step"] += n
    return metrics

  jax.block_until_ready(run(steps))  # warm-up, and the parameters after `steps` steps
  params = jax.tree.map(np.asarray, held["state"].params)
  return run, params, flops["step"]


def ab(name: str, baseline, steps: int, rounds: int, spc: int) -> dict:
  """Times the full step against variant `name`; `baseline` is build_step's result for no variant."""
  run_a, params_a, flops = baseline
  with VARIANTS[name]() as ov:
    run_b, params_b, flops_b = build_step(quick_config(ov.get("steps_per_call", spc)), ov, steps)
  pairs = list(zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)))
  same = all(np.array_equal(a, b) for a, b in pairs)
  diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
  ta, tb, peaks = [], [], []
  for r in range(rounds):
    peaks.append(matmul_gflops())
    # A, B then B, A: whichever runs second in a round pays a few percent (the control shows it).
    for run, ts in ((run_a, ta), (run_b, tb))[:: 1 if r % 2 == 0 else -1]:
      ts.append(seconds_per_step(run, steps))
  ma, mb, peak = statistics.median(ta), statistics.median(tb), statistics.median(peaks)
  # Neighbours' load moves both halves of a round together: the paired ratio is the steadier one.
  paired = statistics.median(a / b for a, b in zip(ta, tb))
  print(f"A/B {name}: baseline {1e3 * ma:.1f} ms/step ({flops / ma / 1e9 / peak:.2f} of the matmul rate), "
        f"variant {1e3 * mb:.1f} ms/step ({flops_b / mb / 1e9 / peak:.2f}); speed-up (median A / median B) "
        f"{ma / mb:.2f}x over {rounds} interleaved rounds (median of paired rounds {paired:.2f}x); "
        f"params after {steps} steps "
        f"{'bit-identical' if same else f'differ (max |Δ| {diff:.2e})'}")
  print(f"  rounds A ms: {' '.join(f'{1e3 * t:.1f}' for t in ta)}; B ms: {' '.join(f'{1e3 * t:.1f}' for t in tb)}; "
        f"matmul GFLOP/s: {' '.join(f'{p:.0f}' for p in peaks)}", flush=True)


def part_times(cfg: config.Config, steps: int, rounds: int):
  """Per-step medians over `rounds` interleaved rounds (each also timing the matmul) of sampling,
  forward, forward + backward and the full step on all devices; returns (medians, matmul GFLOP/s
  of each round, one-device FLOPs per step, the full step with its state for profile_step)."""
  mesh = train.make_mesh()
  graphdef, tx, state = fresh_state(cfg, mesh)
  params = jax.tree.map(jnp.copy, state.params)  # the full step donates `state`
  probes = {k: make_probe(cfg, graphdef, mesh, k) for k in ("sample", "fwd", "fwd_bwd")}
  flops = one_device_flops(cfg)
  multi = train.make_multi_step(cfg, graphdef, tx, mesh)
  held = {"state": state, "step": 0}

  def full(n):
    held["state"], metrics = multi(held["state"], jnp.asarray(held["step"], jnp.int32), n)
    held["step"] += n
    return metrics

  # The probes rerun the first `steps` batches: the same work every round.
  fns = {k: functools.partial(lambda p, n: p(params, jnp.asarray(0, jnp.int32), n), p) for k, p in probes.items()}
  fns["step"] = full
  for fn in fns.values():
    jax.block_until_ready(fn(steps))  # compile
  times = {k: [] for k in fns}
  peaks = []
  for _ in range(rounds):
    peaks.append(matmul_gflops())
    for k, fn in fns.items():
      times[k].append(seconds_per_step(fn, steps))
  return {k: statistics.median(v) for k, v in times.items()}, peaks, flops, (multi, held)


def backward_over_forward(med: dict, flops: dict) -> tuple[float, float]:
  """(fwd+bwd − fwd) / fwd in time and in XLA FLOPs, both net of sampling."""
  fwd, fwd_flops = med["fwd"] - med["sample"], flops["fwd"] - flops["sample"]
  return (med["fwd_bwd"] - med["fwd"]) / fwd, (flops["fwd_bwd"] - flops["fwd"]) / fwd_flops


def breakdown(steps: int, rounds: int, spc: int, profile: bool) -> None:
  med, peaks, flops, (multi, held) = part_times(quick_config(spc), steps, rounds)
  peak = statistics.median(peaks)
  fwd = med["fwd"] - med["sample"]
  bwd = med["fwd_bwd"] - med["fwd"]
  opt = med["step"] - med["fwd_bwd"]
  print(f"float32 2048² matmul: median {peak:.1f} GFLOP/s over {rounds} rounds "
        f"({', '.join(f'{p:.0f}' for p in peaks)})")
  print(f"per step, medians of {rounds} interleaved rounds of {steps} steps fused in one scan:")
  for k, label in (("sample", "sampling alone"), ("fwd", "sampling + loss (forward)"),
                   ("fwd_bwd", "sampling + value_and_grad"), ("step", "full optimiser step")):
    print(f"  {label:28s} {1e3 * med[k]:7.2f} ms  {flops[k] / 1e9:6.3f} GFLOP (XLA)  "
          f"{flops[k] / med[k] / 1e9 / peak:.2f} of the matmul rate")
  print(f"forward {1e3 * fwd:.2f} ms, backward {1e3 * bwd:.2f} ms, optimiser and the rest {1e3 * opt:.2f} ms")
  print("backward / forward: {:.2f}x in time, {:.2f}x in XLA FLOPs".format(*backward_over_forward(med, flops)))
  print(f"full step: {flops['step'] / med['step'] / 1e9 / peak:.2f} of the matmul rate", flush=True)
  if not profile:
    return
  by_kind, by_op, ops, wall, held["state"] = profile_step(multi, held["state"], held["step"], steps)
  total = sum(by_kind.values())
  print(f"\nper op, one traced call of {steps} steps ({1e3 * wall / steps:.1f} ms/step wall under the "
        f"tracer; op times summed over both devices' threads, {1e3 * total / steps:.1f} ms/step):")
  print(f"  {'kind':22s} {'forward':>9s} {'backward':>9s} {'opt/other':>9s}   ms/step, share")
  for kind, _ in KINDS:
    row = [by_kind.get((kind, w), 0.0) / steps for w in ("forward", "backward", "optimiser / other")]
    if sum(row) > 0:
      print(f"  {kind:22s} " + " ".join(f"{1e3 * x:9.2f}" for x in row) + f"   {sum(row) * steps / total:.0%}")
  passes = [sum(v for (k, w), v in by_kind.items() if w == p) for p in ("forward", "backward", "optimiser / other")]
  print(f"  {'all':22s} " + " ".join(f"{1e3 * x / steps:9.2f}" for x in passes) +
        f"   backward / forward {passes[1] / passes[0]:.2f}x")
  print("  the 12 costliest ops:")
  for name, s in by_op.most_common(12):
    print(f"    {name:34s} {ops[name][0]:20s} {ops[name][1]:18s} {1e3 * s / steps:6.2f} ms/step")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=20, help="steps timed per round (a multiple of --steps-per-call)")
  p.add_argument("--steps-per-call", type=int, default=20)
  p.add_argument("--ab", nargs="*", default=[], choices=sorted(VARIANTS), help="variants to time against the baseline")
  p.add_argument("--no-breakdown", action="store_true")
  p.add_argument("--no-profile", action="store_true")
  args = p.parse_args()
  cfg = quick_config(args.steps_per_call)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; quick size {train.config_summary(cfg)}; "
        f"jax {jax.__version__}; load average {os.getloadavg()[0]:.1f}", flush=True)
  if not args.no_breakdown:
    breakdown(args.steps, args.rounds, args.steps_per_call, not args.no_profile)
  if args.ab:
    baseline = build_step(quick_config(args.steps_per_call), {}, args.steps)
    for name in args.ab:
      ab(name, baseline, args.steps, args.rounds, args.steps_per_call)


if __name__ == "__main__":
  main()

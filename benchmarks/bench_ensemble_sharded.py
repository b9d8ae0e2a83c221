"""Sharded ensembles: K members laid over K devices against the same K members on one device.

  python benchmarks/bench_ensemble_sharded.py [--k 2] [--steps 100] [--rounds 3] [--per-call 25] [--size quick]

One process with K host devices compiles the K-member step twice, with the stacked state on
device 0 (K members on one device) and split over the K devices (`train.ensemble_spec`, as
`train_many` lays it), then times the two alternately, `--rounds` times: other work on a shared
machine slows both alike, and the best round of each is the figure (the median is printed too).
The ratio is of models per hour, measured in this one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import argparse  # noqa: E402

_k = argparse.ArgumentParser(add_help=False)
_k.add_argument("--k", type=int, default=2)
from icl_lab.training import host  # noqa: E402

host.use_host_devices(_k.parse_known_args()[0].k)  # before jax: K CPU devices

import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_train import time_calls  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402

from icl_lab import config, tasks  # noqa: E402
from icl_lab.training import train  # noqa: E402


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--k", type=int, default=2)
  p.add_argument("--steps", type=int, default=100, help="timed steps per layout and round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--per-call", type=int, default=25, help="steps fused per call (warm-up: one call)")
  p.add_argument("--size", default="quick", help="preset whose model size and steps count (default quick)")
  args = p.parse_args()
  if jax.device_count() != args.k:
    raise SystemExit(f"bench_ensemble_sharded: {jax.device_count()} devices, not --k={args.k}; unset XLA_FLAGS")
  cfg = config.apply_overrides(config.get_preset(args.size), [f"train.steps_per_call={args.per_call}"])
  cfgs = [config.apply_overrides(cfg, [f"train.seed={i}", f"train.data_seed={i}"]) for i in range(args.k)]
  tx = train.make_optimizer(cfg.train)
  graphdef, _ = train.init_state(cfg, tx)
  # On the host, so each placement makes fresh buffers for the step to donate.
  stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[train.init_state(c, tx)[1] for c in cfgs])
  mesh = train.make_mesh()
  split = NamedSharding(mesh, train.ensemble_spec(args.k, mesh))
  layouts = {"one device": lambda: jax.device_put(stacked, jax.devices()[0]),
             f"{args.k} devices": lambda: jax.device_put(stacked, split)}
  step = train.make_multi_step(cfg, graphdef, tx, None, [tasks.member_of(c) for c in cfgs])
  print(f"# {platform.machine()} CPU, {os.cpu_count()} cores, jax {jax.__version__}; K={args.k} members at "
        f"{train.config_summary(cfg)}; {args.rounds} alternating rounds of {args.steps} steps per layout; "
        f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
  rates = {name: [] for name in layouts}
  for _ in range(args.rounds):
    for name, put in layouts.items():
      rates[name].append(time_calls(step, put(), args.steps, cfg.train.steps_per_call))
  per_hour = {name: {"best": max(r) * args.k * 3600 / cfg.train.steps,
                     "median": statistics.median(r) * args.k * 3600 / cfg.train.steps} for name, r in rates.items()}
  for name, r in rates.items():
    print(f"K={args.k} on {name}: best {max(r):.2f} steps/s ({per_hour[name]['best']:.2f} models/hour), "
          f"median {statistics.median(r):.2f} steps/s; rounds: {', '.join(f'{x:.2f}' for x in r)}")
  one, many = per_hour["one device"], per_hour[f"{args.k} devices"]
  print(f"load average after: {os.getloadavg()[0]:.1f}")
  print(f"sharded / one device: {many['best'] / one['best']:.2f}x models per hour (best rounds), "
        f"{many['median'] / one['median']:.2f}x (medians)")


if __name__ == "__main__":
  main()

"""Sharded ensembles: K members laid over K devices against the same K members on one device.

  python benchmarks/bench_ensemble_sharded.py [--k 2] [--steps 400] [--size quick]

Each layout runs in its own process (the host device count is fixed before JAX starts), one
after the other, so both see the same machine; the ratio is of models per hour, measured in
this one run. Printed, not stored: benchmarks/results/ holds the committed output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(devices: int, k: int, steps: int, size: str) -> None:
  sys.path.insert(0, str(ROOT))
  from icl_lab.training import host

  host.use_host_devices(devices)
  import jax

  sys.path.insert(0, str(ROOT / "benchmarks"))
  from bench_train import ensemble  # noqa: PLC0415 - after the device count is set

  from icl_lab import config

  assert jax.device_count() == devices, jax.devices()
  cfg = config.get_preset(size)
  sps = ensemble(cfg, k, steps)
  print(json.dumps({"devices": devices, "steps_per_s": sps, "models_per_hour": k * sps * 3600 / cfg.train.steps}))


def measure(devices: int, k: int, steps: int, size: str) -> dict:
  env = {key: v for key, v in os.environ.items() if key != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, __file__, "--child", str(devices), "--k", str(k), "--steps", str(steps),
                         "--size", size], capture_output=True, text=True, env={**env, "JAX_PLATFORMS": "cpu"},
                        timeout=1800, check=False)
  if proc.returncode:
    raise SystemExit(f"the {devices}-device run failed:\n{proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--k", type=int, default=2)
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--size", default="quick", help="preset whose model size and steps count (default quick)")
  p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    child(args.child, args.k, args.steps, args.size)
    return
  import jax

  from icl_lab import config
  from icl_lab.training.train import config_summary

  print(f"# {platform.machine()} CPU, {os.cpu_count()} cores, jax {jax.__version__}; K={args.k} members, "
        f"{args.steps} timed steps each; load average before: {os.getloadavg()[0]:.1f}")
  print(f"size: {config_summary(config.get_preset(args.size))}")
  one = measure(1, args.k, args.steps, args.size)
  many = measure(args.k, args.k, args.steps, args.size)
  for r in (one, many):
    print(f"K={args.k} on {r['devices']} device{'s' * (r['devices'] > 1)}: {r['steps_per_s']:.2f} steps/s, "
          f"{r['models_per_hour']:.2f} models/hour")
  print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine slows both layouts)")
  print(f"sharded / one device: {many['models_per_hour'] / one['models_per_hour']:.2f}x models per hour")


if __name__ == "__main__":
  main()

"""Host CPU devices: split a multi-core CPU into XLA devices before JAX starts.

The lab's small models are overhead-bound on CPU: one XLA CPU device leaves a core idle.
Exposing two host devices lets the existing data sharding run half the batch on each core
(1.18x faster at the quick size on 2 idle cores in `benchmarks/results/bench_train_cpu.txt`,
1.33x on 2 loaded cores in `benchmarks/results/bench_step_profile_cpu.txt`). This must
run before `import jax`; the command-line entry points call it first thing. A run's numbers
depend on the device count to float32 rounding, so run folders record it (`done`).
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count"
ENV = "ICL_LAB_HOST_DEVICES"  # set to 1 to keep a single CPU device


def use_host_devices(count: int | None = None) -> int | None:
  """Asks XLA for `count` CPU devices (default: $ICL_LAB_HOST_DEVICES, else min(2, cores)).

  Returns the count set, or None when JAX was already imported or XLA_FLAGS already names one
  (an explicit user setting wins).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "jax" in sys.modules or _FLAG in flags:
    return None
  if count is None:
    raw = os.environ.get(ENV)
    try:
      count = int(raw) if raw else min(2, os.cpu_count() or 1)
    except ValueError:
      raise SystemExit(f"icl-lab: {ENV}={raw!r} must be a positive int (1 keeps one CPU device)") from None
  if count < 1:
    raise SystemExit(f"icl-lab: {ENV}={count} must be a positive int (1 keeps one CPU device)")
  os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
  return count

"""Data parallelism over 4 host CPU devices agrees with the 1-device run."""

import json
import os
import subprocess
import sys

import numpy as np

from icl_lab.config import apply_overrides, get_preset
from icl_lab.training import train

OVERRIDES = ["train.steps=60", "train.checkpoint_every=20"]

SCRIPT = """
import json, sys, jax
from icl_lab.training import train
from icl_lab.config import apply_overrides, get_preset
assert jax.device_count() == 4, jax.devices()
cfg = apply_overrides(get_preset("tiny"), sys.argv[2:])
run = train.train(cfg, sys.argv[1], progress=False, quiet=True)
print(json.dumps([r["loss"] for r in train.read_metrics(run)]))
"""


def test_four_device_run_matches_one_device(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "multi"), *OVERRIDES],
                        capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr
  multi = json.loads(proc.stdout.strip().splitlines()[-1])
  cfg = apply_overrides(get_preset("tiny"), OVERRIDES)
  single = [r["loss"] for r in train.read_metrics(train.train(cfg, tmp_path / "one", progress=False, quiet=True))]
  assert len(multi) == len(single) == 3
  np.testing.assert_allclose(multi, single, rtol=2e-4)

"""Data parallelism over 4 host CPU devices agrees with the 1-device run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

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


SHARDED = """
import json, re, jax, jax.numpy as jnp
from jax.sharding import NamedSharding
from icl_lab import config, tasks
from icl_lab.training import train
assert jax.device_count() == 2, jax.devices()
cfgs = [config.apply_overrides(config.get_preset("tiny"), [f"train.seed={i}"]) for i in range(2)]
tx = train.make_optimizer(cfgs[0].train)
graphdef, _ = train.init_state(cfgs[0], tx)
state = jax.tree.map(lambda *xs: jnp.stack(xs), *[train.init_state(c, tx)[1] for c in cfgs])
mesh = train.make_mesh()
multi_step = train.make_multi_step(cfgs[0], graphdef, tx, None, [tasks.member_of(c) for c in cfgs])
out = {}
for name, s in (("one", state), ("sharded", jax.device_put(state, NamedSharding(mesh, train.ensemble_spec(2, mesh))))):
  c = multi_step.lower(s, jnp.int32(0), 1).compile()
  cost = c.cost_analysis()
  out[name] = (cost if isinstance(cost, dict) else cost[0])["flops"]
  out[name + "_collectives"] = len(re.findall("all-gather|all-reduce|all-to-all|collective-permute", c.as_text()))
print(json.dumps(out))
"""


def test_ensemble_members_are_split_over_devices_without_collectives():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # Each device computes one member's step: half the FLOPs of both members on one device.
  assert out["sharded"] == pytest.approx(out["one"] / 2, rel=0.02)
  assert out["sharded_collectives"] == 0

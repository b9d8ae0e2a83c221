"""train_tokens in a run folder: an interrupted run resumes bit-exactly, a folder of other settings
is refused, a corrupt newest checkpoint falls back to the previous one, a finished run trains nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from icl_lab.tasks import family_graph as fg
from icl_lab.tasks import kg_tokens
from icl_lab.training.checkpoints import CheckpointError
from icl_lab.training.tokens import TokenTrain, token_run_dir, train_tokens

SPEC = TokenTrain(layers=1, hidden=16, heads=2, lr=3e-3, warmup=4, steps=20, batch_size=16, eval_every=5)
SEEDS, WDS = (0, 1), (1.0, 0.0)


@pytest.fixture(scope="module")
def task():
  g = fg.graph(fg.forest(3, 2, 0))
  return kg_tokens.TripleTask(g, fg.split(g, 0.8, 0), 1, True)


def _train(task, spec=SPEC, batch_fn=None, evaluate=None, **kw):
  query_ids = task.query_ids()
  evaluate = evaluate or (lambda forward: task.correct(np.asarray(forward(query_ids)[:, -1])))
  batch_fn = batch_fn or (lambda step: task.sample_host(0, step, spec.batch_size))
  return train_tokens(task, spec, SEEDS, WDS, batch_fn, evaluate, log=kw.pop("log", None), data_key={"graph": 1},
                      **kw)


def _assert_same(a, b):
  assert jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a.params_K, b.params_K))
  np.testing.assert_array_equal(a.loss_KxC, b.loss_KxC)
  np.testing.assert_array_equal(a.steps_C, b.steps_C)
  assert len(a.evals) == len(b.evals)
  for ea, eb in zip(a.evals, b.evals):
    for x, y in zip(ea, eb):
      assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.fixture(scope="module")
def reference(task):
  return _train(task)  # in memory, uninterrupted


def test_interrupted_run_resumes_bit_exactly(task, reference, tmp_path):
  lines = []
  first = _train(task, ckpt_dir=tmp_path, stop_at_step=10, log=lines.append)
  assert first.steps_C.tolist() == [0, 5, 10] and not any("resuming" in m for m in lines)
  lines.clear()
  _assert_same(_train(task, ckpt_dir=tmp_path, log=lines.append), reference)
  assert lines[0] == f"resuming {tmp_path.name} from step 10"


def test_folder_of_other_settings_is_refused_in_one_line(task, tmp_path):
  _train(task, ckpt_dir=tmp_path, stop_at_step=5)
  with pytest.raises(CheckpointError) as err:
    _train(task, dataclasses.replace(SPEC, lr=1e-3), ckpt_dir=tmp_path)
  message = str(err.value)
  assert "\n" not in message and "spec.lr: 0.003 → 0.001" in message and "delete it to start over" in message


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(task, reference, tmp_path):
  _train(task, ckpt_dir=tmp_path, stop_at_step=15)  # keeps steps 10 and 15
  for path in (tmp_path / "checkpoints" / "15").rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name.lower():
      path.write_bytes(b"\x00garbage" * 4)
  lines = []
  _assert_same(_train(task, ckpt_dir=tmp_path, log=lines.append), reference)
  assert lines[0].startswith("checkpoint step 15 ") and lines[0].endswith("and resumed from step 10")
  assert lines[1] == f"resuming {tmp_path.name} from step 10"
  assert (tmp_path / "checkpoints_corrupt" / "15").is_dir()


def test_finished_run_is_read_back_without_training(task, reference, tmp_path):
  _train(task, ckpt_dir=tmp_path)
  lines = []

  def never(*_):
    raise AssertionError("a finished run must not draw batches or evaluate")

  _assert_same(_train(task, ckpt_dir=tmp_path, batch_fn=never, evaluate=never, log=lines.append), reference)
  assert lines == [f"reusing finished run {tmp_path}"]


def test_run_folder_is_named_by_study_preset_and_settings(tmp_path):
  a = token_run_dir(tmp_path, "kg_x", "tiny", {"steps": 40, "seeds": (0,)})
  assert a.parent == tmp_path and a.name.startswith("kg_x-tiny-")
  assert a == token_run_dir(tmp_path, "kg_x", "tiny", {"seeds": [0], "steps": 40})
  assert a != token_run_dir(tmp_path, "kg_x", "tiny", {"steps": 60, "seeds": (0,)})


TWO_DEVICES = """
import json, sys, jax, numpy as np
from icl_lab.tasks import family_graph as fg, kg_tokens
from icl_lab.training.tokens import TokenTrain, train_tokens
assert jax.device_count() == 2, jax.devices()
spec, seeds, wds = TokenTrain(**json.loads(sys.argv[1])), json.loads(sys.argv[2]), json.loads(sys.argv[3])
g = fg.graph(fg.forest(3, 2, 0))  # the module's `task` fixture
task = kg_tokens.TripleTask(g, fg.split(g, 0.8, 0), 1, True)
batch_fn = lambda step: task.sample_host(0, step, spec.batch_size)
ens = train_tokens(task, spec, seeds, wds, batch_fn, lambda f: None, log=None)
leaf = jax.tree.leaves(ens.params_K)[0]
print(json.dumps({"loss": ens.loss_KxC.tolist(), "devices": len(leaf.sharding.device_set)}))
"""


def test_two_host_devices_train_the_same_members_to_rounding(task, reference):
  """Each batch is split over both host devices (both cores work); the losses agree with one device."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  args = [json.dumps(dataclasses.asdict(SPEC)), json.dumps(SEEDS), json.dumps(WDS)]
  proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, *args], capture_output=True, text=True, env=env,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["devices"] == 2
  np.testing.assert_allclose(out["loss"], reference.loss_KxC, rtol=1e-4)

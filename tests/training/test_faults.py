"""The faults a user meets on the command line each end in one clear line, and lose nothing."""

import os
import shutil
import subprocess
import sys

import pytest

from icl_lab.config import apply_overrides, get_preset
from icl_lab.training import train
from icl_lab.training.runlock import RunLock

SHORT = ["train.steps=60", "train.checkpoint_every=20", "train.steps_per_call=20"]
ENV = {**os.environ, "ICL_LAB_HOST_DEVICES": "1"}


def _cli(tmp_path, *overrides):
  cmd = [sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny", "--runs-dir", str(tmp_path)]
  cmd += sum((["--set", o] for o in [*SHORT, *overrides]), [])
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("icl-lab:")]


def test_a_config_too_large_for_memory_is_refused_in_one_line_naming_the_key(tmp_path):
  proc = _cli(tmp_path, "task.num_exemplars=100000")
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  (line,) = _error_lines(proc.stderr)
  assert "task.num_exemplars" in line and "memory" in line
  assert not any(tmp_path.iterdir()), "a refused config must not leave a run folder behind"


def test_a_second_trainer_on_a_locked_run_folder_stops_naming_the_holder(tmp_path):
  cfg = apply_overrides(get_preset("tiny"), SHORT)
  with RunLock(train.run_dir_for(cfg, tmp_path)):
    proc = _cli(tmp_path)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  (line,) = _error_lines(proc.stderr)
  assert f"pid {os.getpid()}" in line
  assert not train.is_done(train.run_dir_for(cfg, tmp_path))
  # Once the holder is gone the same command trains to the end.
  assert _cli(tmp_path).returncode == 0
  assert train.is_done(train.run_dir_for(cfg, tmp_path))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  cfg = apply_overrides(get_preset("tiny"), SHORT)
  return train.train(cfg, tmp_path_factory.mktemp("ref"), progress=False, quiet=True)


def test_a_corrupt_newest_checkpoint_is_moved_aside_and_training_resumes_from_the_one_before(
    finished_run, tmp_path):
  run_dir = tmp_path / finished_run.name
  shutil.copytree(finished_run, run_dir)
  (run_dir / "done").unlink()
  newest = run_dir / "checkpoints" / "60"
  for f in newest.rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(b"\x00garbage" * 4)
  proc = _cli(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
  assert "step 60" in proc.stdout + proc.stderr and "corrupt" in (proc.stdout + proc.stderr).lower()
  assert (run_dir / "checkpoints_corrupt").exists()
  # Retraining steps 41-60 from step 40 reproduces the uninterrupted run bit for bit.
  def losses(d):
    return [(r["step"], r["loss"], r["loss_last"], r["grad_norm"]) for r in train.read_metrics(d)]
  assert losses(run_dir) == losses(finished_run)

"""Training learns, resumes bit for bit after an interruption, and fails loudly."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab.config import ConfigError, apply_overrides, get_preset
from icl_lab.tasks import regression
from icl_lab.training import train

# Checkpoint often so an interruption can land between any two checkpoints.
RESUME = ["train.steps=200", "train.checkpoint_every=40"]


def _losses(run_dir):
  return [(r["step"], r["loss"], r["loss_last"], r["grad_norm"]) for r in train.read_metrics(run_dir)]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  cfg = apply_overrides(get_preset("tiny"), RESUME)
  return cfg, train.train(cfg, tmp_path_factory.mktemp("ref"), progress=False, quiet=True)


def test_reference_run_logs_every_call(reference_run):
  """The resume tests compare logs to this one: an empty or broken log would make them vacuous."""
  cfg, ref_dir = reference_run
  records = train.read_metrics(ref_dir)
  assert [r["step"] for r in records] == list(range(20, 201, 20))  # one row per 20-step call
  sched = train.make_schedule(cfg.train)
  assert all(r["lr"] == pytest.approx(float(sched(r["step"] - 1))) for r in records)  # the call's last lr
  # The first call starts from knowing nothing (≈ E[y²] = 4); 200 steps get well below it.
  baseline = regression.zero_predictor_mse(cfg.task)
  assert 0.8 * baseline < records[0]["loss"] < 1.3 * baseline
  assert records[-1]["loss"] < 0.85 * baseline and all(r["grad_norm"] > 0 for r in records)


def test_tiny_cli_run_learns_well_below_zero_predictor(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny",
                         "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  run_dir = Path(proc.stdout.strip().splitlines()[-1])
  assert (run_dir / "done").exists() and (run_dir / "config.json").exists()
  records = train.read_metrics(run_dir)
  assert [r["step"] for r in records] == list(range(20, 601, 20))
  assert set(records[0]) >= {"step", "loss", "lr", "grad_norm", "steps_per_s"}
  baseline = regression.zero_predictor_mse(get_preset("tiny").task)  # E[y²] = τ²d + σ² = 4
  final = np.mean([r["loss"] for r in records[-3:]])
  assert final < 0.6 * baseline, f"final loss {final:.3f} vs zero-predictor {baseline}"
  # A finished run is reused, not retrained.
  again = subprocess.run([sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny",
                          "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
  assert "reusing finished run" in again.stdout + again.stderr
  assert train.read_metrics(run_dir) == records


def test_resume_after_interruption_at_random_step_is_exact(reference_run, tmp_path):
  cfg, ref_dir = reference_run
  stop = random.Random(20240611).choice([s for s in range(20, 200, 20) if s % 40])
  train.train(cfg, tmp_path, progress=False, quiet=True, stop_at_step=stop)
  run_dir = train.run_dir_for(cfg, tmp_path)
  assert not (run_dir / "done").exists()
  train.train(cfg, tmp_path, progress=False, quiet=True)
  assert _losses(run_dir) == _losses(ref_dir)  # bit for bit, not approximately
  _, m1 = train.load_model(run_dir)
  _, m2 = train.load_model(ref_dir)
  b = regression.sample_batch(cfg.task, 9, 0, 4)
  from icl_lab.tasks.regression import predict
  np.testing.assert_array_equal(predict(m1, b.xs_BxNxD, b.ys_BxN), predict(m2, b.xs_BxNxD, b.ys_BxN))


def test_resume_after_sigkill_is_exact(reference_run, tmp_path):
  cfg, ref_dir = reference_run
  cmd = [sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny", "--runs-dir", str(tmp_path)]
  cmd += sum((["--set", o] for o in RESUME), [])
  # One CPU device, as the in-process reference run (the CLI would otherwise split the host).
  env = {**os.environ, "ICL_LAB_HOST_DEVICES": "1"}
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
  ckpt_dir = train.run_dir_for(cfg, tmp_path) / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.exists() and any(p.name.isdigit() and int(p.name) >= 40 for p in ckpt_dir.iterdir()):
      break
    time.sleep(0.01)
  time.sleep(random.Random(1).uniform(0, 0.3))
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (train.run_dir_for(cfg, tmp_path) / "done").exists()
  rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
  assert rerun.returncode == 0, rerun.stderr
  assert "resuming" in rerun.stdout + rerun.stderr
  assert _losses(train.run_dir_for(cfg, tmp_path)) == _losses(ref_dir)


def test_nan_loss_stops_with_step_and_cause_and_keeps_last_checkpoint(tmp_path):
  # AdamW multiplies every weight by 1 − lr·wd = −1.1 per step (Adam's own term is only ±lr), so the
  # weights grow 1.1× a step and the loss overflows after ~90 steps: several finite calls come first.
  cfg = apply_overrides(get_preset("tiny"), ["train.lr=1.0", "train.weight_decay=2.1", "train.grad_clip=0",
                                             "train.warmup_frac=0", "train.end_lr_frac=1.0",
                                             "train.checkpoint_every=20"])
  # Either the loss overflows first, or (as Adam's second moment overflows while the loss is still
  # finite) the state does, found when the checkpoint is about to be written.
  either = (r"(loss became (nan|inf|-inf) at step \d+\. Likely cause: the learning rate"
            r"|the training state has non-finite values at step \d+)")
  with pytest.raises(train.TrainingError, match=either) as err:
    train.train(cfg, tmp_path, progress=False, quiet=True)
  msg = str(err.value)
  bad = int(re.search(r"at step (\d+)", msg).group(1))
  state_overflow = "training state" in msg
  assert 40 <= bad < 200, bad
  run_dir = train.run_dir_for(cfg, tmp_path)
  assert not (run_dir / "done").exists()
  # Every call before the failing one is logged (each ends on a checkpoint, so none is held back);
  # a call whose loss is not finite is not, one whose state is not finite is (its losses were).
  records = train.read_metrics(run_dir)
  last_logged = bad if state_overflow else bad // 20 * 20
  assert [r["step"] for r in records] == list(range(20, last_logged + 1, 20))
  losses = [r["loss"] for r in records]
  assert all(np.isfinite(losses)) and losses == sorted(losses) and losses[-1] > 1e3 * losses[0]
  # grad_norm may overflow to inf in the last finite call (a sum of squares of ~1e19 gradients), never nan.
  assert all(r["lr"] == pytest.approx(1.0) and r["grad_norm"] > 0 for r in records)
  # The newest checkpoint is the last one before the failure, and its whole state (weights and
  # Adam moments) is finite, so resuming from it does not start from an overflow.
  steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == (bad - 20 if state_overflow else bad // 20 * 20)
  _, state = train._load_state(run_dir, None)
  assert train.nonfinite_leaves(state) == []
  _, model = train.load_model(run_dir)
  b = regression.sample_batch(cfg.task, 9, 0, 4)
  assert np.all(np.isfinite(regression.predict(model, b.xs_BxNxD, b.ys_BxN)))


def test_nonfinite_leaves_names_the_bad_leaves():
  tree = {"params": {"w": np.ones(3, np.float32), "b": np.array([1.0, np.inf], np.float32)},
          "mu": np.array([np.nan]), "count": np.array(3, np.int32)}
  assert train.nonfinite_leaves(tree) == ["['mu']", "['params']['b']"]
  assert train.nonfinite_leaves({"w": np.zeros(2)}) == []


def test_corrupt_final_checkpoint_is_moved_aside_and_retrained_not_silently_skipped(reference_run, tmp_path):
  cfg, ref_dir = reference_run
  import shutil
  run_dir = tmp_path / ref_dir.name
  shutil.copytree(ref_dir, run_dir)
  latest = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
  for f in (run_dir / "checkpoints" / str(latest)).rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(b"\x00garbage" * 4)
  # A finished run is never evaluated at an older step: loading refuses, naming the fix, and the
  # next training run retrains the lost steps to the same trajectory.
  with pytest.raises(train.TrainingError, match=rf"final checkpoint of .* is unreadable.*retrain steps "
                                                rf"{latest - 39}-{latest} from step {latest - 40}"):
    train.load_model(run_dir)
  assert (run_dir / "checkpoints_corrupt" / str(latest)).exists()
  train.train(cfg, tmp_path, progress=False, quiet=True)
  assert _losses(run_dir) == _losses(ref_dir)


def test_run_folder_of_another_config_is_refused(tmp_path):
  cfg = apply_overrides(get_preset("tiny"), ["train.steps=20"])
  run_dir = train.run_dir_for(cfg, tmp_path)
  run_dir.mkdir(parents=True)
  other = apply_overrides(cfg, ["model.layers=1"])
  (run_dir / "config.json").write_text(json.dumps(other.to_dict()))
  with pytest.raises(train.TrainingError, match="different config"):
    train.train(cfg, tmp_path, progress=False, quiet=True)


def test_schedule_warms_up_then_decays_to_zero():
  tcfg = get_preset("paper").train
  sched = train.make_schedule(tcfg)
  assert float(sched(0)) == 0.0
  assert float(sched(100_000)) == pytest.approx(1e-4)
  assert float(sched(300_000)) < 1e-4 and float(sched(500_000)) == pytest.approx(0.0, abs=1e-12)


def test_wsd_schedule_holds_the_peak_until_the_decay_then_ends_at_its_fraction():
  tcfg = apply_overrides(get_preset("tiny"), ["train.steps=1000", "train.warmup_frac=0.1", "train.lr=0.01",
                                              "train.schedule=wsd", "train.decay_frac=0.2",
                                              "train.end_lr_frac=0.1"]).train
  sched = train.make_schedule(tcfg)
  assert float(sched(0)) == 0.0 and float(sched(50)) == pytest.approx(0.005)
  assert all(float(sched(t)) == pytest.approx(0.01) for t in (100, 500, 800))  # stable: not annealed
  assert float(sched(900)) == pytest.approx(0.0055) and float(sched(1000)) == pytest.approx(0.001)
  traced = train.make_schedule(tcfg, jnp.float32(0.02))  # per-member peaks scale the same shape
  assert float(traced(900)) == pytest.approx(0.011, rel=1e-5)


def test_cosine_schedule_ends_at_its_fraction_and_bad_schedules_are_refused():
  tcfg = apply_overrides(get_preset("tiny"), ["train.end_lr_frac=0.1"]).train
  assert float(train.make_schedule(tcfg)(tcfg.steps)) == pytest.approx(0.1 * tcfg.lr)
  with pytest.raises(ConfigError, match="train.decay_frac"):
    apply_overrides(get_preset("tiny"), ["train.schedule=wsd", "train.decay_frac=0.99"])
  with pytest.raises(ConfigError, match="train.schedule"):
    apply_overrides(get_preset("tiny"), ["train.schedule=step"])

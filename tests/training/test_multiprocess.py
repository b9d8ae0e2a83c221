"""Multi-process training on CPU: 2 local processes of 1 host device each, joined by
jax.distributed over 127.0.0.1, train the same run as 1 process, resume each other's
checkpoints, write the run folder from process 0 only, and refuse a batch they cannot split."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from icl_lab import tasks
from icl_lab.config import apply_overrides, expand_overrides, get_preset
from icl_lab.training import train

OVERRIDES = ["train.steps=40", "train.checkpoint_every=20"]  # tiny: 20 steps per call
TIMEOUT_S = 150  # per launch; a healthy one takes 10-40 s on a loaded 2-core machine

# One process of a multi-process run, for what the CLI does not expose (stop_at_step).
WORKER = """
import sys
from pathlib import Path
from icl_lab.training import host
host.use_host_devices(1)
from icl_lab.training import processes
addr, n, i, runs, stop, *overrides = sys.argv[1:]
processes.initialize(processes.Layout(addr, int(n), int(i)))
from icl_lab import tasks
from icl_lab.config import expand_overrides, get_preset
from icl_lab.training import train
cfgs = expand_overrides(get_preset("tiny"), overrides, tasks.ENSEMBLE_KEYS)
train.train_many(cfgs, runs, progress=False, quiet=True, stop_at_step=int(stop) or None)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env() -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return {**env, "JAX_PLATFORMS": "cpu", "ICL_LAB_HOST_DEVICES": "1"}


def launch(argv_of, n: int = 2, env_of=lambda i: {}) -> list[subprocess.CompletedProcess]:
  """Runs `argv_of(coordinator, process_id)` as n processes (with `env_of(process_id)` added to
  their environment); kills them all on a timeout or failure."""
  addr = f"127.0.0.1:{_free_port()}"
  procs = []
  try:
    for i in range(n):
      procs.append(subprocess.Popen(argv_of(addr, i), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env={**_env(), **env_of(i)}))
    done = []
    for p in procs:
      out, err = p.communicate(timeout=TIMEOUT_S)
      done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
          p.communicate(timeout=10)


def worker(runs, stop: int = 0, overrides=OVERRIDES):
  return lambda addr, i: [sys.executable, "-c", WORKER, addr, "2", str(i), str(runs), str(stop), *overrides]


def cli(runs, overrides=OVERRIDES, preset="tiny"):
  sets = [a for o in overrides for a in ("--set", o)]
  return lambda addr, i: [sys.executable, "-m", "icl_lab.cli", "train", "--preset", preset, *sets,
                          "--runs-dir", str(runs), "--coordinator", addr, "--num-processes", "2",
                          "--process-id", str(i)]


def _ok(results) -> None:
  for r in results:
    assert r.returncode == 0, r.stderr[-3000:]


def _ours(text: str) -> list[str]:
  """Output lines, less the one gloo's C++ prints to stdout when it connects."""
  return [ln for ln in text.splitlines() if not ln.startswith("[Gloo]")]


def _losses(run_dir):
  return np.asarray([(r["step"], r["loss"], r["loss_last"], r["grad_norm"]) for r in train.read_metrics(run_dir)])


def _params(run_dir):
  # Key biases get an exactly-zero gradient, so Adam turns their rounding noise into O(lr) steps.
  _, model = train.load_model(run_dir)
  return [np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))
          if "k.bias" not in ".".join(map(str, path))]


def assert_same_run(a, b) -> None:
  """The same run to float32 rounding: a sum over 2 devices adds in another order than over 1."""
  assert a.name == b.name
  np.testing.assert_allclose(_losses(a), _losses(b), rtol=2e-5)
  for pa, pb in zip(_params(a), _params(b)):
    np.testing.assert_allclose(pa, pb, rtol=0, atol=3e-4 * np.abs(pb).max())


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
  cfg = apply_overrides(get_preset("tiny"), OVERRIDES)
  return train.train(cfg, tmp_path_factory.mktemp("one"), progress=False, quiet=True)


@pytest.fixture(scope="module")
def two_process_cli(tmp_path_factory):
  runs = tmp_path_factory.mktemp("two")
  results = launch(cli(runs))
  _ok(results)
  return runs, results


def test_two_processes_train_the_same_run_as_one(two_process_cli, one_process_run):
  runs, _ = two_process_cli
  two = runs / one_process_run.name  # the same config hash whatever the process count
  assert_same_run(two, one_process_run)
  assert json.loads((two / "done").read_text())["num_processes"] == 2


def test_only_process_0_prints_and_writes(two_process_cli):
  runs, (p0, p1) = two_process_cli
  (run,) = runs.iterdir()
  assert _ours(p0.stdout) == [str(run)] and "training tiny-" in p0.stderr
  assert _ours(p1.stdout) == [] and "training" not in p1.stderr
  assert len(train.read_metrics(run)) == 2  # one line per call, not one per process
  assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.json", "done", "metrics.jsonl"]


def test_two_process_checkpoint_resumes_under_one(tmp_path, one_process_run):
  _ok(launch(worker(tmp_path, stop=20)))
  cfg = apply_overrides(get_preset("tiny"), OVERRIDES)
  assert not train.is_done(train.run_dir_for(cfg, tmp_path))
  assert train.kept_steps(train.run_dir_for(cfg, tmp_path)) == [20]
  assert_same_run(train.train(cfg, tmp_path, progress=False, quiet=True), one_process_run)


def test_one_process_checkpoint_resumes_under_two(tmp_path, one_process_run):
  cfg = apply_overrides(get_preset("tiny"), OVERRIDES)
  train.train(cfg, tmp_path, progress=False, quiet=True, stop_at_step=20)
  _ok(launch(cli(tmp_path)))
  run = train.run_dir_for(cfg, tmp_path)
  assert json.loads((run / "done").read_text())["resumed_from"] == 20
  assert_same_run(run, one_process_run)


def test_indivisible_batch_is_refused_in_one_line(tmp_path):
  results = launch(cli(tmp_path, ["train.batch_size=127"]))
  for r in results:
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("icl-lab")]
    assert lines == ["icl-lab: config error: train.batch_size=127 is not divisible by the 2 devices of 2 "
                     "processes (1 each); choose a multiple of 2 or run another number of processes"]
  assert not any(tmp_path.iterdir())


def test_ensemble_over_two_processes_equals_its_solo_runs(tmp_path, one_process_run):
  overrides = [*OVERRIDES, "train.seed=0,1"]
  _ok(launch(worker(tmp_path, overrides=overrides)))
  cfgs = expand_overrides(get_preset("tiny"), overrides, tasks.ENSEMBLE_KEYS)
  assert train.run_dir_for(cfgs[0], tmp_path).name == one_process_run.name
  assert_same_run(train.run_dir_for(cfgs[0], tmp_path), one_process_run)
  solo = train.train(cfgs[1], tmp_path / "solo", progress=False, quiet=True)
  assert_same_run(train.run_dir_for(cfgs[1], tmp_path), solo)


def test_only_process_0_writes_results_and_manifests(tmp_path, monkeypatch):
  import jax

  from icl_lab import results

  dest, seeds = results.Destination(tmp_path, "", headline=False), results.Seeds((0,), (0,), 0)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert results.write(dest, "r", {"a": 1}, preset="tiny", seeds=seeds, wall_s=0.0) == [tmp_path / "r.json"]
  assert not any(tmp_path.iterdir())
  monkeypatch.undo()
  results.write(dest, "r", {"a": 1}, preset="tiny", seeds=seeds, wall_s=0.0)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.json", "r.json"]


def test_study_run_over_two_processes_writes_its_results_once(tmp_path):
  """`icl-lab run`: both processes train and evaluate; process 0 alone prints and writes results,
  unit records and the manifest, and the other reads the unit record back once it is written."""
  def argv(addr, i):
    return [sys.executable, "-m", "icl_lab.cli", "run", "fig1", "--preset", "tiny", "--runs-dir",
            str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--coordinator", addr, "--num-processes", "2",
            "--process-id", str(i)]
  p0, p1 = launch(argv)
  _ok([p0, p1])
  assert _ours(p1.stdout) == []
  printed = {Path(line).name for line in _ours(p0.stdout) if line.startswith(str(tmp_path))}
  assert {"fig1_noiseless_tiny.json", "fig6_linearity_tiny.json"} <= printed
  written = sorted(p.name for p in (tmp_path / "out").iterdir())
  assert "MANIFEST.json" in written and "units" in written and "fig1_noiseless_tiny.json" in written
  assert len(list((tmp_path / "out" / "units").iterdir())) == 1


def test_layout_comes_from_flags_then_environment_and_bad_ones_are_refused(monkeypatch):
  from icl_lab.config import ConfigError
  from icl_lab.training import processes

  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  assert processes.layout_from() == processes.Layout("10.0.0.1:1234", 4, 3)
  assert processes.layout_from("h:1", 2, 0) == processes.Layout("h:1", 2, 0)  # a flag wins
  for args, msg in (((None, 4, 4), "--process-id=4 must be in [0, --num-processes=4)"),
                    ((None, 0, None), "--num-processes=0 must be a positive int")):
    with pytest.raises(ConfigError, match=re.escape(msg)):
      processes.layout_from(*args)
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
  with pytest.raises(ConfigError, match="needs --coordinator"):
    processes.layout_from()
  monkeypatch.setenv("JAX_PROCESS_ID", "one")
  with pytest.raises(ConfigError, match="JAX_PROCESS_ID='one' must be an int"):
    processes.layout_from()
  for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name)
  assert not processes.layout_from().explicit  # nothing given: one process, as before


def test_train_multihost_detects_a_slurm_job(tmp_path, one_process_run):
  """No layout flags: train.multihost=true lets JAX read the layout from SLURM's variables (faked
  here: 2 tasks on localhost; the coordinator port derives from the job id)."""
  for port in range(61440 + os.getpid() % 4000, 65536):  # JAX's SLURM port range, from a free one
    with contextlib.suppress(OSError), socket.socket() as s:
      s.bind(("127.0.0.1", port))
      break
  slurm = {"SLURM_JOB_ID": str(port - 61440), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2"}
  sets = [a for o in [*OVERRIDES, "train.multihost=true"] for a in ("--set", o)]
  results = launch(lambda addr, i: [sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny", *sets,
                                    "--runs-dir", str(tmp_path)],
                   env_of=lambda i: {**slurm, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)})
  _ok(results)
  run = tmp_path / one_process_run.name
  assert json.loads((run / "done").read_text())["num_processes"] == 2
  np.testing.assert_allclose(_losses(run), _losses(one_process_run), rtol=2e-5)

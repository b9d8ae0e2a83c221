"""restore_latest falls back past a corrupt step, moves it aside, and fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab.training import checkpoints
from icl_lab.training.checkpoints import CheckpointError


def _tree(step: int, leaves: int = 2) -> dict:
  """A tiny pytree whose values name the step it was saved at."""
  tree = {"b_3": np.full(3, step, np.float32), "count": jnp.asarray(step, jnp.int32)}
  for i in range(leaves):
    tree[f"w{i}_4x3"] = jnp.full((4, 3), step + i, jnp.float32)
  return tree


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


def _save(run_dir: Path, steps, leaves: int = 2) -> None:
  mngr = checkpoints.manager(run_dir, keep=5)
  for step in steps:
    mngr.save(step, args=checkpoints.ocp.args.StandardSave(_tree(step, leaves)))
  mngr.close()


def _corrupt(step_dir: Path) -> None:
  """Overwrites every non-empty data file (Orbax's metadata files kept) with garbage bytes."""
  for path in step_dir.rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name.lower():
      path.write_bytes(b"\x00garbage" * 4)


def test_newest_corrupt_step_is_moved_aside_and_the_previous_one_restored(tmp_path):
  _save(tmp_path, [40, 80])
  _corrupt(tmp_path / "checkpoints" / "80")
  lines = []
  mngr = checkpoints.manager(tmp_path, keep=5)
  step, state = checkpoints.restore_latest(mngr, tmp_path, _abstract(_tree(0)), log=lines.append)
  assert step == 40 and int(state["count"]) == 40 and np.all(np.asarray(state["w1_4x3"]) == 41)
  moved = tmp_path / "checkpoints_corrupt" / "80"
  assert len(lines) == 1, lines
  assert lines[0].startswith(f"checkpoint step 80 in {tmp_path / 'checkpoints'} is unreadable (")
  assert lines[0].endswith(f"); moved it to {moved} and resumed from step 40")
  cause = lines[0].split(" is unreadable (", 1)[1].split("); moved it to ", 1)[0]
  assert lines[0].isprintable() and len(cause) <= 120, cause  # type and a short first line only
  assert moved.is_dir() and not (tmp_path / "checkpoints" / "80").exists()
  # The manager forgot the moved step: the resumed run can save step 80 again.
  assert mngr.latest_step() == 40
  mngr.save(80, args=checkpoints.ocp.args.StandardSave(_tree(80)))
  assert mngr.all_steps() == [40, 80]
  mngr.close()


def test_every_step_corrupt_raises_one_line_and_moves_nothing(tmp_path):
  _save(tmp_path, [40, 80])
  for step in ("40", "80"):
    _corrupt(tmp_path / "checkpoints" / step)
  mngr = checkpoints.manager(tmp_path, keep=5)
  with pytest.raises(CheckpointError) as err:
    checkpoints.restore_latest(mngr, tmp_path, _abstract(_tree(0)), log=pytest.fail)
  message = str(err.value)
  assert "\n" not in message and message.isprintable()
  assert message.endswith(f"delete {tmp_path} to start over")
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["40", "80"]
  assert not (tmp_path / "checkpoints_corrupt").exists()


def test_explicit_step_is_restored_and_never_falls_back(tmp_path):
  _save(tmp_path, [40, 80, 120])
  mngr = checkpoints.manager(tmp_path, keep=5)
  step, state = checkpoints.restore_latest(mngr, tmp_path, _abstract(_tree(0)), step=80)
  assert step == 80 and int(state["count"]) == 80 and np.all(state["b_3"] == 80)
  _corrupt(tmp_path / "checkpoints" / "80")
  with pytest.raises(CheckpointError, match=r"checkpoint step 80 in .* is unreadable"):
    checkpoints.restore_latest(mngr, tmp_path, _abstract(_tree(0)), step=80, log=pytest.fail)
  assert (tmp_path / "checkpoints" / "80").is_dir()


def test_missing_step_lists_the_available_ones(tmp_path):
  _save(tmp_path, [40, 80])
  mngr = checkpoints.manager(tmp_path, keep=5)
  with pytest.raises(CheckpointError, match=r"no checkpoint step 60 in .*; available steps: 40, 80$"):
    checkpoints.restore_latest(mngr, tmp_path, _abstract(_tree(0)), step=60)


def test_a_state_of_another_shape_is_not_taken_for_corruption(tmp_path):
  _save(tmp_path, [40, 80])
  mngr = checkpoints.manager(tmp_path, keep=5)
  wider = _abstract(_tree(0)) | {"w0_4x3": jax.ShapeDtypeStruct((4, 5), np.float32)}
  with pytest.raises(CheckpointError, match="does not fit the state being restored"):
    checkpoints.restore_latest(mngr, tmp_path, wider, log=pytest.fail)
  assert not (tmp_path / "checkpoints_corrupt").exists()


def test_failed_restore_prints_no_event_loop_tracebacks(tmp_path):
  # Many leaves: Orbax's restore has many reads in flight when the first one fails. Without the
  # fix this printed ~80-160 lines of `RuntimeError: Event loop is closed` tracebacks.
  leaves = 48
  _save(tmp_path, [40, 80], leaves=leaves)
  _corrupt(tmp_path / "checkpoints" / "80")
  script = textwrap.dedent(f"""
      import jax, numpy as np
      from pathlib import Path
      from icl_lab.training import checkpoints
      import tests.training.test_checkpoints as t
      run_dir = Path({str(tmp_path)!r})
      mngr = checkpoints.manager(run_dir, keep=5)
      step, _ = checkpoints.restore_latest(mngr, run_dir, t._abstract(t._tree(0, {leaves})))
      mngr.close()
      print("restored", step)
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                        cwd=Path(__file__).resolve().parents[2])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines()[-1] == "restored 40"
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr, proc.stderr[-3000:]

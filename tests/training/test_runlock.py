"""RunLock refuses a second trainer of a run folder, and a killed holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from icl_lab.training.runlock import RunLock, RunLockedError

_HOLDER = """
import sys, time
from icl_lab.training.runlock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
  """A live process holding tmp_path's lock."""
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE,
                          text=True, cwd=Path(__file__).resolve().parents[2])
  try:
    assert proc.stdout.readline().strip() == "locked"
    yield proc
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_a_live_holder_refuses_a_second_lock_and_names_itself(tmp_path, holder):
  with pytest.raises(RunLockedError) as err:
    with RunLock(tmp_path):
      pytest.fail("took a lock held by a live process")
  message = str(err.value)
  assert f"pid {holder.pid} on {socket.gethostname()}" in message
  assert str(tmp_path / ".lock") in message and "wait for it to finish or kill it" in message
  assert "\n" not in message


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, holder):
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait(timeout=10)
  # The dead holder's pid is still in the file; it must not block.
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
  with RunLock(tmp_path) as lock:
    assert lock.held
    assert json.loads(lock.path.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}


def test_a_stale_pid_in_the_file_does_not_block(tmp_path):
  (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": "elsewhere"}) + "\n")
  with RunLock(tmp_path) as lock:
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_the_lock_is_released_when_the_block_exits(tmp_path):
  with RunLock(tmp_path) as lock:
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()} "):
      RunLock(tmp_path).acquire()  # a second open file of the same folder: refused, even in-process
  assert not lock.held
  # Released: another process now gets it.
  proc = subprocess.run([sys.executable, "-c", "import sys; from icl_lab.training.runlock import RunLock; "
                         "RunLock(sys.argv[1]).acquire(); print('ok')", str(tmp_path)],
                        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_lock_is_released_when_the_block_raises(tmp_path):
  with pytest.raises(KeyError):
    with RunLock(tmp_path):
      raise KeyError("boom")
  with RunLock(tmp_path) as lock:
    assert lock.held

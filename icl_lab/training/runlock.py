"""A run folder lock: two `icl-lab train` processes never train the same folder at once.

It is an flock on `run_dir/.lock`, so the kernel releases it when its holder exits or is killed;
a lock file left by a dead process is therefore taken over without any staleness check. The
file names the holder (pid and host) for the error message only.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
  """The run folder is locked by a live process; the message names it and the fix."""


class RunLock:
  """`with RunLock(run_dir):` holds run_dir's lock for the block; raises RunLockedError if taken."""

  def __init__(self, run_dir: str | os.PathLike):
    self.run_dir = Path(run_dir)
    self.path = self.run_dir / LOCK_NAME
    self._fd: int | None = None

  def acquire(self) -> None:
    if self._fd is not None:
      return
    self.run_dir.mkdir(parents=True, exist_ok=True)
    # O_CLOEXEC (Python's default): a child process must not inherit, and so keep, the lock.
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      os.close(fd)
      raise RunLockedError(
          f"{self.run_dir} is being trained by {holder} (lock {self.path}); wait for it to finish "
          f"or kill it, then rerun") from None
    except BaseException:
      os.close(fd)
      raise
    # Ours now: replace whatever a dead holder left.
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode(), 0)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    # The file stays: unlinking it would let a waiter lock the deleted file while a newcomer
    # locks a new one, both "holding" the lock.
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> RunLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _holder(fd: int) -> str:
  """`pid 123 on host`, from the lock file; the holder may not have written it yet."""
  try:
    info = json.loads(os.pread(fd, 4096, 0).decode())
    return f"pid {int(info['pid'])} on {info['host']}"
  except (ValueError, KeyError, TypeError, OSError):
    return "another process"

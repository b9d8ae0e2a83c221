"""Orbax checkpoints of a run folder: the manager, and a restore that survives a corrupt step.

Orbax commits a step by renaming it into place, so a kill mid-save leaves no half step; a disk
fault or a bad copy still can. `restore_latest` then resumes from the newest readable step and
moves the unreadable newer ones to `checkpoints_corrupt/` (kept, not deleted; out of Orbax's
sight, so a resumed run can save those steps again).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CORRUPT_DIR = "checkpoints_corrupt"
_DRAIN_S = 30.0  # at most this long for the reads still in flight after a failed restore


class CheckpointError(RuntimeError):
  """A checkpoint cannot be restored; the message names the cause and the fix."""


def manager(run_dir: Path, keep: int) -> ocp.CheckpointManager:
  """The run folder's synchronous manager of `run_dir/checkpoints`, keeping the last `keep` steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager((Path(run_dir) / "checkpoints").absolute(), options=options)


def restore_latest(mngr: ocp.CheckpointManager, run_dir: Path, abstract_state: Any,
                   step: int | None = None, log: Callable[[str], Any] = print) -> tuple[int, Any]:
  """Restores the newest readable step (or exactly `step`) into the structure of `abstract_state`.

  Returns (step, state). Unreadable steps newer than the one restored are moved aside, with one
  `log` line each; a given `step` that is missing or unreadable raises CheckpointError instead.
  """
  run_dir, ckpt_dir = Path(run_dir), Path(mngr.directory)
  steps = sorted(mngr.all_steps(), reverse=True)
  if step is not None:
    if step not in steps:
      raise CheckpointError(f"no checkpoint step {step} in {ckpt_dir}; available steps: {_join(steps)}")
    try:
      return step, _restore(mngr, step, abstract_state)
    except Exception as err:  # Orbax raises many types for unreadable files.
      _raise_if_mismatch(mngr, step, err, run_dir)
      raise CheckpointError(
          f"checkpoint step {step} in {ckpt_dir} is unreadable ({_describe(err)}); restore another "
          f"step (available: {_join(steps)}) or delete {ckpt_dir / str(step)}") from err
  if not steps:
    raise CheckpointError(f"{ckpt_dir} holds no checkpoint; train the run first")

  bad = []  # (step, error) of the unreadable steps newer than the one being tried
  for s in steps:
    try:
      state = _restore(mngr, s, abstract_state)
    except Exception as err:  # noqa: BLE001 - any failure to read a step means try the older one
      _raise_if_mismatch(mngr, s, err, run_dir)
      bad.append((s, err))
      continue
    # Steps move only once an older one restored, so a fault that breaks every step (a changed
    # library, a bad mount) leaves the folder as it was.
    for b, err in bad:
      dest = _move_aside(ckpt_dir / str(b), run_dir / CORRUPT_DIR)
      log(f"checkpoint step {b} in {ckpt_dir} is unreadable ({_describe(err)}); moved it to {dest} "
          f"and resumed from step {s}")
    if bad:
      if jax.process_count() > 1:
        ocp.multihost.sync_global_processes("icl_lab_checkpoints_moved_aside")
      mngr.reload()  # forget the moved steps, so latest_step and max_to_keep see the folder as it is
    return s, state
  raise CheckpointError(
      f"no checkpoint in {ckpt_dir} is readable (steps {_join(steps)}; step {bad[0][0]}: "
      f"{_describe(bad[0][1])}); delete {run_dir} to start over")


# ---------------------------------------------------------------------------
# Helpers


def _restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any | None) -> Any:
  args = ocp.args.StandardRestore(abstract_state) if abstract_state is not None else ocp.args.StandardRestore()
  with _quiet_failed_reads():
    return mngr.restore(step, args=args)


def _raise_if_mismatch(mngr: ocp.CheckpointManager, step: int, err: Exception, run_dir: Path) -> None:
  """Raises when the step reads fine without a target: then the state's structure, not the files,
  is at fault, and moving steps aside or falling back would not help."""
  try:
    _restore(mngr, step, None)
  except Exception:  # noqa: BLE001 - unreadable either way: the files are at fault
    return
  raise CheckpointError(
      f"checkpoint step {step} in {Path(mngr.directory)} does not fit the state being restored "
      f"({_describe(err)}); the model or optimizer changed since it was saved: restore with the "
      f"code that wrote it, or delete {run_dir} to start over") from err


def _move_aside(step_dir: Path, corrupt_dir: Path) -> Path:
  dest = corrupt_dir / step_dir.name
  n = 1
  while dest.exists():  # the same step went bad before: keep both
    dest, n = corrupt_dir / f"{step_dir.name}.{n}", n + 1
  if jax.process_index() == 0:  # one host moves the shared folder; the others wait at the barrier
    corrupt_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(step_dir, dest)
  return dest


def _describe(err: BaseException) -> str:
  """`Type: first line of the message`, short and printable: Orbax messages can quote raw file
  bytes or whole trees."""
  lines = str(err).splitlines()
  text = "".join(c for c in (lines[0] if lines else "") if c.isprintable()).strip()
  if len(text) > 80:
    text = text[:77] + "..."
  return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _join(steps) -> str:
  return ", ".join(str(s) for s in sorted(steps)) or "none"


class _TolerantLoop(asyncio.SelectorEventLoop):
  """An event loop that, before it closes, finishes its tasks and consumes their errors; callbacks
  that arrive from other threads after it closed anyway are dropped."""

  def __init__(self) -> None:
    super().__init__()
    self._tasks: set[asyncio.Task] = set()
    self.set_task_factory(self._make_task)

  def _make_task(self, loop, coro, **kwargs) -> asyncio.Task:
    task = asyncio.Task(coro, loop=loop, **kwargs)
    self._tasks.add(task)
    return task

  def close(self) -> None:
    if not self.is_running() and not self.is_closed():
      self._drain()
    super().close()

  def _drain(self) -> None:
    pending = {t for t in self._tasks if not t.done()}
    if pending:
      # Bounded: the reads left are of the same broken step and fail fast; a hung one is cancelled.
      _, stuck = self.run_until_complete(asyncio.wait(pending, timeout=_DRAIN_S))
      for task in stuck:
        task.cancel()
      if stuck:
        self.run_until_complete(asyncio.wait(stuck, timeout=1.0))
    # A sibling's failure was reported by the read that raised first. (asyncio.gather would mark
    # it seen in a callback, but the loop stopped before running that callback.)
    for task in self._tasks:
      if task.done() and not task.cancelled():
        task.exception()
    self._tasks.clear()

  def call_soon_threadsafe(self, callback, *args, context=None):
    try:
      return super().call_soon_threadsafe(callback, *args, context=context)
    except RuntimeError:
      if self.is_closed():
        return None
      raise


class _TolerantPolicy(asyncio.DefaultEventLoopPolicy):
  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _TolerantLoop()


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
  """Orbax runs a restore's reads with asyncio.gather on a fresh loop and closes the loop as soon
  as one read fails, with its sibling reads still in flight. Those then finish in tensorstore's
  threads, whose completion callbacks call `loop.call_soon_threadsafe` on the closed loop (each
  prints a `RuntimeError: Event loop is closed` traceback, dozens after one corrupt step), or
  they fail unobserved (`Task exception was never retrieved`, logged when garbage collected).
  Loops made while restoring let the siblings finish first and consume their errors."""
  previous = asyncio.get_event_loop_policy()
  asyncio.set_event_loop_policy(_TolerantPolicy())
  try:
    yield
  finally:
    asyncio.set_event_loop_policy(previous)

"""Processes of one run: joining JAX's multi-controller runtime, and which process speaks.

Every process runs the same command; `jax.distributed.initialize` joins them into one runtime
whose devices form one global mesh. On a cluster JAX finds the coordinator, the process count
and the process id itself (SLURM, Open MPI, Cloud TPU); elsewhere they come from flags or from
the environment: JAX_COORDINATOR_ADDRESS (read by JAX itself), JAX_NUM_PROCESSES and
JAX_PROCESS_ID (read here). The same works on one machine with CPU devices (collectives over
gloo), which is how the tests run it. Only process 0 prints and writes the run folder's files;
Orbax checkpoints are written by all processes together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from icl_lab.config import ConfigError

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

_state = {"initialized": False}


class ProcessError(ConfigError):
  """A process layout that cannot start; the message names the flag or variable and the fix."""


@dataclass(frozen=True)
class Layout:
  """Where this process sits: None fields are left to JAX's cluster auto-detection."""

  coordinator: str | None = None  # host:port of process 0
  num_processes: int | None = None
  process_id: int | None = None

  @property
  def explicit(self) -> bool:
    return any(v is not None for v in (self.coordinator, self.num_processes, self.process_id))


def _env_int(name: str) -> int | None:
  raw = os.environ.get(name)
  if raw is None or raw == "":
    return None
  try:
    return int(raw)
  except ValueError:
    raise ProcessError(f"{name}={raw!r} must be an int") from None


def layout_from(coordinator: str | None = None, num_processes: int | None = None,
                process_id: int | None = None) -> Layout:
  """The layout from flags, each falling back to its environment variable."""
  layout = Layout(coordinator or os.environ.get(ENV_COORDINATOR) or None,
                  num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES),
                  process_id if process_id is not None else _env_int(ENV_PROCESS_ID))
  n, i = layout.num_processes, layout.process_id
  if n is not None and n < 1:
    raise ProcessError(f"--num-processes={n} must be a positive int")
  if i is not None and n is not None and not 0 <= i < n:
    raise ProcessError(f"--process-id={i} must be in [0, --num-processes={n})")
  if n is not None and n > 1 and layout.coordinator is None:
    raise ProcessError(f"--num-processes={n} needs --coordinator=HOST:PORT (process 0's address) or "
                       f"${ENV_COORDINATOR}")
  return layout


def initialize(layout: Layout | None = None) -> None:
  """Joins the multi-process runtime once per process (a second call does nothing).

  A layout of one process needs no runtime and is skipped; an empty layout asks JAX to detect
  the cluster from its environment. Must run before the first JAX computation.
  """
  if _state["initialized"]:
    return
  layout = layout or Layout()
  if layout.num_processes == 1:
    _state["initialized"] = True
    return
  import jax

  try:
    jax.distributed.initialize(coordinator_address=layout.coordinator, num_processes=layout.num_processes,
                               process_id=layout.process_id)
  except (ValueError, TypeError) as err:  # a layout neither given in full nor detectable
    raise ProcessError(f"cannot join the processes ({err}); pass --coordinator, --num-processes and "
                       f"--process-id (or ${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID}), "
                       f"or run under a cluster JAX detects (SLURM, Open MPI, Cloud TPU)") from None
  _state["initialized"] = True


def joined() -> bool:
  """True once `initialize` ran in this process (with several processes or one)."""
  return _state["initialized"]


def is_main() -> bool:
  """True in process 0 (or in a single-process run): the one that prints and writes files."""
  import jax

  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches `name`; nothing to wait for in a single process."""
  import jax

  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)

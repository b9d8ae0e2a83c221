"""A dependency-free progress display: a live bar with ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def zero_predictor_loss(cfg, step: int) -> float | None:
  """The loss of always predicting 0 at `step` of a regression run, under its curriculum:
  E[y²] = τ²·(trace of Σ over the active dims) + σ² (w = 1: the trace itself). With the
  `excess` weighting the weights have mean 1, so the weighted loss of 0 is the same. None for
  other regression. During a curriculum it grows with the active dims, and so does the raw loss:
  the ratio is what shows whether the model is learning."""
  if cfg.task.kind != "regression":
    return None
  from icl_lab.tasks import regression

  t = cfg.task
  active = int(regression.active_dims(t, step))
  trace = float((regression.x_scales_D(t)[:active] ** 2).sum())
  signal = trace if t.weights == "ones" else t.weight_std**2 * trace
  return signal + t.noise_std**2


class Progress:
  """Shows step/total, loss, steps/s and ETA.

  On a terminal the bar redraws in place; when output is a file or pipe it prints a plain line
  at most every `log_every_s` seconds (and at the end), so logs stay readable. With a
  `reference` (step -> the loss of a trivial predictor at that step, e.g. `zero_predictor_loss`)
  the loss is also shown as a fraction of it.
  """

  def __init__(self, total: int, start: int = 0, *, enabled: bool | None = None, quiet: bool = False,
               label: str = "", log_every_s: float = 30.0, stream=None,
               reference: Callable[[int], float | None] | None = None):
    self.total, self.start, self.label = total, start, label
    self.reference = reference
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty() if enabled is None else enabled
    self.quiet = quiet
    self.log_every_s = log_every_s
    self.t0 = time.perf_counter()
    self.last_log = -float("inf")
    self.step = start

  def update(self, step: int, record: dict[str, Any] | None = None) -> None:
    self.step = step
    if self.quiet:
      return
    now = time.perf_counter()
    done = step - self.start
    rate = done / max(now - self.t0, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    if not self.tty and now - self.last_log < self.log_every_s and step < self.total:
      return
    loss = f" loss {record['loss']:.4g}" if record and "loss" in record else ""
    ref = self.reference(max(step - 1, 0)) if loss and self.reference is not None else None
    if ref:
      loss += f" ({record['loss'] / ref:.3f} of predicting 0)"
    if self.tty:
      width = 24
      filled = int(width * step / max(self.total, 1))
      bar = "#" * filled + "-" * (width - filled)
      self.stream.write(f"\r{self.label} [{bar}] {step}/{self.total}{loss} {rate:.1f} it/s "
                        f"ETA {_fmt_time(eta)}   ")
      self.stream.flush()
    else:
      self.last_log = now
      self.stream.write(f"{self.label} step {step}/{self.total}{loss} {rate:.1f} it/s "
                        f"elapsed {_fmt_time(now - self.t0)} ETA {_fmt_time(eta)}\n")
      self.stream.flush()

  def close(self) -> None:
    if self.tty and not self.quiet:
      self.stream.write("\n")
      self.stream.flush()

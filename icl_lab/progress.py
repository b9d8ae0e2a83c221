"""A dependency-free progress display: a live bar with ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
  """Shows step/total, loss, steps/s and ETA.

  On a terminal the bar redraws in place; when output is a file or pipe it prints a plain line
  at most every `log_every_s` seconds (and at the end), so logs stay readable.
  """

  def __init__(self, total: int, start: int = 0, *, enabled: bool | None = None, quiet: bool = False,
               label: str = "", log_every_s: float = 30.0, stream=None):
    self.total, self.start, self.label = total, start, label
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
    loss = f" loss {record['loss']:.4g}" if record and "loss" in record else ""
    if self.tty:
      width = 24
      filled = int(width * step / max(self.total, 1))
      bar = "#" * filled + "-" * (width - filled)
      self.stream.write(f"\r{self.label} [{bar}] {step}/{self.total}{loss} {rate:.1f} it/s "
                        f"ETA {_fmt_time(eta)}   ")
      self.stream.flush()
    elif now - self.last_log >= self.log_every_s or step >= self.total:
      self.last_log = now
      self.stream.write(f"{self.label} step {step}/{self.total}{loss} {rate:.1f} it/s "
                        f"elapsed {_fmt_time(now - self.t0)} ETA {_fmt_time(eta)}\n")
      self.stream.flush()

  def close(self) -> None:
    if self.tty and not self.quiet:
      self.stream.write("\n")
      self.stream.flush()

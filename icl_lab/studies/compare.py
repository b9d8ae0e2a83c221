"""A reproduction of a study's headline, side by side with the committed results file: each
criterion (met or missed in both), and the key numbers with their intervals and whether they agree.

Two numbers agree when their 95% intervals overlap; without intervals, when they are equal to
3 significant digits (a rerun on the same machine is bitwise, across machines only to rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icl_lab import results
from icl_lab.results import fmt_value
from icl_lab.studies.base import Output

Interval = tuple[float, float] | None


def agree(a: float, ia: Interval, b: float, ib: Interval) -> bool:
  """Overlapping intervals (or a point inside the other's interval); else equal to 3 digits."""
  if ia is not None and ib is not None:
    return ia[0] <= ib[1] and ib[0] <= ia[1]
  if ia is not None or ib is not None:
    lo, hi = ia if ia is not None else ib
    point = b if ia is not None else a
    return lo <= point <= hi
  return f"{a:.3g}" == f"{b:.3g}"


def key_numbers(out: Output, payload: dict[str, Any]) -> dict[str, tuple[float, Interval]]:
  """The study's own key numbers, else every numeric criterion value; none for a partial study
  (unit records missing), whose numbers are not yet the study's."""
  if payload.get("missing_units"):
    return {}
  if out.key_numbers is not None:
    return out.key_numbers(payload)
  found = {}
  for c in out.criteria(payload):
    if isinstance(c.value, (int, float)) and not isinstance(c.value, bool):
      found[c.name] = (float(c.value), None)
  return found


def _fmt(value: float, interval: Interval) -> str:
  return fmt_value(float(value)) + ("" if interval is None else f" [{interval[0]:.4g}, {interval[1]:.4g}]")


def render(out: Output, new: dict[str, Any], committed: dict[str, Any], new_path: Path, committed_path: Path) -> str:
  """The comparison as text: criteria, then key numbers, then one verdict line."""
  lines = [f"{new_path} against the committed {committed_path}:", "criteria (this run | committed):"]
  # criteria_for: a partial study (unit records missing) shows as incomplete, its own criteria unjudged
  crit_new = {c.name: c for c in results.criteria_for(new, out.criteria)}
  crit_old = {c.name: c for c in results.criteria_for(committed, out.criteria)}
  same_verdicts = True
  for name in dict.fromkeys([*crit_new, *crit_old]):
    a, b = crit_new.get(name), crit_old.get(name)
    show = lambda c: "absent" if c is None else f"{results.verdict(c)} ({fmt_value(c.value)})"
    # A criterion the committed file predates is shown, not held against the reproduction.
    same_verdicts &= a is None or b is None or results.verdict(a) == results.verdict(b)
    lines.append(f"  {name}: {show(a)} | {show(b)}")
  nums_new, nums_old = key_numbers(out, new), key_numbers(out, committed)
  disagree = []
  if nums_new:
    lines.append("key numbers (this run | committed | agree):")
  for name in nums_new:
    if name not in nums_old:
      lines.append(f"  {name}: {_fmt(*nums_new[name])} | absent |")
      continue
    ok = agree(*nums_new[name], *nums_old[name])
    disagree += [] if ok else [name]
    lines.append(f"  {name}: {_fmt(*nums_new[name])} | {_fmt(*nums_old[name])} | {'yes' if ok else 'NO'}")
  verdict = ("incomplete: not compared until every unit is recorded" if new.get("missing_units") else
             "new: the committed file is incomplete, so there is nothing to reproduce; --promote replaces it"
             if committed.get("missing_units") else
             "reproduced: the same criteria met and every key number within its interval"
             if same_verdicts and not disagree else
             "differs: " + ", ".join((["criteria verdicts"] if not same_verdicts else []) + disagree))
  lines.append(verdict)
  return "\n".join(lines)

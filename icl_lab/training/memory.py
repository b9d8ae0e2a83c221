"""Training memory, estimated before anything is allocated, so a config far too large for the
device fails with one line naming the keys to lower instead of an allocator crash minutes in.

The estimate errs high: it counts every activation the backward pass may keep, where XLA may
fuse or drop some. It is meant to refuse configs off by orders of magnitude, not to pack memory.
"""

from __future__ import annotations

import os
from pathlib import Path

# Per token and layer, the activations of a pre-LN block that backprop may keep, in units of the
# hidden size: block input, LN1 output, q, k, v, attention output, residual after attention,
# LN2 output.
HIDDEN_ACTS_PER_LAYER = 8
# ... and in units of the MLP width: its pre-GeLU and post-GeLU values; for the SwiGLU MLP, the
# gate's pre-activation, the up-projection and their product (the coefficients).
MLP_ACTS_PER_LAYER = {"gelu": 2, "swiglu": 3}
# ... and per head and (query, key) pair: the attention logits and probabilities.
ATTENTION_ACTS_PER_LAYER = 2
# Per token, outside the blocks, in units of the hidden size: the read-in output and the final
# LayerNorm output (plus the read-out's vocab_or_out values).
HIDDEN_ACTS_OUTSIDE = 2
# Params, grads and Adam's two moments.
STATE_COPIES = 4


class ConfigTooLarge(ValueError, MemoryError):
  """The config's training state and activations do not fit in the device's memory."""


def estimate_train_bytes(num_params: int, batch: int, seq_len: int, hidden: int, layers: int,
                         heads: int, mlp_width: int, vocab_or_out: int = 1, dtype_bytes: int = 4,
                         mlp: str = "gelu") -> int:
  """Bytes for one training step on one device (pass that device's share of the batch).

  STATE_COPIES·params + layers·[batch·seq·(8·hidden + m·mlp_width) + batch·heads·2·seq²]
  + batch·seq·(2·hidden + vocab_or_out), all times dtype_bytes; m = 2 for GeLU, 3 for SwiGLU.
  """
  state = STATE_COPIES * num_params
  tokens = batch * seq_len
  per_layer = (tokens * (HIDDEN_ACTS_PER_LAYER * hidden + MLP_ACTS_PER_LAYER[mlp] * mlp_width)
               + batch * heads * ATTENTION_ACTS_PER_LAYER * seq_len**2)
  outside = tokens * (HIDDEN_ACTS_OUTSIDE * hidden + vocab_or_out)
  return dtype_bytes * (state + layers * per_layer + outside)


def available_bytes() -> int:
  """One device's memory: the accelerator's own limit where it reports one, else the host's RAM
  (capped by a cgroup memory limit, as in a container)."""
  import jax  # lazily: the CLI sets XLA's host device flags before jax is first imported

  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # noqa: BLE001 - a backend without memory stats (CPU returns None, some raise)
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return min(ram, _cgroup_limit() or ram)


def check_fits(estimate: int, available: int, key_hint: str) -> None:
  """Raises ConfigTooLarge, naming `key_hint` (the config keys to lower), if estimate > available."""
  if estimate > available:
    raise ConfigTooLarge(f"this config needs about {format_bytes(estimate)} of memory to train but the device "
                         f"has {format_bytes(available)}; lower {key_hint}")


def format_bytes(n: float) -> str:
  """Decimal units with one decimal: 23.4 GB."""
  for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
    if abs(n) < 1000 or unit == "PB":
      return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1000
  raise AssertionError("unreachable")


def _cgroup_limit() -> int | None:
  """The cgroup v2 (or v1) memory limit in bytes, or None where there is none."""
  for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      raw = Path(path).read_text().strip()
    except OSError:
      continue
    if raw.isdigit() and int(raw) < 1 << 60:  # v1 writes a huge number for "no limit"
      return int(raw)
  return None

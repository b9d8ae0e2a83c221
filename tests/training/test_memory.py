"""The training memory estimate follows its documented terms and refuses configs far too large."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from icl_lab.training import memory
from icl_lab.training.memory import ConfigTooLarge

HINT = "task.num_exemplars (sequence length) or train.batch_size"
# The quick preset's size: L8, H64, M4 heads, MLP 4·64, about 0.4M params.
QUICK = dict(num_params=400_000, hidden=64, layers=8, heads=4, mlp_width=256)


def test_estimate_matches_a_hand_computation_of_its_terms():
  params, batch, seq, hidden, layers, heads, mlp, out = 1000, 2, 3, 4, 5, 2, 16, 1
  state = 4 * params  # params, grads, Adam mu and nu
  per_layer = batch * seq * (8 * hidden + 2 * mlp) + batch * heads * 2 * seq**2  # 384 + 72
  outside = batch * seq * (2 * hidden + out)  # read-in, final LayerNorm, read-out
  expected = 4 * (state + layers * per_layer + outside)
  assert expected == 4 * (4000 + 5 * 456 + 54) == 25336
  got = memory.estimate_train_bytes(params, batch, seq, hidden, layers, heads, mlp, vocab_or_out=out)
  assert got == expected
  # Half-width dtype halves everything.
  assert memory.estimate_train_bytes(params, batch, seq, hidden, layers, heads, mlp, dtype_bytes=2) == expected // 2
  # The SwiGLU MLP keeps a third MLP-width activation per token and layer (gate, up, product).
  swiglu = memory.estimate_train_bytes(params, batch, seq, hidden, layers, heads, mlp, vocab_or_out=out, mlp="swiglu")
  assert swiglu - expected == 4 * layers * batch * seq * mlp


def test_a_hundred_thousand_exemplars_at_batch_64_is_refused_naming_the_keys():
  n = 100_000
  estimate = memory.estimate_train_bytes(batch=64, seq_len=2 * n, **QUICK)
  assert estimate > 100e12  # the seq² attention terms alone: 8·64·4·2·(2e5)²·4 B = 655 TB
  with pytest.raises(ConfigTooLarge) as err:
    memory.check_fits(estimate, int(23.4e9), HINT)
  message = str(err.value)
  assert message == (f"this config needs about {memory.format_bytes(estimate)} of memory to train but the "
                     f"device has 23.4 GB; lower {HINT}")
  assert " TB " in message and "\n" not in message
  assert isinstance(err.value, ValueError) and isinstance(err.value, MemoryError)
  with pytest.raises(ConfigTooLarge, match="train.batch_size"):
    memory.check_fits(estimate, memory.available_bytes(), HINT)


def test_the_quick_size_fits_in_a_gigabyte():
  estimate = memory.estimate_train_bytes(batch=64, seq_len=40, **QUICK)
  # 4 B · [4·400k + 8·(64·40·(8·64 + 2·256) + 64·4·2·40²) + 64·40·(2·64 + 1)]
  assert estimate == 4 * (1_600_000 + 8 * (2_621_440 + 819_200) + 330_240) == 117_821_440
  memory.check_fits(estimate, int(1e9), HINT)


def test_training_checks_the_tiny_preset_against_a_hand_count(monkeypatch):
  """train.check_memory passes the config's real sizes: parameters counted by hand, 2N tokens."""
  from icl_lab.config import apply_overrides, get_preset
  from icl_lab.training import train

  # tiny: d = 4 (tokens d + 1 = 5 wide), N = 8 (16 tokens, 16 positions), L2, H32, 2 heads, MLP 128.
  h, w = 32, 128
  block = 2 * h + 4 * (h * h + h) + 2 * h + (h * w + w) + (w * h + h)  # ln1, q/k/v/o, ln2, up, down
  params = (5 * h + h) + 16 * h + 2 * block + 2 * h + (h + 1)  # read-in, positions, blocks, ln_f, read-out
  assert params == 26_209
  acts = 2 * (128 * 16 * (8 * h + 2 * w) + 128 * 2 * 2 * 16**2) + 128 * 16 * (2 * h + 1)
  seen = []
  monkeypatch.setattr(memory, "check_fits", lambda need, available, hint: seen.append((need, available, hint)))
  cfg = get_preset("tiny")
  train.check_memory(cfg)
  train.check_memory(cfg, members=3)
  assert [s[0] for s in seen] == [4 * (4 * params + acts), 3 * 4 * (4 * params + acts)] == [10_389_008, 31_167_024]
  assert seen[0][1] == memory.available_bytes() and seen[0][2] == HINT
  monkeypatch.undo()
  # 100k exemplars: the seq² attention terms alone are 2·128·2·2·(2e5)² · 4 B ≈ 160 TB.
  with pytest.raises(ConfigTooLarge, match=r"TB of memory.*lower task.num_exemplars"):
    train.check_memory(apply_overrides(cfg, ["task.num_exemplars=100000"]))


def test_available_bytes_is_the_host_ram_on_cpu():
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  # A container's cgroup limit caps it; "max" (v2) or a number near 2⁶³ (v1) means none.
  limits = [int(raw) for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
            if Path(f).exists() and (raw := Path(f).read_text().strip()).isdigit() and int(raw) < 1 << 60]
  assert memory.available_bytes() == min([ram] + limits[:1])


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (23.4e9, "23.4 GB"),
                                     (246e12, "246.0 TB"), (5e18, "5000.0 PB")])
def test_format_bytes(n, text):
  assert memory.format_bytes(n) == text

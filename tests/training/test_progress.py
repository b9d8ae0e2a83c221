"""The progress line shows the loss beside the loss of predicting 0 at the current curriculum stage."""

import io

import pytest

from icl_lab import config
from icl_lab.training.progress import Progress, zero_predictor_loss


def test_zero_predictor_loss_follows_the_curriculum():
  quick = config.get_preset("quick")  # d = 8, 2 -> 8 active dims over the first 4000 steps
  assert zero_predictor_loss(quick, 0) == pytest.approx(2.0)  # τ²·2 active dims
  assert zero_predictor_loss(quick, 2000) == pytest.approx(5.0)
  assert zero_predictor_loss(quick, 4000) == pytest.approx(8.0)
  noisy = config.apply_overrides(config.get_preset("tiny"), ["task.noise_std=0.5", "task.weight_std=2.0"])
  assert zero_predictor_loss(noisy, 0) == pytest.approx(4 * 4 + 0.25)  # τ²d + σ², no curriculum
  skewed = config.apply_overrides(config.get_preset("tiny"), ["task.x_cov=skewed"])
  assert zero_predictor_loss(skewed, 0) == pytest.approx(4.0)  # tr Σ = d is kept
  assert zero_predictor_loss(config.get_preset("tiny_lm"), 0) is None


def test_progress_line_shows_the_normalised_loss():
  out = io.StringIO()
  bar = Progress(total=100, enabled=False, stream=out, reference=lambda step: 8.0)
  bar.update(100, {"loss": 2.0})
  assert "loss 2 (0.250 of predicting 0)" in out.getvalue()
  plain = io.StringIO()
  Progress(total=10, enabled=False, stream=plain).update(10, {"loss": 2.0})
  assert "loss 2 " in plain.getvalue() and "predicting" not in plain.getvalue()

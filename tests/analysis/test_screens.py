"""Recipe screens: seconds from the log, and training that stops at the first checkpoint below a."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from icl_lab import config
from icl_lab.analysis import screens
from icl_lab.training import train


def test_logged_seconds_sum_each_logged_interval_over_its_rate():
  log = [{"step": 100, "steps_per_s": 10.0}, {"step": 300, "steps_per_s": 50.0}, {"step": 400, "steps_per_s": 25.0}]
  assert train.logged_seconds(log, 300) == pytest.approx(100 / 10 + 200 / 50)
  assert train.logged_seconds(log, 400) == pytest.approx(14.0 + 4.0)
  assert screens.median_seconds_per_step(log, 300) == pytest.approx((0.1 + 0.02) / 2)
  assert screens.median_seconds_per_step(log, 400) == pytest.approx(0.04)
  with pytest.raises(ValueError, match="no line at step 200"):
    train.logged_seconds(log, 200)


def _tiny(**train_kw):
  cfg = config.get_preset("tiny")
  return config.apply_overrides(cfg, [f"train.{k}={v}" for k, v in {"steps": 400, **train_kw}.items()])


def test_until_a_stops_after_the_segment_that_crosses_and_resumes_to_the_end(tmp_path):
  cfg = _tiny()
  # Any a is below +inf: the first segment's checkpoints are scored and training stops there.
  got = screens.until_a(cfg, tmp_path, threshold=math.inf, segment_steps=200, num_prompts=64, log=lambda m: None)
  run_dir = train.run_dir_for(cfg, tmp_path)
  assert [p["step"] for p in got["curve"]] == [100, 200]
  assert got["first_below"]["step"] == 100
  assert not train.is_done(run_dir) and max(train.kept_steps(run_dir)) == 200
  assert 0 < got["curve"][0]["train_s"] < got["curve"][1]["train_s"]
  crossed = got
  # A budget stops a run that has not crossed, on the full run's schedule, and says where.
  got = screens.until_a(cfg, tmp_path, threshold=-math.inf, segment_steps=200, max_steps=300, num_prompts=64,
                        log=lambda m: None)
  assert [p["step"] for p in got["curve"]] == [100, 200, 300]
  assert got["first_below"] is None and got["budget"] == 300 and got["steps"] == 400
  assert not train.is_done(run_dir) and max(train.kept_steps(run_dir)) == 300
  # Nothing is below −inf: the same call resumes the run to its end and scores every checkpoint.
  got = screens.until_a(cfg, tmp_path, threshold=-math.inf, segment_steps=200, num_prompts=64, log=lambda m: None)
  assert [p["step"] for p in got["curve"]] == [100, 200, 300, 400]
  assert got["first_below"] is None and train.is_done(run_dir)
  assert all(p["a"] == pytest.approx(p["a"]) for p in got["curve"])  # finite numbers, not NaN
  # The screens table of experiments/README.md renders both kinds of line.
  log = tmp_path / "screens_to_a.jsonl"
  rows = (("fast", crossed), ("slow", got))
  log.write_text("".join(json.dumps({"name": n, "overrides": [], **r}) + "\n" for n, r in rows))
  lines = _screen_script().table(str(log)).splitlines()
  assert lines[2].startswith("| fast | (the cpu recipe) | 0 | 100 of 400 |")
  assert lines[3].startswith("| slow | (the cpu recipe) | 0 | not below -inf by 400 ")


def _screen_script():
  path = Path(__file__).parents[2] / "experiments" / "screen_recipe.py"
  spec = importlib.util.spec_from_file_location("screen_recipe", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_until_a_refuses_a_segment_that_outlives_the_kept_checkpoints(tmp_path):
  with pytest.raises(config.ConfigError, match="keep_checkpoints=2"):
    screens.until_a(_tiny(keep_checkpoints=2), tmp_path, segment_steps=300)
  with pytest.raises(config.ConfigError, match="multiple of train.checkpoint_every"):
    screens.until_a(_tiny(), tmp_path, segment_steps=150)
  for bad in (-100, 250):
    with pytest.raises(config.ConfigError, match=f"max_steps={bad} must be a positive multiple"):
      screens.until_a(_tiny(), tmp_path, max_steps=bad)

"""The first run on a GPU or TPU: does the lab compute right there, and how fast? Under 8 minutes
on one H100/H200 by design (each part has a time cap; a part that runs out is recorded as such).

  python benchmarks/accelerator_check.py [--out benchmarks/results] [--smoke]

1. the test subset that touches numerics (models, tasks, learners and metrics, constructions,
   the training core, resume), run on the accelerator;
2. the training step at the quick and paper model sizes, float32 and bf16: steps/s, and TFLOP/s
   from XLA's FLOP count of the compiled step;
3. the quick preset trained end to end (10k steps), its wall time and final loss;
4. the paper preset's measured step time against `benchmarks/paper_cost.py`'s estimate
   (FLOPs at 50 and 150 TFLOP/s sustained, at least 5 ms per step).

Writes one file, `<out>/accelerator_<device>.json`, and prints its summary. `--smoke` checks the
script itself on a CPU in about a minute: the tiny size, a few steps, no tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

# The numerics subset: everything that computes a number the figures depend on.
TESTS = ["tests/models", "tests/tasks", "tests/analysis/test_learners.py", "tests/analysis/test_metrics.py",
         "tests/constructions", "tests/training/test_training_core.py", "tests/training/test_train.py"]
TESTS_CAP_S = 240
TIMED_STEPS = 200  # per size and dtype, after a warm-up call
ASSUMED_TFLOPS, MIN_STEP_MS = (50.0, 150.0), 5.0  # paper_cost.py's defaults


def run_tests(platform: str, cap_s: float) -> dict:
  """pytest on the accelerator (tests/conftest.py would pick the CPU otherwise), at JAX's default
  matmul precision (TF32 on recent NVIDIA GPUs): a tolerance failure there may be that, so rerun
  it with JAX_DEFAULT_MATMUL_PRECISION=highest before suspecting the code."""
  env = {**os.environ, "JAX_PLATFORMS": platform}
  cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *TESTS]  # -q comes from pyproject.toml
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap_s)
  except subprocess.TimeoutExpired:
    return {"status": f"timed out after {cap_s:.0f} s", "paths": TESTS}
  summary = (proc.stdout.strip().splitlines() or [""])[-1]
  failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
  return {"status": "passed" if proc.returncode == 0 else "failed", "summary": summary, "failed": failed,
          "wall_s": round(time.perf_counter() - t0, 1), "paths": TESTS}


def time_sizes(sizes: dict, steps: int) -> dict:
  from bench_train import solo

  from icl_lab import config

  out = {}
  for name, preset in sizes.items():
    for dtype in ("float32", "bfloat16"):
      cfg = config.apply_overrides(config.get_preset(preset), [f"train.compute_dtype={dtype}"])
      sps, flops = solo(cfg, steps, devices="one")
      out[f"{name}/{dtype}"] = {"steps_per_s": sps, "step_ms": 1e3 / sps, "gflop_per_step": flops / 1e9,
                                "tflop_per_s": flops * sps / 1e12}
      print(f"  {name} {dtype}: {sps:.1f} steps/s, {1e3 / sps:.2f} ms/step, {flops * sps / 1e12:.2f} TFLOP/s",
            flush=True)
  return out


def train_preset(preset: str, overrides: list[str]) -> dict:
  from icl_lab import config
  from icl_lab.training import train

  cfg = config.apply_overrides(config.get_preset(preset), overrides)
  with tempfile.TemporaryDirectory() as runs:
    t0 = time.perf_counter()
    run_dir = train.train(cfg, runs, progress=False, quiet=True)
    wall = time.perf_counter() - t0
    last = train.read_metrics(run_dir)[-1]
    done = train.read_done(run_dir)
  return {"preset": preset, "overrides": overrides, "steps": cfg.train.steps, "wall_s": round(wall, 1),
          "train_s": round(done["train_s"], 1), "steps_per_s": done["steps_per_s"], "final_loss": last["loss"]}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
  p.add_argument("--smoke", action="store_true", help="check the script on a CPU: tiny size, few steps, no tests")
  args = p.parse_args()
  # This process and the tests' share the accelerator: neither may take most of its memory up front.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  import jax

  dev = jax.devices()[0]
  platform = jax.default_backend()
  if platform == "cpu" and not args.smoke:
    raise SystemExit("accelerator_check: JAX sees no GPU or TPU (backend cpu); install jax[cuda12] or "
                     "jax[tpu], or pass --smoke to check the script on the CPU")
  t0 = time.perf_counter()
  report = {"device": dev.device_kind, "platform": platform, "num_devices": jax.device_count(),
            "jax": jax.__version__, "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "smoke": args.smoke}
  print(f"accelerator check on {dev.device_kind} ({platform}), jax {jax.__version__}", flush=True)

  print("1. numerics tests" + (" (skipped: --smoke)" if args.smoke else ""), flush=True)
  report["tests"] = {"status": "skipped (--smoke)"} if args.smoke else run_tests(platform, TESTS_CAP_S)
  print(f"  {report['tests']}", flush=True)

  print("2. step time by size and dtype", flush=True)
  sizes = {"tiny": "tiny"} if args.smoke else {"quick": "quick", "paper": "paper"}
  report["step_time"] = time_sizes(sizes, 20 if args.smoke else TIMED_STEPS)

  print("3. training a preset end to end", flush=True)
  report["train"] = (train_preset("tiny", ["train.steps=40", "train.checkpoint_every=20"]) if args.smoke
                     else train_preset("quick", []))
  print(f"  {report['train']}", flush=True)

  print("4. paper step: measured against paper_cost.py's estimate", flush=True)
  from icl_lab import config

  ref = "tiny" if args.smoke else "paper"
  cfg = config.get_preset(ref)
  # paper_cost.py's FLOPs per step: XLA's count of the same compiled step, taken in part 2.
  flops = report["step_time"][f"{ref}/float32"]["gflop_per_step"] * 1e9
  measured_ms = report["step_time"][f"{ref}/float32"]["step_ms"]
  estimate_ms = {f"{r:g}_tflops": max(flops / (r * 1e12), MIN_STEP_MS / 1e3) * 1e3 for r in ASSUMED_TFLOPS}
  report["paper_cost"] = {"preset": ref, "gflop_per_step": flops / 1e9, "measured_step_ms": measured_ms,
                          "estimated_step_ms": estimate_ms,
                          "measured_over_estimate": {k: measured_ms / v for k, v in estimate_ms.items()},
                          "hours_for_preset_steps": measured_ms / 1e3 * cfg.train.steps / 3600}
  print(f"  {report['paper_cost']}", flush=True)
  report["total_s"] = round(time.perf_counter() - t0, 1)

  slug = re.sub(r"[^a-z0-9]+", "_", dev.device_kind.lower()).strip("_")
  path = Path(args.out) / f"accelerator_{slug}{'_smoke' if args.smoke else ''}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=1) + "\n")
  print(f"wrote {path} ({report['total_s']:.0f} s)")


if __name__ == "__main__":
  main()

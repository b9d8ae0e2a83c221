"""Training cost of each figure's `paper` preset, from XLA's FLOP count of the compiled step.

Counts the FLOPs of one training step per distinct model (compiled, not run, so this works on a
CPU), multiplies by the steps of every model a figure trains, and turns the total into hours
under two stated assumptions: a sustained rate in TFLOP/s, and a floor per step below which a
small model cannot go however few FLOPs it has (kernel launches, optimizer update). The default
floor, 5 ms, is measured: Fig. 3's L8/H64 two-seed ensemble stepped at 198 steps/s alone on one
H200 (`experiments/fig3_gpu/run_log.txt`; 2 ms had been assumed before). Shallower models step
faster (the L1 unit ran at 262 steps/s while sharing the device), so small units are over-counted.

A study run in units trains each unit's models as one vmapped ensemble: a unit of K models costs
K times the FLOPs of a step but pays the floor once. Units run one after another here; units
started side by side on one device (docs/usage.md) overlap their floors.

  python benchmarks/paper_cost.py [--preset paper|cpu|gpu] [--tflops 50,150] [--min-step-ms 5]
"""

from __future__ import annotations

import argparse

from bench_train import step_flops

from icl_lab import config, studies
from icl_lab.studies.base import RunRequest
from icl_lab.training import train


def flops_per_step(cfg: config.Config) -> float:
  tx = train.make_optimizer(cfg.train)
  graphdef, state = train.init_state(cfg, tx)
  flops = step_flops(train.make_multi_step(cfg, graphdef, tx, mesh=None), state)
  if flops != flops:  # NaN: this backend's cost analysis gave no FLOP count
    raise RuntimeError("XLA's cost analysis reported no 'flops' for the training step on this backend")
  return flops


def figure_units(preset: str) -> dict[str, list[list[config.Config]]]:
  """Every distinct model each study trains at `preset`, grouped as the study trains them (one
  group per unit for studies run in units, one per model otherwise), with the study's own
  settings for that preset (Fig. 2's quick models are 4 layers deep, Fig. 3's train 5k steps,
  Fig. 4's are d = 4 models and their controls), so the count matches what `icl-lab run` trains."""
  out = {}
  for name, module in studies.MODULES.items():
    cfgs = module.configs(preset) if preset in module.SETTINGS else []
    if not cfgs:
      continue
    study = studies.STUDIES[name]
    plan = study.plan
    groups = [list(u.cfgs) for u in plan(RunRequest(preset))[0]] if plan else [[c] for c in cfgs]
    out[f"{name} ({', '.join(study.results_stems)})"] = groups
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="paper")
  p.add_argument("--tflops", default="50,150", help="assumed sustained TFLOP/s, comma-separated")
  p.add_argument("--min-step-ms", type=float, default=5.0,
                 help="floor per training step (5: measured for L8/H64 on one H200)")
  args = p.parse_args()
  rates = [float(r) for r in args.tflops.split(",")]
  cache: dict[tuple, float] = {}
  print(f"preset {args.preset}; hours at {', '.join(f'{r:g}' for r in rates)} TFLOP/s sustained, "
        f"with at least {args.min_step_ms:g} ms per step")
  for fig, groups in figure_units(args.preset).items():
    total_flops, hours = 0.0, [0.0] * len(rates)
    for group in groups:
      c = group[0]
      key = (c.model, c.task.dim, c.task.num_exemplars, c.train.batch_size)
      if key not in cache:
        cache[key] = flops_per_step(c)
      f = cache[key] * len(group)
      total_flops += f * c.train.steps
      for i, r in enumerate(rates):
        step_s = max(f / (r * 1e12), args.min_step_ms / 1e3)
        hours[i] += step_s * c.train.steps / 3600
    cfgs = [c for group in groups for c in group]
    sizes = sorted({f"L{c.model.layers}/H{c.model.hidden}" for c in cfgs})
    plural = lambda n, word: f"{n} {word}{'s' * (n != 1)}"
    print(f"{fig}: {plural(len(cfgs), 'model')} in {plural(len(groups), 'unit')} ({', '.join(sizes)}), "
          f"{total_flops / 1e15:.0f} PFLOP; "
          + ", ".join(f"{h:.2f} h at {r:g}" for h, r in zip(hours, rates)))

if __name__ == "__main__":
  main()

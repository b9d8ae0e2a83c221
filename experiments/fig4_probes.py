"""Fig. 4/5: decode XᵀY and w_OLS from every layer of a d = 4 transformer and of its w = 1 control.

  python experiments/fig4_probes.py --preset quick            # figures/fig4_probes.{json,png,pdf}
  python experiments/fig4_probes.py --preset paper            # figures/fig4_probes_paper.*
"""

from __future__ import annotations

import argparse
import shlex
import sys

from icl_lab import plot_probes, probes


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="quick", choices=("quick", "paper", "tiny"))
  p.add_argument("--steps", type=int, default=None,
                 help="training steps for both models (default: quick 8000, else the preset's)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="extra config override for both models, e.g. --set model.hidden=128")
  p.add_argument("--runs-dir", default="runs")
  p.add_argument("--out", default="figures")
  p.add_argument("--prefixes", default=None,
                 help="comma-separated prefix lengths n to probe (default: N-1, the full prompt)")
  p.add_argument("--probe-steps", type=int, default=1500)
  p.add_argument("--probe-batch", type=int, default=256)
  p.add_argument("--proj-dim", type=int, default=512)
  p.add_argument("--num-train", type=int, default=None,
                 help="prompts the probes train on (default: quick 16384, else 4096; the paper "
                      "model's states take 2.8 GB per 1024 prompts)")
  p.add_argument("--num-test", type=int, default=2048, help="held-out prompts they are scored on")
  p.add_argument("--probe-seed", type=int, default=0)
  p.add_argument("--position-only", action="store_true",
                 help="attention scores from learned per-position scores only (no content query)")
  args = p.parse_args(argv)

  steps = args.steps if args.steps is not None else (8000 if args.preset == "quick" else None)
  num_train = args.num_train if args.num_train is not None else (16384 if args.preset == "quick" else 4096)
  prefixes = None if args.prefixes is None else [int(v) for v in args.prefixes.split(",")]
  probe_cfg = probes.ProbeConfig(proj_dim=args.proj_dim, steps=args.probe_steps,
                                 batch_size=args.probe_batch, seed=args.probe_seed,
                                 content_query=not args.position_only)
  command = " ".join(shlex.quote(a) for a in ["python", "experiments/fig4_probes.py"] + sys.argv[1:])
  path = probes.run_fig4(args.preset, steps=steps, overrides=args.overrides, runs_dir=args.runs_dir,
                         out_dir=args.out, prefixes=prefixes, probe_cfg=probe_cfg,
                         num_train=num_train, num_test=args.num_test, command=command)
  print(path)
  for fig in plot_probes.plot_fig4(path):
    print(fig)


if __name__ == "__main__":
  main()

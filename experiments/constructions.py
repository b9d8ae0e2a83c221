"""Compiled constructions vs their target learners: figures/constructions.{json,png,pdf}.

  python experiments/constructions.py              # compute, write JSON, draw
  python experiments/constructions.py --plot-only  # redraw from the JSON
"""

from __future__ import annotations

import argparse
import os
import sys

from icl_lab.constructions import study


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="figures/constructions.json")
  parser.add_argument("--dims", default="2,4,8", help="comma-separated d values")
  parser.add_argument("--n", type=int, default=16, help="pairs per prompt")
  parser.add_argument("--batch", type=int, default=128, help="prompts per (construction, d)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
  parser.add_argument("--trained", default="figures/fig1_noiseless.json",
                      help="Fig. 1 results whose transformer is drawn beside the constructions")
  args = parser.parse_args(argv)
  if not args.plot_only:
    dims = tuple(int(v) for v in args.dims.split(","))
    res = study.run_study(dims, args.n, batch=args.batch, seed=args.seed,
                          command=" ".join(["python", *sys.argv]))
    if os.path.exists(args.trained):
      res["trained_model"] = study.trained_agreement(args.trained, args.n)
    study.write_json(res, args.out)
    print(f"wrote {args.out} in {res['meta']['wall_clock_s']} s")
  for path in study.plot(args.out, os.path.splitext(args.out)[0]):
    print(f"wrote {path}")


if __name__ == "__main__":
  main()

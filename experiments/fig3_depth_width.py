"""Fig. 3: MSPD/d to each learner against depth L ∈ {1, 2, 4, 8} (H = 64) and width
H ∈ {16, 32, 64, 128} (L = 4), two seeds per point.

  python experiments/fig3_depth_width.py --preset quick
  python experiments/fig3_depth_width.py --preset paper   # paper widths: --set ... as needed
"""

import sys

from _common import base_config, parser

from icl_lab import manifest, sweeps

# Fourteen CPU models: each gets a quarter of the Fig. 1 budget.
OVERRIDES = {"quick": ["train.steps=5000", "task.curriculum_steps=2000", "train.checkpoint_every=1000"]}

if __name__ == "__main__":
  args = parser(__doc__).parse_args()
  try:
    base = base_config(args, OVERRIDES)
    stem = manifest.results_stem("fig3_depth_width", base, customized=bool(args.overrides))
    sweeps.run_fig3(base, stem, runs_dir=args.runs_dir, out_dir=args.out)
  except ValueError as err:
    sys.exit(f"error: {err}")

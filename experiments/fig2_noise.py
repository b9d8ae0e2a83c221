"""Fig. 2: one model per (σ, τ) in the paper's grid; MSPD/d to OLS and ridge(λ), λ ∈ {1/16, 1/9, 1/4, 4/9}.

  python experiments/fig2_noise.py --preset quick
  python experiments/fig2_noise.py --preset paper
"""

import sys

from _common import base_config, parser

from icl_lab import manifest, sweeps

# The quick grid trains five CPU models, so each gets fewer steps than the Fig. 1 model.
OVERRIDES = {"quick": ["train.steps=10000", "task.curriculum_steps=4000", "train.checkpoint_every=1000"]}

if __name__ == "__main__":
  args = parser(__doc__).parse_args()
  try:
    base = base_config(args, OVERRIDES)
    stem = manifest.results_stem("fig2_noise", base, customized=bool(args.overrides))
    sweeps.run_fig2(base, stem, runs_dir=args.runs_dir, out_dir=args.out)
  except ValueError as err:
    sys.exit(f"error: {err}")

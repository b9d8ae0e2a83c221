"""Fig. 2: one model per (σ, τ) of the paper's noise grid; MSPD/d to OLS and ridge(λ).

The study lives in icl_lab/studies/fig2.py; this is `icl-lab run fig2`:

  python experiments/fig2_noise.py --preset tiny                  # seconds; results/
  python experiments/fig2_noise.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "fig2", *sys.argv[1:]]))

"""Fig. 4/5: probe XᵀY and w_OLS from every layer of a d = 4 model and of its w = 1 control.

The study lives in icl_lab/studies/fig4.py; this is `icl-lab run fig4`:

  python experiments/fig4_probes.py --preset tiny                  # seconds; results/
  python experiments/fig4_probes.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "fig4", *sys.argv[1:]]))

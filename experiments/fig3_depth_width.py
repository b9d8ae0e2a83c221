"""Fig. 3: MSPD/d to each learner against depth and width, two seeds per point.

The study lives in icl_lab/studies/fig3.py; this is `icl-lab run fig3`:

  python experiments/fig3_depth_width.py --preset tiny                  # seconds; results/
  python experiments/fig3_depth_width.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "fig3", *sys.argv[1:]]))

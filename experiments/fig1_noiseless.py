"""Fig. 1 and Fig. 6: noiseless d = 8; the transformer against every reference learner (= icl-lab replicate).

The study lives in icl_lab/studies/fig1.py; this is `icl-lab run fig1`:

  python experiments/fig1_noiseless.py --preset tiny                  # seconds; results/
  python experiments/fig1_noiseless.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "fig1", *sys.argv[1:]]))

"""Compiled SGD / GD / ridge transformers and the LSA layer against their target learners.

The study lives in icl_lab/studies/constructions.py; this is `icl-lab run constructions`:

  python experiments/constructions.py --preset tiny                  # seconds; results/
  python experiments/constructions.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "constructions", *sys.argv[1:]]))

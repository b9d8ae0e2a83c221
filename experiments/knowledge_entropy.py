"""Knowledge entropy (Kim et al., ICLR 2025): its decay over pretraining, its cost to continual learning,
and resuscitation, on the synthetic fact world.

The study lives in icl_lab/studies/knowledge_entropy.py; this is `icl-lab run knowledge_entropy`:

  python experiments/knowledge_entropy.py --preset tiny                  # under a minute; results/
  python experiments/knowledge_entropy.py [--preset P] [--set KEY=VALUE]  # `icl-lab studies` lists the presets
"""

import sys

from icl_lab import cli

if __name__ == "__main__":
  sys.exit(cli.main(["run", "knowledge_entropy", *sys.argv[1:]]))

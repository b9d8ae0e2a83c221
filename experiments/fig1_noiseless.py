"""Fig. 1 and Fig. 6: noiseless d = 8; the transformer against every reference learner.

  python experiments/fig1_noiseless.py --preset quick    # CPU, same as `icl-lab replicate`
  python experiments/fig1_noiseless.py --preset paper    # GPU, L16/H512, 500k steps
"""

import sys

from _common import base_config, parser

from icl_lab import replicate


def main(doc: str = __doc__) -> None:
  args = parser(doc).parse_args()
  try:
    replicate.main(base_config(args), runs_dir=args.runs_dir, out_dir=args.out)
  except ValueError as err:
    sys.exit(f"error: {err}")


if __name__ == "__main__":
  main()

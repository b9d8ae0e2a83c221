"""Fig. 6: R² of the best linear fit to the transformer's predictions against n.

It comes from the same model and evaluation as Fig. 1, so this runs the Fig. 1 study (reusing
its finished training run) and writes both results files.
"""

import sys

from _common import base_config, parser

from icl_lab import replicate

if __name__ == "__main__":
  args = parser(__doc__).parse_args()
  try:
    replicate.main(base_config(args), runs_dir=args.runs_dir, out_dir=args.out)
  except ValueError as err:
    sys.exit(f"error: {err}")

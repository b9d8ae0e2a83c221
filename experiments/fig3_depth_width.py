"""Fig. 3: MSPD/d to each learner against depth L ∈ {1, 2, 4, 8} (H = 64) and width
H ∈ {16, 32, 64, 128} (L = 4), two seeds per point.

  python experiments/fig3_depth_width.py --preset quick
  python experiments/fig3_depth_width.py --preset paper
"""

from _common import run_figure

from icl_lab import sweeps

# Fourteen CPU models: each gets a quarter of the Fig. 1 budget.
OVERRIDES = {"quick": ["train.steps=5000", "task.curriculum_steps=2000", "train.checkpoint_every=1000"]}

if __name__ == "__main__":
  run_figure(__doc__, OVERRIDES, "fig3_depth_width", sweeps.run_fig3)

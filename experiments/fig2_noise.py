"""Fig. 2: one model per (σ, τ) in the paper's grid; MSPD/d to OLS and ridge(λ), λ ∈ {1/16, 1/9, 1/4, 4/9}.

  python experiments/fig2_noise.py --preset quick
  python experiments/fig2_noise.py --preset paper
"""

from _common import run_figure

from icl_lab import sweeps

# The quick grid trains five CPU models, so each is 4 layers deep (half the Fig. 1 model's
# cost per step) for 10k steps.
OVERRIDES = {"quick": ["model.layers=4", "train.steps=10000", "task.curriculum_steps=4000",
                       "train.checkpoint_every=1000"]}

if __name__ == "__main__":
  run_figure(__doc__, OVERRIDES, "fig2_noise", sweeps.run_fig2)

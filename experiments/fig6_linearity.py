"""Fig. 6: R² of the best linear fit to the transformer's predictions against n.

It comes from the same model and evaluation as Fig. 1, so this runs the Fig. 1 study (reusing
its finished training run) and writes both results files.
"""

from fig1_noiseless import main

if __name__ == "__main__":
  main(__doc__)

"""How a run is trained: the jitted step and loop (`train`), ensembles, checkpoints, the run lock,
the memory estimate, host devices and the progress display."""

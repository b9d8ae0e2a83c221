"""What is measured: reference learners, SPD/MSPD/ILWD and implicit weights (`metrics`), a trained
run's evaluation (`evaluate`), probes and the knowledge-entropy measures."""

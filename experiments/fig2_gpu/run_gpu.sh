set -o pipefail
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest PYTHONUNBUFFERED=1 PYTHONPATH=.
T0=$(date +%s)
{ date; nvidia-smi | sed -n 9p; python3 --version; nproc;
  python3 -c "import jax,flax,optax,orbax.checkpoint as o,numpy as np;print('jax',jax.__version__,'flax',flax.__version__,'optax',optax.__version__,'orbax',o.__version__,'numpy',np.__version__,jax.devices())"; } > $OUT/env.txt 2>&1
timeout 510 python3 -m icl_lab.cli run fig2 --preset gpu 2>&1 | tr '\r' '\n' | grep -v "^ *$" > $OUT/fig2_log.txt
echo "rc ${PIPESTATUS[0]} wall $(( $(date +%s) - T0 )) s" >> $OUT/fig2_log.txt
tar czf $OUT/results.tgz results 2>/dev/null
ls -la results results/units 2>/dev/null; tail -30 $OUT/fig2_log.txt; cat $OUT/env.txt

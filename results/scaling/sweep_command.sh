#!/bin/bash
# the IsoFLOP grid: 6 shapes x 4 budgets on the reference data, one thread, low priority.
# fp32: this CPU (AMD EPYC, AVX2, no AVX512-BF16) multiplies bf16 matrices ~19x slower than fp32.
cd /work/wt/scale
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
exec nice -n 15 /work/main/.venv/bin/python -m tinylm sweep --out runs/sweeps/iso --name isoflop \
  --sizes 1x32,2x64,3x96,4x128,5x160,6x192 --budgets 3e10,6e10,1e11,1.5e11 --head_dim 32 --min_steps 10 --val_windows 64 \
  --train.data /work/ref/runs/default/data --train.device cpu --train.threads 1 --train.dtype fp32 \
  --train.batch_size 2 --train.total_batch_tokens 512 --train.save_every 200

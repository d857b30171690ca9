#!/bin/bash
# IsoFLOP grid with the Muon/WSD recipe: 6 shapes (0.14M-7.3M parameters) x 4 budgets, one thread, resumable
cd /work/main
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
exec .venv/bin/python -m tinylm sweep --out runs/sweeps/iso2 --name isoflop-muon \
  --sizes 1x32,2x64,3x96,4x128,6x192,8x256 --budgets 1e12,3e12,1e13,3e13 --head_dim 32 --min_steps 10 --val_windows 128 \
  --train.data /work/ref/runs/default/data --train.device cpu --train.threads 1 --train.dtype fp32 \
  --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.schedule wsd --train.warmup_steps 50 \
  --train.save_every 100

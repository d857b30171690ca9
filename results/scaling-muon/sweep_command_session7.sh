#!/bin/bash
# Session 7 (AMD EPYC Zen 4): the same IsoFLOP grid grown by the 1e13 and 3e13 rows. The 1e12 and 3e12
# cells trained in sessions 5-6 (Zen 3) are taken over from the committed table (--reuse: identical
# configs; each row keeps the CPU it ran on). Two workers share the sweep: run this script twice.
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
exec ${PYTHON:-.venv/bin/python} -m tinylm sweep --out runs/sweeps/iso2 --name isoflop-muon \
  --sizes 1x32,2x64,3x96,4x128,6x192,8x256 --budgets 1e12,3e12,1e13,3e13 --head_dim 32 --min_steps 10 --val_windows 128 \
  --train.data ${DATA:-/work/ref/runs/default/data} --train.device cpu --train.threads 1 --train.dtype fp32 \
  --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.schedule wsd --train.warmup_steps 50 \
  --train.save_every 100 --reuse results/scaling-muon/sweep.json

#!/bin/bash
# second candidate, in slot B beside the still-running baseline (1 thread), same bookkeeping as the bench
cd /work/main
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p runs/ttq/muon_1800
exec .venv/bin/python -m tinylm pretrain --train.run_dir runs/ttq/muon_1800 --train.data /work/ref/runs/default/data \
  --preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1800 \
  --train.warmup_steps 50 --train.schedule wsd \
  --train.eval_every 250 --train.eval_batches 10 --train.sample_every 0 --train.save_every 250 --train.seed 1337 --train.threads 1

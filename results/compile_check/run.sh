#!/bin/bash
cd /work/main
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
run() { name=$1; shift; rm -rf runs/exp6/$name; .venv/bin/python -m tinylm pretrain --train.run_dir runs/exp6/$name --train.data /work/ref/runs/default/data \
  --preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 200 \
  --train.warmup_steps 50 --train.schedule wsd --train.eval_every 0 --train.sample_every 0 --train.save_every 0 --train.threads 1 "$@" > /work/exp6/$name.log 2>&1; }
run eager &
run compiled --train.compile true &
wait

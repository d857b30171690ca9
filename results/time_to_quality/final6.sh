#!/bin/bash
# Session 6: the table again with the third candidate (untied embeddings, learning rates x2, 1750 steps),
# which ran in slot B of `session6/ttq6.sh` beside a rerun of the baseline. The rerun reproduced the
# session-5 baseline's losses bit for bit and its pace within 2% (2296 s vs 2345 s at step 880,
# session6/baseline_rerun_to_step_880.metrics.jsonl) and was stopped there to free the core for the
# ablation sweep, so the session-5 baseline's time is the reference. All runs in runs/ttq (ignored).
cd /work/main
export PYTHONPATH=$PWD
exec .venv/bin/python bench/time_to_quality.py --data /work/ref/runs/default/data --run_root runs/ttq \
  --candidate muon_1200="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1200 --train.warmup_steps 50 --train.schedule wsd" \
  --candidate muon_1800="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1800 --train.warmup_steps 50 --train.schedule wsd" \
  --candidate untied_lr2="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1750 --train.warmup_steps 50 --train.schedule wsd --model.tie_embeddings false --train.lr 6e-3 --train.muon_lr 0.04" \
  --out bench/results/time_to_quality.json

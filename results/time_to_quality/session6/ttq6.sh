#!/bin/bash
# Session 6: the earlier default (baseline) rerun in the same sitting as two candidates (the machine was
# faster than in session 5, so the session-5 baseline time is not reused). Slot A: baseline; slot B: A then B.
cd /work/main
export PYTHONPATH=$PWD
REC="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1750 --train.warmup_steps 50 --train.schedule wsd --model.tie_embeddings false --train.lr 6e-3 --train.muon_lr 0.04"
exec .venv/bin/python bench/time_to_quality.py --data /work/ref/runs/default/data --run_root runs/ttq6 \
  --candidate untied_lr2="$REC" \
  --candidate untied_lr2_post="$REC --model.norm_position post" \
  --out bench/results/time_to_quality_s6.json

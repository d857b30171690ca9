#!/bin/bash
# time-to-quality: baseline (today's default) vs two Muon recipes, 1 thread each, side by side
cd /work/main
export PYTHONPATH=$PWD
exec .venv/bin/python bench/time_to_quality.py --data /work/ref/runs/default/data --run_root runs/ttq \
  --candidate muon_1200="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1200 --train.warmup_steps 50 --train.schedule wsd" \
  --candidate muon_1600="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1600 --train.warmup_steps 50 --train.schedule wsd" \
  --out bench/results/time_to_quality.json

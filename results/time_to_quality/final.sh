#!/bin/bash
# finalize: the baseline and muon_1200 ran inside the bench (runs/ttq/cmd.sh); muon_1800 was started by hand
# beside the baseline (runs/ttq/cand2.sh) after muon_1200's whole-shard score showed it short of the target
cd /work/main
export PYTHONPATH=$PWD
exec .venv/bin/python bench/time_to_quality.py --data /work/ref/runs/default/data --run_root runs/ttq \
  --candidate muon_1200="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1200 --train.warmup_steps 50 --train.schedule wsd" \
  --candidate muon_1800="--preset 1m --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1800 --train.warmup_steps 50 --train.schedule wsd" \
  --out bench/results/time_to_quality.json

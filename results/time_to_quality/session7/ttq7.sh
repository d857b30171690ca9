#!/bin/bash
# Session 7, on a different machine (AMD EPYC Zen 4 with AVX512-BF16): the baseline is measured again
# here, and every recipe runs with --train.dtype auto, which is bf16 autocast on this CPU (1.58x the
# fp32 tokens/s for the 1m model at one thread, bench run in session 7). Candidates: the current
# default (Muon, 4096-token batches) stretched to ~half the baseline's time, the same at 2048-token
# batches, and two learning-rate/schedule variants of it. Run directories in runs/ttq7 (ignored).
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
M="--preset 1m --train.optimizer muon --train.schedule wsd"
exec ${PYTHON:-.venv/bin/python} bench/time_to_quality.py --data ${DATA:-/work/ref/runs/default/data} --run_root runs/ttq7 \
  --candidate muon2k_3300="$M --train.batch_size 8 --train.total_batch_tokens 2048 --train.max_steps 3300 --train.warmup_steps 100" \
  --candidate muon_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50" \
  --candidate muon_lr15_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50 --train.lr 4.5e-3 --train.muon_lr 0.03" \
  --candidate muon_decay40_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50 --train.decay_frac 0.4" \
  --out bench/results/time_to_quality_session7.json

#!/bin/bash
# Session 7, second round on the Zen 4: smaller shapes, as the fitted scaling law suggests (the IsoFLOP
# minimum at 3e13 FLOPs is 0.73M parameters, 3 layers x 96; the 1m preset has 1.33M). The baseline of
# ttq7.sh and its four candidates are reused (their ttq.json); the longer WSD decay from round one is kept.
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
M="--preset 1m --train.optimizer muon --train.schedule wsd"
D="--train.batch_size 16 --train.total_batch_tokens 4096 --train.warmup_steps 50 --train.decay_frac 0.4"
exec ${PYTHON:-.venv/bin/python} bench/time_to_quality.py --data ${DATA:-/work/ref/runs/default/data} --run_root runs/ttq7 \
  --candidate muon2k_3300="$M --train.batch_size 8 --train.total_batch_tokens 2048 --train.max_steps 3300 --train.warmup_steps 100" \
  --candidate muon_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50" \
  --candidate muon_lr15_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50 --train.lr 4.5e-3 --train.muon_lr 0.03" \
  --candidate muon_decay40_1900="$M --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 1900 --train.warmup_steps 50 --train.decay_frac 0.4" \
  --candidate L3d96_2500="$M $D --model.n_layer 3 --model.n_embd 96 --model.n_head 3 --model.n_kv_head 3 --train.max_steps 2500" \
  --candidate L4d96_2200="$M $D --model.n_layer 4 --model.n_embd 96 --model.n_head 3 --model.n_kv_head 3 --train.max_steps 2200" \
  --out bench/results/time_to_quality_session7.json

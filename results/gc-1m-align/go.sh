#!/bin/bash
# waits for the reference SFT model, then GRPO from it (one thread, resumable)
cd /work/wt/align
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 TINYLM_DATA_DIR=/work/shared/data
SFT=/work/ref/runs/default/sft
until [ -f $SFT/summary.json ]; do sleep 15; done
echo "start $(date) load $(cat /proc/loadavg)"
/work/main/.venv/bin/python -m tinylm grpo --checkpoint $SFT --train.run_dir runs/gc-1m-align/grpo --train.threads 1 \
  --train.max_steps 60 --train.lr 3e-4 --train.warmup_steps 3 --rollout.prompts 4 --rollout.group_size 8 --rollout.minibatches 1 \
  --rollout.max_new_tokens 100 --eval_prompts 0 --dead_estimate_prompts 16 --train.save_every 2 --train.eval_every 0 --resume
echo "end $(date) load $(cat /proc/loadavg)"

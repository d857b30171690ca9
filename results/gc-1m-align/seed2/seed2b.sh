#!/bin/bash
# Take over seed 2 once pretraining has finished: the rest with 2 threads (the other lane is free by then).
cd /work/main
export PYTHONPATH=/work/main TINYLM_DATA_DIR=/work/shared/data
R=runs/seed2
until [ -d $R/checkpoints/step_001200 ] && ! pgrep -f "tinylm pretrain" >/dev/null; do sleep 10; done
pkill -f "exp/seed2.sh"; pkill -f "tinylm sft --checkpoint runs/seed2"; sleep 3
echo "sft start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm sft --checkpoint $R --mixture alpaca:1,instructions:1 --train.run_dir $R/sft --train.max_steps 600 --resume 2>&1 | grep -v "step/s"
echo "ifeval start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm ifeval --checkpoint $R/sft --n 300 --out $R/ifeval-sft.json 2>&1 | grep -v "it/s\|%|" | tail -7
echo "dpo start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm dpo --checkpoint $R/sft --train.run_dir $R/dpo --eval_prompts 0 --train.eval_every 0 --resume 2>&1 | grep -v "step/s\|prompt/s"
.venv/bin/python -m tinylm ifeval --checkpoint $R/dpo --n 300 --out $R/ifeval-dpo.json 2>&1 | grep -v "it/s\|%|" | tail -7
echo "base ifeval start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm ifeval --checkpoint $R --n 300 --out $R/ifeval-base.json 2>&1 | grep -v "it/s\|%|" | tail -7
echo "end $(date) load $(cat /proc/loadavg)"

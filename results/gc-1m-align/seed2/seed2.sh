#!/bin/bash
# Second pretraining seed of the reference recipe, then SFT, then the best alignment recipe (RPO), each scored.
cd /work/main
export PYTHONPATH=/work/main TINYLM_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1
R=runs/seed2
D=/work/ref/runs/default/data
echo "pretrain start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm pretrain --preset 1m --train.data $D --train.run_dir $R --train.max_steps 1200 --train.seed 2 --train.threads 1 --resume 2>&1 | grep -v "step/s"
echo "sft start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm sft --checkpoint $R --mixture alpaca:1,instructions:1 --train.run_dir $R/sft --train.max_steps 600 --train.threads 1 --resume 2>&1 | grep -v "step/s"
echo "ifeval start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm ifeval --checkpoint $R --n 300 --out $R/ifeval-base.json 2>&1 | grep -v "it/s\|%|" | tail -7
.venv/bin/python -m tinylm ifeval --checkpoint $R/sft --n 300 --out $R/ifeval-sft.json 2>&1 | grep -v "it/s\|%|" | tail -7
echo "dpo start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm dpo --checkpoint $R/sft --train.run_dir $R/dpo --eval_prompts 0 --train.eval_every 0 --train.threads 1 --resume 2>&1 | grep -v "step/s\|prompt/s"
.venv/bin/python -m tinylm ifeval --checkpoint $R/dpo --n 300 --out $R/ifeval-dpo.json 2>&1 | grep -v "it/s\|%|" | tail -7
echo "end $(date) load $(cat /proc/loadavg)"

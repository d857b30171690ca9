#!/bin/bash
cd /work/main
export PYTHONPATH=/work/main TINYLM_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1
while pgrep -f "exp/final_eval.sh" >/dev/null; do sleep 5; done
echo "rm start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm rm --checkpoint /work/ref/runs/default/sft --pairs on-policy --also_eval hh-rlhf --heldout_percent 20 \
  --train.run_dir runs/exp/rm --sampling.prompts 1200 --sampling.samples 8 --sampling.max_new_tokens 160 \
  --train.eval_every 0 --train.threads 1 --resume 2>&1 | grep -v "step/s\|prompt/s"
echo "rm end $(date) load $(cat /proc/loadavg)"

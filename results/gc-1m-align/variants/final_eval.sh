#!/bin/bash
cd /work/main
export PYTHONPATH=/work/main TINYLM_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1
while pgrep -f "exp/rftrpo.sh" >/dev/null; do sleep 5; done
echo "start $(date) load $(cat /proc/loadavg)"
.venv/bin/python -m tinylm.eval.alignment --sft /work/ref/runs/default/sft --reuse --out results/gc-1m-align/alignment.json \
  --models rft=runs/exp/rft1 dpo=runs/exp/dpo rpo=runs/exp/rpo10 rft_rpo=runs/exp/rft-rpo 2>&1 | grep -v "it/s\|%|"
echo "end $(date) load $(cat /proc/loadavg)"

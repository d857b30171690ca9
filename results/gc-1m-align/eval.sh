#!/bin/bash
cd /work/wt/align
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 TINYLM_DATA_DIR=/work/shared/data
PY=/work/main/.venv/bin/python
until [ -f runs/gc-1m-align/grpo/summary.json ]; do sleep 10; done
echo "greedy start $(date) load $(cat /proc/loadavg)"
$PY -m tinylm ifeval --checkpoint runs/gc-1m-align/grpo --n 300 --device cpu --out results/gc-1m-align/ifeval-grpo.json
echo "greedy end $(date) load $(cat /proc/loadavg)"
$PY -m tinylm.eval.alignment --sft /work/ref/runs/default/sft --models grpo=runs/gc-1m-align/grpo --out results/gc-1m-align/alignment.json
echo "compare end $(date) load $(cat /proc/loadavg)"

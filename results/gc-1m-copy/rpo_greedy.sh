#!/bin/bash
# RPO on the drilled SFT model (pretraining drills 0.2 + SFT drills) whose pairs also reject each
# prompt's greedy answer (--sampling.greedy true): the greedy answers are the repetitive loops the
# held-out score sees. The 8 samples are rpo-drill0.2's (the same cache); add_greedy.py appends the greedy decode.
set -e
cd "$(dirname "$0")/../.."
export TINYLM_DATA_DIR=${TINYLM_DATA_DIR:-../shared/data}
T=${PYTHON:-.venv/bin/python}
R=runs/copy
S=$R/base-drill0.2/sft-alpaca-1_instructions-1_repeat-1
O=$R/rpog-drill0.2
mkdir -p $O
[ -f $O/onpolicy_samples.json ] || $T results/gc-1m-align/variants/add_greedy.py $R/rpo-drill0.2-sft-alpaca-1_instructions-1_repeat-1/onpolicy_samples.json $S $O/onpolicy_samples.json
$T -m tinylm dpo --checkpoint $S --train.run_dir $O --sampling.greedy true --resume 2>&1 | grep -v "step/s\|prompt/s"
[ -f $R/ifeval-rpog-drill0.2.json ] || $T -m tinylm ifeval --checkpoint $O --n 300 --out $R/ifeval-rpog-drill0.2.json 2>&1 | grep -v "it/s\|%|" | tail -8
[ -f $R/eval-rpog-drill0.2/eval.json ] || $T -m tinylm eval --model $O --tasks copy --out $R/eval-rpog-drill0.2 2>&1 | grep -v "batch/s"

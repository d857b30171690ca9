#!/bin/bash
# Copying drills in pretraining (session 9): the default pretraining recipe with --repeat_frac F (that
# share of the 256-token windows is its first half and then the same tokens again), on the same shards,
# then SFT with the copying drills of run.sh, scored the same way (copy eval, 300 held-out instructions).
set -e
cd "$(dirname "$0")/../.."
export TINYLM_DATA_DIR=${TINYLM_DATA_DIR:-../shared/data}
T=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../fresh/runs/default/data}
F=${F:-0.2}
R=${R:-runs/copy}
B=$R/base-drill$F
MIX=${MIX:-alpaca:1,instructions:1,repeat:1}
S=$B/sft-$(echo $MIX | tr ':,' '-_')
say() { echo "== $* $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
say pretrain repeat_frac $F
$T -m tinylm pretrain --repeat_frac $F --train.data $DATA --train.run_dir $B --resume 2>&1 | grep -v "step/s"
$T -m tinylm bpb --checkpoint $B --text gutenberg-children --out $B/bpb-gutenberg-children.json 2>&1 | tail -1 || true
[ -f $R/eval-base-drill$F/eval.json ] || $T -m tinylm eval --model $B --tasks copy --out $R/eval-base-drill$F 2>&1 | grep -v "batch/s"
say SFT $MIX
$T -m tinylm sft --checkpoint $B --mixture $MIX --train.run_dir $S --resume 2>&1 | grep -v "step/s"
N=drill$F-$(basename $S)
[ -f $R/ifeval-$N.json ] || $T -m tinylm ifeval --checkpoint $S --n 300 --out $R/ifeval-$N.json 2>&1 | grep -v "it/s\|%|" | tail -8
[ -f $R/eval-$N/eval.json ] || $T -m tinylm eval --model $S --tasks copy --out $R/eval-$N 2>&1 | grep -v "batch/s"
if [ -n "$ALIGN" ]; then
  say RPO
  $T -m tinylm dpo --checkpoint $S --train.run_dir $R/rpo-$N --resume 2>&1 | grep -v "step/s\|prompt/s"
  [ -f $R/ifeval-rpo-$N.json ] || $T -m tinylm ifeval --checkpoint $R/rpo-$N --n 300 --out $R/ifeval-rpo-$N.json 2>&1 | grep -v "it/s\|%|" | tail -8
  [ -f $R/eval-rpo-$N/eval.json ] || $T -m tinylm eval --model $R/rpo-$N --tasks copy --out $R/eval-rpo-$N 2>&1 | grep -v "batch/s"
fi
say end

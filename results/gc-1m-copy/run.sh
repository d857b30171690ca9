#!/bin/bash
# Copying drills in SFT (session 9). Hypothesis: the constraint kinds that stay near zero after SFT and
# every alignment method (ends_with, keywords, the title's story word) all need the model to copy from
# its prompt, and the pretrained ~1M model barely copies (the `copy` evaluation task). Does adding
# verbatim-copy drills (the `repeat` task, built from the same training-split stories) to the SFT
# mixture raise in-context copying and those kinds on the 300 held-out instructions?
# BASE: the pretrained run of a default `make run` (fresh clone, this session: results/make_run_fresh_clone_session9.log);
# its default SFT and RPO models are the control. Everything else as the default pipeline does it.
set -e
cd "$(dirname "$0")/../.."
export TINYLM_DATA_DIR=${TINYLM_DATA_DIR:-../shared/data}
T=${PYTHON:-.venv/bin/python}
BASE=${BASE:-../fresh/runs/default}
R=${R:-runs/copy}
mkdir -p $R
say() { echo "== $* $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
copyeval() { [ -f $R/eval-$1/eval.json ] || $T -m tinylm eval --model $2 --tasks copy --out $R/eval-$1 2>&1 | grep -v "batch/s"; }
ifev() { [ -f $R/ifeval-$1.json ] || $T -m tinylm ifeval --checkpoint $2 --n 300 --out $R/ifeval-$1.json 2>&1 | grep -v "it/s\|%|" | tail -8; }

say copy eval of the make-run models
copyeval base $BASE; copyeval sft $BASE/sft; copyeval dpo $BASE/dpo
for MIX in ${MIXES:-"alpaca:1,instructions:1,repeat:1"}; do
  N=sft-$(echo $MIX | tr ':,' '-_')
  say SFT $MIX
  $T -m tinylm sft --checkpoint $BASE --mixture $MIX --train.run_dir $R/$N --resume 2>&1 | grep -v "step/s"
  say ifeval and copy eval of $N
  ifev $N $R/$N; copyeval $N $R/$N
done
if [ -n "$ALIGN" ]; then  # RPO (the default alignment stage) on one SFT variant
  say RPO on $ALIGN
  $T -m tinylm dpo --checkpoint $R/$ALIGN --train.run_dir $R/rpo-$ALIGN --resume 2>&1 | grep -v "step/s\|prompt/s"
  ifev rpo-$ALIGN $R/rpo-$ALIGN; copyeval rpo-$ALIGN $R/rpo-$ALIGN
fi
say end

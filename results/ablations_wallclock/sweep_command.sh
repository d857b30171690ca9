#!/bin/bash
# Ablations of the default recipe at ~1M parameters at EQUAL WALL-CLOCK (session 8, AMD EPYC Zen 4):
# every variant trains for the steps its own measured throughput buys in the baseline's 200 steps x
# 4096 tokens (`--match wallclock`), 3 seeds, fp32, one thread per worker. The arms are those whose
# cost per token differs from the baseline's (learned positions, GELU, LayerNorm, post-norm, untied
# embeddings) and the vocabulary (512-8192; 4096 is the baseline), each size with its own tokenizer
# and shards of the same corpus and held-out documents (/work/exp8/vocab_data.sh in session 8 made
# them; any `tinylm tokenizer` + `tinylm prepare` of gutenberg-children at that size will do).
# Two workers share the sweep: run this script twice.
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
DATA=${DATA:-/work/ref/runs/default/data}
VOCAB=${VOCAB:-/work/ref/vocab}
exec ${PYTHON:-python} -m tinylm sweep --out runs/sweeps/ablate_wc --name ablations-1m-wallclock --seeds 1,2,3 \
  --val_windows 256 --match wallclock \
  --train.data "$DATA" --train.device cpu --train.threads 1 --train.dtype fp32 --preset 1m \
  --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 200 \
  --train.schedule wsd --train.warmup_steps 20 --train.save_every 50 \
  --variant learned_pos:model.pos_emb=learned \
  --variant gelu_mlp:model.mlp=gelu \
  --variant layernorm:model.norm=layernorm \
  --variant post_norm:model.norm_position=post \
  --variant untied:model.tie_embeddings=false \
  --variant vocab_512:model.vocab_size=512,train.data=$VOCAB/v512/data \
  --variant vocab_1024:model.vocab_size=1024,train.data=$VOCAB/v1024/data \
  --variant vocab_2048:model.vocab_size=2048,train.data=$VOCAB/v2048/data \
  --variant vocab_8192:model.vocab_size=8192,train.data=$VOCAB/v8192/data

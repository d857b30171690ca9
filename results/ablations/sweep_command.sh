#!/bin/bash
# Ablations of the default recipe at ~1M parameters, equal tokens (200 steps x 4096 tokens; the batch arm
# takes 100 steps of 8192), 3 seeds. Two workers share the sweep, one thread each: run this script twice.
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
DATA=${DATA:-/work/ref/runs/default/data}
exec ${PYTHON:-python} -m tinylm sweep --out runs/sweeps/ablate --name ablations-1m --seeds 1,2,3 --val_windows 256 \
  --train.data "$DATA" --train.device cpu --train.threads 1 --train.dtype fp32 --preset 1m \
  --train.optimizer muon --train.batch_size 16 --train.total_batch_tokens 4096 --train.max_steps 200 \
  --train.schedule wsd --train.warmup_steps 20 --train.save_every 50 \
  --variant learned_pos:model.pos_emb=learned \
  --variant gelu_mlp:model.mlp=gelu \
  --variant layernorm:model.norm=layernorm \
  --variant post_norm:model.norm_position=post \
  --variant untied:model.tie_embeddings=false \
  --variant adamw:train.optimizer=adamw \
  --variant cosine:train.schedule=cosine \
  --variant lr_x2:train.lr=6e-3,train.muon_lr=0.04 \
  --variant lr_half:train.lr=1.5e-3,train.muon_lr=0.01 \
  --variant decay_to_0:train.min_lr_frac=0 \
  --variant batch_8k:train.batch_size=32,train.total_batch_tokens=8192,train.max_steps=100,train.warmup_steps=10

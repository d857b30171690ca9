#!/bin/bash
# Alignment variants on the reference SFT model (session 4), as run. SFT=runs/default/sft is the
# reference pipeline's SFT run (`tinylm pipeline --max_steps 1200`, results/gc-1m-ref/). Every variant
# samples 8 answers for the same 1,200 training-split prompts (seed 1337, T 1.0, 160 tokens); copying
# rft1's onpolicy_samples.json into a run directory only skips re-sampling (the cache key, and so
# the answers, are the same). Each variant is then scored greedily on the 300 held-out prompts.
set -e
export TINYLM_DATA_DIR=${TINYLM_DATA_DIR:-../shared/data}
SFT=${SFT:-runs/default/sft}
S="--sampling.prompts 1200 --sampling.samples 8 --sampling.max_new_tokens 160 --eval_prompts 0 --train.eval_every 0 --resume"
ev() { tinylm ifeval --checkpoint runs/exp/$1 --n 300 --out runs/exp/ifeval-$1.json; }
seed() { mkdir -p runs/exp/$1 && cp runs/exp/rft1/onpolicy_samples.json runs/exp/$1/; }

tinylm rft --checkpoint $SFT --train.run_dir runs/exp/rft1 $S --min_score 1.0 --train.max_steps 150; ev rft1
seed rft1r; tinylm rft --checkpoint $SFT --train.run_dir runs/exp/rft1r $S --min_score 1.0 --min_gain 0.25 --repair true --train.max_steps 150; ev rft1r
seed dpo;   tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/dpo $S --nll_weight 0 --train.max_steps 150; ev dpo
seed dpo-online; tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/dpo-online $S --nll_weight 0 --ref_logprobs online --train.max_steps 30
# greedy answers added to the samples (what --sampling.greedy true samples; here appended to rft1's cache)
mkdir -p runs/exp/dpog && python results/gc-1m-align/variants/add_greedy.py runs/exp/rft1/onpolicy_samples.json $SFT runs/exp/dpog/onpolicy_samples.json
tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/dpog $S --sampling.greedy true --nll_weight 0 --train.max_steps 150; ev dpog
seed rpo02; tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/rpo02 $S --nll_weight 0.2 --train.max_steps 150; ev rpo02
seed rpo10; tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/rpo10 $S --nll_weight 1.0 --train.max_steps 150; ev rpo10
# RFT, then RPO from it (pairs: the SFT model's samples, off-policy for the RFT model)
seed rft-rpo;   tinylm dpo --checkpoint runs/exp/rft1 --train.run_dir runs/exp/rft-rpo $S --nll_weight 0.2 --train.max_steps 150; ev rft-rpo
seed rft-rpo10; tinylm dpo --checkpoint runs/exp/rft1 --train.run_dir runs/exp/rft-rpo10 $S --nll_weight 1.0 --train.max_steps 150; ev rft-rpo10
# the rpo10 recipe again with seed 2 (new samples, new training order)
tinylm dpo --checkpoint $SFT --train.run_dir runs/exp/rpo10-seed2 $S --nll_weight 1.0 --train.seed 2 --train.max_steps 150; ev rpo10-seed2
python results/gc-1m-align/variants/summarize.py runs/exp results/gc-1m-align/variants/variants.json

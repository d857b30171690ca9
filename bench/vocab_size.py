"""Which vocabulary size for a ~1M-parameter model? Measured, not guessed.

For each vocabulary size: train a byte-level BPE tokenizer on the same corpus sample, measure its
compression (bytes per token) on validation text, tokenize the same training text, train the
default model body (preset 1m: 4 layers, d=128) for the same number of steps and tokens, and
report validation bits per byte. Bits per byte is tokenizer-independent, so the sizes compare
directly. The embedding grows with the vocabulary (V x 128 parameters), so bigger vocabularies
also mean a bigger model and more FLOPs per token; both are reported.

Run: python bench/vocab_size.py [--steps 250] [--sizes 1024,2048,4096,8192]
Writes bench/results/vocab_size.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tinylm.config import PrepareConfig, PretrainConfig, TokenizerConfig, TrainConfig, model_preset
from tinylm.model import describe
from tinylm.stages import prepare, pretrain, tok_train
from common import RESULTS, write_result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="gutenberg-children")
    ap.add_argument("--sizes", default="1024,2048,4096,8192")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--train_bytes", type=int, default=40_000_000)
    ap.add_argument("--out", default=str(RESULTS / "vocab_size.json"))
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="tinylm-vocab-") as tmp:
        for v in map(int, args.sizes.split(",")):
            d = Path(tmp) / f"v{v}"
            tok_meta = tok_train.run(TokenizerConfig(corpus=args.corpus, vocab_size=v, out=str(d / "tokenizer.json")))
            prepare.run(PrepareConfig(corpus=args.corpus, tokenizer=str(d / "tokenizer.json"), out=str(d / "data"),
                                      max_train_bytes=args.train_bytes))
            mcfg = model_preset("1m", vocab_size=v)
            tcfg = TrainConfig(run_dir=str(d / "run"), data=str(d / "data"), max_steps=args.steps,
                               warmup_steps=max(args.steps // 10, 1), eval_every=args.steps, eval_batches=40,
                               sample_every=0, save_every=0, log_every=args.steps)
            t0 = time.time()
            summary = pretrain.run(PretrainConfig(model=mcfg, train=tcfg))
            info = describe(mcfg)
            rows.append({
                "vocab_size": v,
                "bytes_per_token_valid": tok_meta["valid"]["bytes_per_token"],
                "params": info["params"], "params_non_embedding": info["params_non_embedding"],
                "flops_per_token": info["flops_per_token"],
                "flops_per_byte": info["flops_per_token"] / tok_meta["valid"]["bytes_per_token"],
                "train_tokens": summary["tokens"],
                "train_bytes_seen": round(summary["tokens"] * tok_meta["valid"]["bytes_per_token"]),
                "val_bpb": summary["val_bpb"],
                "seconds": round(time.time() - t0, 1),
            })
            print(json.dumps(rows[-1]), flush=True)

    write_result("vocab_size", args.out, {
        "corpus": args.corpus, "steps": args.steps, "tokens_per_step": TrainConfig.total_batch_tokens,
        "model_body": "preset 1m (4 layers, d=128, 4 heads)", "rows": rows,
    })
    print(f"\n{'vocab':>6} {'bytes/tok':>9} {'params':>10} {'MFLOP/byte':>10} {'val bpb':>8} {'seconds':>8}")
    for r in rows:
        print(f"{r['vocab_size']:>6} {r['bytes_per_token_valid']:>9.3f} {r['params']:>10,} "
              f"{r['flops_per_byte'] / 1e6:>10.2f} {r['val_bpb']:>8.4f} {r['seconds']:>8.1f}")


if __name__ == "__main__":
    main()

"""Stage 2: tokenize a corpus into token shards (train-NNN.bin, val.bin) with the trained tokenizer.

Run: tinylm prepare --corpus gutenberg-children --tokenizer runs/default/tokenizer.json --out runs/default/data
"""

from __future__ import annotations

from tinylm.config import PrepareConfig, to_dict
from tinylm.data.shards import prepare
from tinylm.data.sources import resolve
from tinylm.tokenizer import Tokenizer


def run(cfg: PrepareConfig) -> dict:
    tok = Tokenizer.load(cfg.tokenizer)
    source = resolve(cfg.corpus)
    meta = prepare(source, tok, cfg.out, shard_tokens=cfg.shard_tokens, max_train_bytes=cfg.max_train_bytes,
                   batch_docs=cfg.batch_docs, config=to_dict(cfg))
    tr = meta["train"]
    print(f"prepare: {tr['documents']:,} documents, {tr['bytes']:,} bytes -> {tr['tokens']:,} train tokens "
          f"({tr['bytes_per_token']:.3f} bytes/token) in {len(tr['files'])} shard(s), {tr['seconds']}s -> {cfg.out}")
    if "val" in meta:
        print(f"prepare: validation {meta['val']['tokens']:,} tokens from {meta['val']['documents']} documents")
    return meta

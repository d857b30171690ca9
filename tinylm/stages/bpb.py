"""Bits per byte of a checkpoint on a text file or a named corpus' validation split.

Run: tinylm bpb --checkpoint runs/default --text tinystories
     tinylm bpb --checkpoint runs/default --text path/to/file.txt --context_len 1   # lm-eval's disjoint windows
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tinylm.bpb import score_documents
from tinylm.config import BpbConfig, to_dict
from tinylm.data.sources import CORPORA, DataError, ReadStats, iter_file_documents, resolve
from tinylm.runtime import resolve_device
from tinylm.train.checkpoint import find_checkpoint, load_model
from tinylm.util import atomic_write_text


def _documents(cfg: BpbConfig, stats: ReadStats):
    docs = resolve(cfg.text).documents("valid", stats) if cfg.text in CORPORA else iter_file_documents(cfg.text, stats)
    n = 0
    for d in docs:
        if cfg.max_bytes and n >= cfg.max_bytes:
            return
        if cfg.max_bytes:
            d = d.encode("utf-8")[: cfg.max_bytes - n].decode("utf-8", errors="ignore")
        n += len(d.encode("utf-8"))
        yield d


def run(cfg: BpbConfig) -> dict:
    device = resolve_device(cfg.device)
    model, tok, meta = load_model(cfg.checkpoint, device)
    stats = ReadStats()
    t0 = time.time()
    res = score_documents(model, tok, _documents(cfg, stats), cfg.context_len, cfg.batch_size)
    if res.bytes == 0:  # a metric over nothing is not a perfect score
        raise DataError(f"{cfg.text}: no text to score (0 documents, 0 bytes)")
    out = {"checkpoint": str(find_checkpoint(cfg.checkpoint)), "step": meta.get("step"), "text": cfg.text,
           "files": stats.files, "replaced_utf8": stats.replaced, **res.to_dict(),
           "seconds": round(time.time() - t0, 1), "config": to_dict(cfg)}
    print(f"bpb {cfg.text}: {out['bits_per_byte']:.4f} bits/byte, byte ppl {out['byte_perplexity']:.3f}, "
          f"token ppl {out['token_perplexity']:.2f} over {res.bytes:,} bytes / {res.tokens:,} tokens "
          f"(context_len {res.context_len}, {out['seconds']}s)")
    if stats.replaced:
        print(f"warning: {stats.replaced} invalid UTF-8 sequence(s) replaced: {stats.replaced_by_file}")
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg.out, json.dumps(out, indent=2) + "\n")
    return out

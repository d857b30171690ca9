"""Stage 1: train a byte-level BPE tokenizer on a sample of a corpus' training split.

Run: tinylm tokenizer --corpus gutenberg-children --vocab_size 4096 --out runs/default/tokenizer.json
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from tinylm.config import TokenizerConfig, to_dict
from tinylm.data.sources import ReadStats, resolve
from tinylm.tokenizer import bytes_per_token, save_meta, train_tokenizer


def _take_bytes(docs, limit: int, on_doc=None):
    n = 0
    for d in docs:
        yield d
        n += len(d.encode("utf-8"))
        if on_doc is not None:
            on_doc()
        if limit and n >= limit:
            return


def run(cfg: TokenizerConfig) -> dict:
    source = resolve(cfg.corpus)
    stats = ReadStats()
    t0 = time.time()
    # the bar counts the sample as BPE reads and counts it; the merges that follow take a few seconds more
    total = source.total_bytes("train")
    total = min(total, cfg.sample_bytes) if total and cfg.sample_bytes else (total or cfg.sample_bytes or None)
    with tqdm(desc="tokenizer: read sample", total=total, unit="B", unit_scale=True, dynamic_ncols=True) as bar:
        docs = _take_bytes(source.documents("train", stats), cfg.sample_bytes, lambda: bar.update(stats.raw_bytes - bar.n))
        tok = train_tokenizer(docs, cfg.vocab_size, cfg.out)
    seconds = time.time() - t0
    meta = {"config": to_dict(cfg), "vocab_size": tok.vocab_size, "sha256": tok.sha256,
            "trained_on": {"documents": stats.documents, "bytes": stats.bytes, "files": stats.files,
                           "replaced_utf8": stats.replaced},
            "seconds": round(seconds, 1)}
    if source.valid_files or source.hub:
        # compression on (up to 2 MB of) held-out text
        meta["valid"] = bytes_per_token(tok, _take_bytes(source.documents("valid"), 2_000_000))
    save_meta(Path(cfg.out).with_suffix(".meta.json"), meta)
    if stats.replaced:
        print(f"warning: {stats.replaced} invalid UTF-8 byte sequence(s) replaced with U+FFFD while training the "
              f"tokenizer: {stats.replaced_by_file}")
    bpt = meta.get("valid", {}).get("bytes_per_token")
    print(f"tokenizer: {tok.vocab_size} tokens trained on {stats.bytes:,} bytes in {seconds:.1f}s -> {cfg.out}"
          + (f"; {bpt:.3f} bytes/token on validation text" if bpt else ""))
    return meta

"""Token shards: flat token files with a 64-byte header, written once and memory-mapped.

Layout (little-endian):
    0   8s  magic b"TINYLMTK"
    8   u32 format version (1)
    12  u32 bytes per token: 2 (uint16) or 4 (uint32)
    16  u64 number of tokens
    24  u32 vocabulary size of the tokenizer that wrote it
    28  36 bytes reserved (zero)
    64  tokens...

uint16 is used whenever the vocabulary fits (half the disk and memory bandwidth), uint32 otherwise.
Files are written to a temporary name, fsynced and renamed, so a crash never leaves a shard that
looks complete. Reading checks the magic, version, dtype and that the file holds exactly the
number of tokens the header promises (a truncated copy is caught, not trained on).

`prepare()` streams a corpus through the tokenizer (multi-threaded `encode_batch`), writes train
shards of at most `shard_tokens` tokens plus one `val.bin`, copies the tokenizer beside them and
records counts in `prepare.json`. Run: tinylm prepare --corpus gutenberg-children
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinylm.data.sources import DataError, ReadStats, Source
from tinylm.util import atomic_write_text, fsync_dir

MAGIC = b"TINYLMTK"
VERSION = 1
HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIQI")


def dtype_for_vocab(vocab_size: int):
    if vocab_size <= 2**16:
        return np.uint16
    if vocab_size <= 2**32:
        return np.uint32
    raise ValueError(f"vocab_size={vocab_size} does not fit in uint32")


class ShardWriter:
    """Append token arrays to a shard; `close()` writes the header and renames into place."""

    def __init__(self, path, vocab_size: int, dtype=None):
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = np.dtype(dtype or dtype_for_vocab(vocab_size))
        if vocab_size > np.iinfo(self.dtype).max + 1:
            raise ValueError(f"{self.path}: vocabulary of {vocab_size} does not fit the shard dtype {self.dtype}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.f = os.fdopen(fd, "wb")
        self.f.write(b"\0" * HEADER_BYTES)
        self.count = 0

    def write(self, tokens) -> None:
        arr = np.asarray(tokens)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"{self.path}: token id out of range [0, {self.vocab_size})")
        self.f.write(arr.astype(self.dtype, copy=False).tobytes())
        self.count += arr.size

    def close(self) -> Path:
        header = _HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count, self.vocab_size)
        self.f.seek(0)
        self.f.write(header.ljust(HEADER_BYTES, b"\0"))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        self.f.close()
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path, tokens, vocab_size: int, dtype=None) -> Path:
    with ShardWriter(path, vocab_size, dtype) as w:
        w.write(tokens)
    return w.path


def read_header(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: shard not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise DataError(f"{path}: truncated header ({len(raw)} of {HEADER_BYTES} bytes)")
    magic, version, itemsize, count, vocab = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise DataError(f"{path}: not a tinylm token shard (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise DataError(f"{path}: shard format version {version}, this tinylm reads version {VERSION}")
    if itemsize not in (2, 4):
        raise DataError(f"{path}: unsupported token size of {itemsize} bytes")
    expected = HEADER_BYTES + count * itemsize
    if size != expected:
        what = "truncated" if size < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: header promises {count} tokens ({expected} bytes), file has {size} bytes")
    return {"version": version, "dtype": np.uint16 if itemsize == 2 else np.uint32, "count": count, "vocab_size": vocab}


def open_shard(path) -> np.memmap:
    """Memory-map a shard's tokens (read-only) after validating its header."""
    h = read_header(path)
    if h["count"] == 0:
        return np.zeros(0, dtype=h["dtype"])
    return np.memmap(path, dtype=h["dtype"], mode="r", offset=HEADER_BYTES, shape=(h["count"],))


# ---------------------------------------------------------------------------------------------
# prepare: corpus -> shards


def _batched(it, n):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _tokenize_split(source: Source, split: str, tok, out_dir: Path, stem: str, shard_tokens: int,
                    max_bytes: int, batch_docs: int) -> dict:
    stats = ReadStats()
    writer, paths, n_tokens, index = None, [], 0, 0
    total = source.total_bytes(split)  # decompressed bytes, known up front for local files: the bar's ETA
    if total and max_bytes:
        total = min(total, max_bytes)
    bar = tqdm(desc=f"tokenize {split}", total=total, unit="B", unit_scale=True, dynamic_ncols=True)
    t0 = time.time()
    try:
        docs = source.documents(split, stats)
        for batch in _batched(docs, batch_docs):
            for ids in tok.encode_batch(batch):
                if writer is None:
                    name = f"{stem}.bin" if shard_tokens <= 0 else f"{stem}-{index:03d}.bin"
                    writer = ShardWriter(out_dir / name, tok.vocab_size)
                # <|endoftext|> opens every document: it separates documents and gives sampling a start
                writer.write(np.asarray([tok.eot_id] + ids, dtype=np.int64))
                n_tokens += len(ids) + 1
                if shard_tokens > 0 and writer.count >= shard_tokens:
                    paths.append(writer.close())
                    writer, index = None, index + 1
            bar.update(stats.raw_bytes - bar.n)
            if max_bytes and stats.bytes >= max_bytes:
                break
        if writer is not None:
            paths.append(writer.close())
            writer = None
        docs.close()  # stopping early (byte budget): close the readers now so their counts are final
    finally:
        if writer is not None:
            writer.abort()
        bar.close()
    if stats.replaced:
        print(f"warning: {stats.replaced} invalid UTF-8 byte sequence(s) replaced with U+FFFD: {stats.replaced_by_file}")
    seconds = time.time() - t0
    return {
        "files": [p.name for p in paths],
        "source_files": stats.files,
        "documents": stats.documents,
        "bytes": stats.bytes,
        "tokens": n_tokens,
        "bytes_per_token": stats.bytes / max(n_tokens - stats.documents, 1),
        "replaced_utf8": stats.replaced,
        "seconds": round(seconds, 1),
    }


def prepare(source: Source, tok, out_dir, shard_tokens: int = 100_000_000, max_train_bytes: int = 0,
            batch_docs: int = 64, config: dict | None = None) -> dict:
    """Tokenize a source's train and validation splits into shards under `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("train-*.bin")) + list(out_dir.glob("val.bin")):
        old.unlink()  # stale shards from an earlier prepare would silently mix in
    meta = {"source": source.name, "tokenizer_sha256": tok.sha256, "vocab_size": tok.vocab_size,
            "dtype": np.dtype(dtype_for_vocab(tok.vocab_size)).name, "config": config or {}}
    meta["train"] = _tokenize_split(source, "train", tok, out_dir, "train", shard_tokens, max_train_bytes, batch_docs)
    if source.valid_files or source.hub:
        meta["val"] = _tokenize_split(source, "valid", tok, out_dir, "val", 0, 0, batch_docs)
    shutil.copyfile(tok.path, out_dir / "tokenizer.json")
    atomic_write_text(out_dir / "prepare.json", json.dumps(meta, indent=2) + "\n")
    return meta


def load_prepared(data_dir) -> tuple[list[Path], Path | None, dict]:
    """Train shard paths, val shard path (or None) and prepare.json of a prepared directory."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "prepare.json"
    if not meta_path.exists():
        raise DataError(f"{data_dir}: no prepare.json; run `tinylm prepare` first")
    meta = json.loads(meta_path.read_text())
    train = [data_dir / f for f in meta["train"]["files"]]
    if not train:
        raise DataError(f"{data_dir}: no training shards")
    val = data_dir / "val.bin" if "val" in meta else None
    return train, val, meta

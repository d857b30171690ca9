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
from tinylm.util import atomic_write_text, default_mode, fsync_dir

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
        os.fchmod(fd, default_mode())
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


def open_shard(path, vocab_size: int | None = None) -> np.memmap:
    """Memory-map a shard's tokens (read-only) after validating its header. With `vocab_size` (the
    tokenizer's), the header's vocabulary must equal it and every token id must be below it: one
    vectorised pass over the file (about 0.1 s per 100M tokens), so a corrupt or foreign shard is a
    clear error at start-up, not an IndexError in the embedding at some later step."""
    h = read_header(path)
    if vocab_size is not None and h["vocab_size"] != vocab_size:
        which = "smaller" if vocab_size < h["vocab_size"] else "larger"
        raise DataError(f"{path}: written for a vocabulary of {h['vocab_size']} tokens, but the tokenizer has "
                        f"{vocab_size} ({which}): the shards and the tokenizer do not belong together")
    if h["count"] == 0:
        return np.zeros(0, dtype=h["dtype"])
    arr = np.memmap(path, dtype=h["dtype"], mode="r", offset=HEADER_BYTES, shape=(h["count"],))
    if vocab_size is not None:
        top = int(arr.max())
        if top >= vocab_size:
            pos = int(np.argmax(arr >= vocab_size))
            raise DataError(f"{path}: token id {top} (first bad id at token {pos:,}) is outside the vocabulary of "
                            f"{vocab_size}: the shard is corrupt")
    return arr


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


def _within_budget(batch: list[str], left: int) -> tuple[list[str], bool]:
    """The documents of `batch` that fit in `left` bytes, the last one cut at a character boundary
    (a document can be a whole book, far larger than a small budget); and whether the budget is spent."""
    out = []
    for d in batch:
        b = d.encode("utf-8")
        if len(b) >= left:
            cut = b[:left].decode("utf-8", errors="ignore")
            return out + ([cut] if cut.strip() else []), True
        out.append(d)
        left -= len(b)
    return out, False


def _tokenize_split(source: Source, split: str, tok, out_dir: Path, stem: str, shard_tokens: int,
                    max_bytes: int, batch_docs: int) -> dict:
    stats = ReadStats()
    writer, paths, n_tokens, index = None, [], 0, 0
    n_docs = n_bytes = 0  # what was tokenized (with a byte budget, less than what was read)
    total = source.total_bytes(split)  # decompressed bytes, known up front for local files: the bar's ETA
    if total and max_bytes:
        total = min(total, max_bytes)
    bar = tqdm(desc=f"tokenize {split}", total=total, unit="B", unit_scale=True, dynamic_ncols=True)
    t0 = time.time()
    try:
        docs = source.documents(split, stats)
        for batch in _batched(docs, batch_docs):
            batch, spent = _within_budget(batch, max_bytes - n_bytes) if max_bytes else (batch, False)
            for text, ids in zip(batch, tok.encode_batch(batch)):
                if writer is None:
                    name = f"{stem}.bin" if shard_tokens <= 0 else f"{stem}-{index:03d}.bin"
                    writer = ShardWriter(out_dir / name, tok.vocab_size)
                # <|endoftext|> opens every document: it separates documents and gives sampling a start
                writer.write(np.asarray([tok.eot_id] + ids, dtype=np.int64))
                n_tokens += len(ids) + 1
                n_docs += 1
                n_bytes += len(text.encode("utf-8"))
                if shard_tokens > 0 and writer.count >= shard_tokens:
                    paths.append(writer.close())
                    writer, index = None, index + 1
            bar.update(min(stats.raw_bytes, total or stats.raw_bytes) - bar.n)
            if spent:
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
        "documents": n_docs,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / max(n_tokens - n_docs, 1),
        "replaced_utf8": stats.replaced,
        "seconds": round(seconds, 1),
    }


OWN_FILES = ("prepare.json", "tokenizer.json")  # with train-*.bin, val.bin: what prepare writes


def prepare(source: Source, tok, out_dir, shard_tokens: int = 100_000_000, max_train_bytes: int = 0,
            batch_docs: int = 64, config: dict | None = None) -> dict:
    """Tokenize a source's train and validation splits into shards under `out_dir`.

    The new set is written into a hidden sibling directory and swapped in only when it is complete,
    so a failure (a damaged corpus file, a full disk, a kill) leaves a previous data directory
    exactly as it was; stale shards of an earlier run never mix in."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.new-"))
    os.chmod(stage, default_mode(directory=True))
    try:
        meta = {"source": source.name, "tokenizer_sha256": tok.sha256, "vocab_size": tok.vocab_size,
                "dtype": np.dtype(dtype_for_vocab(tok.vocab_size)).name, "config": config or {}}
        meta["train"] = _tokenize_split(source, "train", tok, stage, "train", shard_tokens, max_train_bytes, batch_docs)
        if source.valid_files or source.hub:
            meta["val"] = _tokenize_split(source, "valid", tok, stage, "val", 0, 0, batch_docs)
        shutil.copyfile(tok.path, stage / "tokenizer.json")
        atomic_write_text(stage / "prepare.json", json.dumps(meta, indent=2) + "\n")
        _swap_in(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return meta


def _swap_in(stage: Path, out_dir: Path) -> None:
    """Replace out_dir by the complete `stage` directory; files prepare does not own move along."""
    if out_dir.exists():
        for p in out_dir.iterdir():
            if p.name not in OWN_FILES and not (p.suffix == ".bin" and p.name.startswith(("train", "val"))):
                os.rename(p, stage / p.name)
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        os.rename(out_dir, old / out_dir.name)
        os.rename(stage, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(stage, out_dir)
    fsync_dir(out_dir.parent)


def load_prepared(data_dir) -> tuple[list[Path], Path | None, dict]:
    """Train shard paths, val shard path (or None) and prepare.json of a prepared directory."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "prepare.json"
    if not meta_path.exists():
        raise DataError(f"{data_dir}: no prepare.json; run `tinylm prepare` first")
    try:
        meta = json.loads(meta_path.read_text())
        train = [data_dir / f for f in meta["train"]["files"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise DataError(f"{meta_path}: damaged ({what}); run `tinylm prepare` again") from e
    if not train:
        raise DataError(f"{data_dir}: no training shards")
    val = data_dir / "val.bin" if "val" in meta else None
    return train, val, meta


def check_tokenizer(data_dir, meta: dict, tok) -> None:
    """The tokenizer loaded for a data directory must be the one that wrote its shards: prepare.json
    records its hash and vocabulary (and each shard header its vocabulary, checked on opening)."""
    meta_path = Path(data_dir) / "prepare.json"
    want = meta.get("tokenizer_sha256")
    if want and tok.sha256 != want:
        raise DataError(f"{tok.path} (sha256 {tok.sha256[:12]}, {tok.vocab_size} tokens) is not the tokenizer that "
                        f"wrote these shards: {meta_path} records sha256 {want[:12]} ({meta.get('vocab_size')} tokens). "
                        "Put the original tokenizer back, or run `tinylm prepare` again with this one")
    if meta.get("vocab_size") not in (None, tok.vocab_size):
        raise DataError(f"{tok.path} has {tok.vocab_size} tokens, but {meta_path} says the shards were written "
                        f"for {meta['vocab_size']}")

"""Where text comes from: named corpora, local files, and Hugging Face Hub datasets.

A *source* string is one of
- a named corpus (`tinystories`, `gutenberg-children`, `gutenberg-general`; see CORPORA),
- a path to a file, a directory (every .txt/.txt.xz/.txt.gz/.jsonl inside) or a glob,
- `hf:owner/name` or `hf:owner/name:split` for a Hub dataset (needs `datasets` and a network).

Text files hold documents separated by lines that read `<|endoftext|>` (as TinyStories ships them);
JSONL files hold one document per line in a `text` field. Everything is streamed: a corpus is
never held in memory, only one document at a time. Bytes that are not valid UTF-8 are replaced
with U+FFFD and counted in `ReadStats`, so a damaged file is reported rather than silently eaten.

The data directory is `$TINYLM_DATA_DIR`, else `../shared/data` beside the repository (or the
working directory) when it exists, else named corpora fall back to the Hub.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import json
import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DATA_ENV = "TINYLM_DATA_DIR"
DOC_SEPARATOR = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".txt.xz", ".txt.gz", ".jsonl", ".jsonl.xz", ".jsonl.gz")


@dataclass(frozen=True)
class Corpus:
    name: str
    train: tuple[str, ...]  # paths relative to the data directory
    valid: tuple[str, ...]
    hub: str = ""  # "owner/name" on the Hugging Face Hub, "" when there is none
    hub_splits: tuple[str, str] = ("train", "validation")
    about: str = ""


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus(
            "tinystories",
            train=("tinystories/train-00.txt.xz",),
            valid=("tinystories/valid-v1-head.txt",),
            hub="roneneldan/TinyStories",
            about="TinyStories (Eldan & Li 2023). Offline: the 2 MB train head and the official validation head.",
        ),
        Corpus(
            "gutenberg-children",
            train=tuple(f"english/gutenberg-children/train-0{i}.txt.xz" for i in range(3)),
            valid=("english/gutenberg-children/valid.txt.xz",),
            about="Children-leaning Project Gutenberg books, 185 MB (see shared/data/SOURCES.md).",
        ),
        Corpus(
            "gutenberg-general",
            train=tuple(f"english/gutenberg-general/train-0{i}.txt.xz" for i in range(3)),
            valid=("english/gutenberg-general/valid.txt.xz",),
            about="Readable general Project Gutenberg books, 188 MB (see shared/data/SOURCES.md).",
        ),
    ]
}


class DataError(ValueError):
    """Bad or missing input data; the message names the file and the problem."""


def data_dir() -> Path | None:
    """The local data directory, or None when there is none (then named corpora use the Hub)."""
    env = os.environ.get(DATA_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(f"${DATA_ENV}={env} is not a directory")
        return p
    repo_root = Path(__file__).resolve().parents[2]
    for p in (repo_root / ".." / "shared" / "data", Path.cwd() / ".." / "shared" / "data"):
        if p.is_dir():
            return p.resolve()
    return None


@dataclass
class ReadStats:
    """What reading a source saw: counts of documents, bytes and replaced (non-UTF-8) bytes."""

    documents: int = 0
    bytes: int = 0
    raw_bytes: int = 0  # decompressed file bytes read so far, separators included (progress against total_bytes)
    replaced: int = 0  # invalid UTF-8 byte sequences replaced by U+FFFD
    files: list[str] = field(default_factory=list)
    replaced_by_file: dict[str, int] = field(default_factory=dict)


class _ReplaceCounter:
    """A codecs error handler that replaces invalid bytes with U+FFFD and counts them."""

    def __init__(self):
        self.count = 0

    def __call__(self, err: UnicodeDecodeError):
        self.count += 1
        return "\ufffd", err.end


def _open_binary(path: Path):
    name = path.name
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _xz_uncompressed_size(f, end: int) -> int:
    """Sum of the uncompressed sizes in the indexes of an .xz file's streams, read backwards from
    each stream footer (xz file format 1.0.4, sections 2.1.2 and 4), without decompressing."""
    def varint(buf, i):
        value = shift = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, i

    total, pos = 0, end
    while pos > 0:
        f.seek(pos - 4)
        if f.read(4) == b"\0\0\0\0":  # stream padding
            pos -= 4
            continue
        f.seek(pos - 12)
        footer = f.read(12)
        if footer[10:] != b"YZ":
            raise ValueError("no xz stream footer")
        index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
        f.seek(pos - 12 - index_size)
        index = f.read(index_size)
        n, i = varint(index, 1)
        blocks = 0
        for _ in range(n):
            unpadded, i = varint(index, i)
            size, i = varint(index, i)
            total += size
            blocks += (unpadded + 3) // 4 * 4
        pos -= 12 + blocks + index_size + 12
    if pos != 0:
        raise ValueError("xz streams do not add up to the file")
    return total


def uncompressed_size(path) -> int | None:
    """Bytes a reader of `path` will see, known before reading it: the file size, the .xz
    indexes' sum, or the .gz trailer's ISIZE (the size modulo 2^32 of its last member); None if unknown."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.name.endswith(".xz"):
            with open(path, "rb") as f:
                return _xz_uncompressed_size(f, size)
        if path.name.endswith(".gz"):
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                return int.from_bytes(f.read(4), "little")
        return size
    except (OSError, ValueError, IndexError):
        return None


def _decoded_lines(path: Path, stats: ReadStats) -> Iterator[str]:
    counter = _ReplaceCounter()
    handler = f"tinylm_count_{id(counter)}"
    codecs.register_error(handler, counter)
    decoder = codecs.getincrementaldecoder("utf-8")(errors=handler)
    try:
        with _open_binary(path) as f:
            for raw in f:  # binary line iteration: memory is bounded by the longest line
                stats.raw_bytes += len(raw)
                # CRLF -> LF: Windows line endings would otherwise leave a stray \r in every document
                yield decoder.decode(raw).replace("\r\n", "\n")
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{path}: cannot decompress ({e})") from e
    finally:  # also when the reader stops early (a byte budget): what was seen is still reported
        if counter.count:
            stats.replaced += counter.count
            stats.replaced_by_file[str(path)] = counter.count


def _iter_text_file(path: Path, stats: ReadStats) -> Iterator[str]:
    buf: list[str] = []
    for line in _decoded_lines(path, stats):
        if line.strip() == DOC_SEPARATOR:
            doc = "".join(buf).strip("\n")
            buf = []
            if doc.strip():
                yield doc
        else:
            buf.append(line)
    doc = "".join(buf).strip("\n")
    if doc.strip():
        yield doc


def _iter_jsonl_file(path: Path, stats: ReadStats, text_field: str) -> Iterator[str]:
    for lineno, line in enumerate(_decoded_lines(path, stats), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict) or text_field not in row:
            raise DataError(f"{path}:{lineno}: no {text_field!r} field")
        text = row[text_field]
        if not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: field {text_field!r} is not a string")
        if text.strip():
            yield text


def iter_file_documents(path, stats: ReadStats | None = None, text_field: str = "text") -> Iterator[str]:
    """Documents of one local file (.txt[.xz|.gz] or .jsonl[.xz|.gz])."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    stats.files.append(str(path))
    it = _iter_jsonl_file(path, stats, text_field) if ".jsonl" in path.name else _iter_text_file(path, stats)
    for doc in it:
        stats.documents += 1
        stats.bytes += len(doc.encode("utf-8"))
        yield doc


def _iter_hub(name: str, split: str, stats: ReadStats, text_field: str) -> Iterator[str]:
    try:
        import datasets  # optional extra: pip install 'tinylm[hf]'
    except ImportError as e:
        raise DataError(f"hf:{name} needs the `datasets` package (pip install 'tinylm[hf]')") from e
    ds = datasets.load_dataset(name, split=split, streaming=True)
    stats.files.append(f"hf:{name}:{split}")
    for row in ds:
        text = row[text_field]
        if text and text.strip():
            stats.documents += 1
            stats.bytes += len(text.encode("utf-8"))
            yield text


@dataclass
class Source:
    """A resolved source: local files for train/valid, or a Hub dataset."""

    name: str
    train_files: list[Path]
    valid_files: list[Path]
    hub: str = ""
    hub_splits: tuple[str, str] = ("train", "validation")
    text_field: str = "text"

    def total_bytes(self, split: str = "train") -> int | None:
        """Decompressed bytes of a split's local files (what ReadStats.raw_bytes counts to), known
        up front so progress bars have a total; None for a Hub dataset or an unreadable size."""
        files = self.train_files if split == "train" else self.valid_files
        sizes = [uncompressed_size(f) for f in files]
        return sum(sizes) if files and None not in sizes else None

    def documents(self, split: str = "train", stats: ReadStats | None = None) -> Iterator[str]:
        stats = stats if stats is not None else ReadStats()
        files = self.train_files if split == "train" else self.valid_files
        if self.hub and not files:
            yield from _iter_hub(self.hub, self.hub_splits[0 if split == "train" else 1], stats, self.text_field)
            return
        if not files:
            raise DataError(f"{self.name}: no {split} files")
        n_before = stats.documents
        for f in files:
            yield from iter_file_documents(f, stats, self.text_field)
        if stats.documents == n_before:
            raise DataError(f"{self.name}: the {split} split is empty ({', '.join(map(str, files))})")


def _expand(path_or_glob: str) -> list[Path]:
    p = Path(path_or_glob).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(TEXT_SUFFIXES))
        if not files:
            raise DataError(f"{p}: directory holds no {'/'.join(TEXT_SUFFIXES)} files")
        return files
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(str(p)))
    if not matches:
        import difflib

        close = difflib.get_close_matches(path_or_glob, list(CORPORA), n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise DataError(f"{path_or_glob}: no such file, directory or glob match, and not a named corpus ({hint}"
                        f"named corpora: {', '.join(CORPORA)}; or hf:owner/name)")
    return matches


def resolve(source: str, valid: str | None = None) -> Source:
    """Turn a source string into train/valid files (or a Hub dataset).

    For a path source, `valid` names the held-out text; without it the source has no validation
    split (pretraining then holds out nothing and skips validation bits-per-byte)."""
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        return Source(source, [], [], hub=name, hub_splits=(split or "train", "validation"))
    if source in CORPORA:
        c = CORPORA[source]
        root = data_dir()
        if root is None:
            if c.hub:
                return Source(source, [], [], hub=c.hub, hub_splits=c.hub_splits)
            raise DataError(
                f"corpus {source!r} needs a local data directory (set ${DATA_ENV} or place ../shared/data "
                "beside the repository); it has no Hub mirror"
            )
        train = [root / f for f in c.train]
        vfiles = [root / f for f in c.valid]
        missing = [str(f) for f in train + vfiles if not f.exists()]
        if missing:
            raise DataError(f"corpus {source!r}: missing file(s) {', '.join(missing)} under data dir {root}")
        return Source(source, train, vfiles)
    return Source(source, _expand(source), _expand(valid) if valid else [])

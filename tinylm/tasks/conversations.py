"""Instruction datasets as conversations: Alpaca, and any JSONL file of chat conversations.

Alpaca (Taori et al. 2023): 52K `instruction` / `input` / `output` records, read from
`alpaca/alpaca_data.reconstructed.json.xz` in the data directory, else `tatsu-lab/alpaca` from the
Hub. A record becomes user = instruction (+ blank line + input when there is one), assistant =
output. Records with an empty output are skipped and counted.

JSONL: one `{"messages": [{"role": ..., "content": ...}, ...]}` object per line, the format most
chat datasets ship in. A malformed line stops loading with its line number by default: silently
training on part of a file hides a broken file. The task `jsonl-lenient:PATH` (`skip_bad=True`)
skips such lines instead and counts them (reported in `stats`).
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

from tinylm.chat import ChatFormatError, validate
from tinylm.data.sources import DataError, data_dir
from tinylm.tasks.base import Example, Task, in_heldout

ALPACA_LOCAL = "alpaca/alpaca_data.reconstructed.json.xz"


def _split(examples: list[Example], split: str, seed: int, percent: float) -> list[Example]:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected train or test")
    want_test = split == "test"
    return [e for e in examples if in_heldout(e.meta["key"], seed, percent) == want_test]


class Alpaca(Task):
    name = "alpaca"

    def __init__(self, path: str | None = None, seed: int = 0, heldout_percent: float = 2.0, limit: int = 0):
        self.path, self.seed, self.heldout_percent, self.limit = path, seed, heldout_percent, limit
        self.stats = {"records": 0, "skipped_empty_output": 0}
        self._all: list[Example] | None = None

    def _records(self):
        path = Path(self.path) if self.path else None
        if path is None and data_dir() is not None and (data_dir() / ALPACA_LOCAL).exists():
            path = data_dir() / ALPACA_LOCAL
        if path is not None:
            opener = lzma.open if path.name.endswith(".xz") else open
            try:
                with opener(path, "rt", encoding="utf-8") as f:
                    return json.load(f)
            except (OSError, json.JSONDecodeError, lzma.LZMAError) as e:
                raise DataError(f"{path}: cannot read Alpaca JSON ({e})") from e
        try:
            import datasets
        except ImportError as e:
            raise DataError(f"no local {ALPACA_LOCAL} and no `datasets` package for tatsu-lab/alpaca") from e
        return list(datasets.load_dataset("tatsu-lab/alpaca", split="train"))

    def _load(self) -> list[Example]:
        if self._all is None:
            out = []
            for i, r in enumerate(self._records()):
                self.stats["records"] += 1
                if not str(r.get("output", "")).strip():
                    self.stats["skipped_empty_output"] += 1
                    continue
                user = r["instruction"].strip() + (f"\n\n{r['input'].strip()}" if r.get("input", "").strip() else "")
                out.append(Example([{"role": "user", "content": user},
                                    {"role": "assistant", "content": r["output"].strip()}], {"key": f"alpaca-{i}"}))
                if self.limit and len(out) >= self.limit:
                    break
            self._all = out
        return self._all

    def examples(self, split: str) -> list[Example]:
        return _split(self._load(), split, self.seed, self.heldout_percent)


class JsonlConversations(Task):
    def __init__(self, path, seed: int = 0, heldout_percent: float = 2.0, skip_bad: bool = False):
        self.path, self.seed, self.heldout_percent, self.skip_bad = Path(path), seed, heldout_percent, skip_bad
        self.name = f"jsonl:{self.path.name}"
        self.stats = {"lines": 0, "skipped": 0, "skipped_lines": []}
        self._all: list[Example] | None = None

    def _load(self) -> list[Example]:
        if self._all is not None:
            return self._all
        if not self.path.exists():
            raise DataError(f"{self.path}: file not found")
        out = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                self.stats["lines"] += 1
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict) or "messages" not in row:
                        raise ChatFormatError('expected an object with a "messages" list')
                    validate(row["messages"])
                except (json.JSONDecodeError, ChatFormatError) as e:
                    if not self.skip_bad:
                        raise DataError(f"{self.path}:{lineno}: {e} (to skip and count such lines instead, name the "
                                        f"task jsonl-lenient:{self.path})") from e
                    self.stats["skipped"] += 1
                    self.stats["skipped_lines"].append(lineno)
                    continue
                out.append(Example(row["messages"], {"key": f"{self.path.name}-{lineno}"}))
        if self.stats["skipped"]:
            print(f"warning: {self.path}: skipped {self.stats['skipped']} malformed line(s), "
                  f"first at line(s) {self.stats['skipped_lines'][:5]}")
        self._all = out
        return out

    def examples(self, split: str) -> list[Example]:
        return _split(self._load(), split, self.seed, self.heldout_percent)

"""What every evaluation task shares: the result format, statistics, locating data files and
counting malformed rows.

A task's `run(lm, limit)` returns a dict

    {"metrics": {"acc": {"value", "stderr", "ci95"}, ...}, "primary": "acc", "higher_is_better": True,
     "chance": 0.25, "n": 1172, "num_fewshot": 0, "malformed": 0, "protocol": "...", "breakdown": {...}}

and the harness adds timing and truncation counts. Standard errors are lm-evaluation-harness's
(`mean_stderr`: sample standard deviation / sqrt(n)); the 95% interval is value ± 1.96 stderr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tinylm.data.sources import DATA_ENV, data_dir


class TaskDataError(FileNotFoundError):
    """A task's data is not where it was expected (the message says where, and how to get it)."""


def mean_metric(xs: list[float]) -> dict:
    n = len(xs)
    if n == 0:
        return {"value": float("nan"), "stderr": None, "ci95": None}
    m = sum(xs) / n
    if n < 2:
        return {"value": m, "stderr": None, "ci95": None}
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)
    return {"value": m, "stderr": se, "ci95": [m - 1.96 * se, m + 1.96 * se]}


def point_metric(value: float) -> dict:
    return {"value": value, "stderr": None, "ci95": None}


def find_data(task: str, rel: str, hub: str | None = None) -> Path | None:
    """The local file `rel` under the data directory, or None when the Hub should be tried.
    Raises TaskDataError naming the expected path when neither is possible."""
    root = data_dir()
    if root is not None and (root / rel).exists():
        return root / rel
    if hub:
        try:
            import datasets  # noqa: F401

            return None
        except ImportError:
            pass
    where = _expected(rel)
    how = f"set ${DATA_ENV} to a directory that holds {rel}"
    if hub:
        how += f", or `pip install 'tinylm[hf]'` and run with network access to load {hub} from the Hugging Face Hub"
    raise TaskDataError(f"{task}: data file not found: expected {where} ({how})")


def _expected(rel: str) -> str:
    root = data_dir()
    return str(root / rel) if root is not None else f"${DATA_ENV}/{rel}"


def hub_rows(task: str, hub: str, config: str | None, split: str, rel: str = ""):
    """Rows of a Hub dataset; when loading fails, the error names the local file that was looked
    for first (`rel` under the data directory) as well as the Hub failure."""
    from datasets import load_dataset

    try:
        return load_dataset(hub, config, split=split)
    except Exception as e:  # network or name errors: say which task needed what
        local = f"data file not found: expected {_expected(rel)}, and " if rel else "no local data and "
        raise TaskDataError(f"{task}: {local}loading {hub} ({config}, {split}) from the Hub failed: "
                            f"{' '.join(str(e).split())}") from e


def read_jsonl(path: Path, parse, task: str) -> tuple[list, int]:
    """Parse a JSONL file row by row with `parse(obj) -> doc`; rows that are not JSON or that
    `parse` rejects (KeyError/ValueError/TypeError/IndexError) are skipped and counted."""
    docs, bad, first_bad = [], 0, []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                docs.append(parse(json.loads(line)))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError, IndexError) as e:
                bad += 1
                if len(first_bad) < 3:
                    first_bad.append(f"line {lineno}: {type(e).__name__}: {e}")
    if bad:
        print(f"warning: {task}: {bad} malformed row(s) in {path} skipped ({'; '.join(first_bad)})")
    return docs, bad


class EvalTask:
    name = ""
    chance: float | None = None
    primary = "acc"
    higher_is_better = True
    num_fewshot = 0
    protocol = ""

    def run(self, lm, limit: int = 0) -> dict:
        raise NotImplementedError

    def result(self, metrics: dict, n: int, malformed: int = 0, breakdown: dict | None = None, **extra) -> dict:
        out = {"metrics": metrics, "primary": self.primary, "higher_is_better": self.higher_is_better,
               "chance": self.chance, "n": n, "num_fewshot": self.num_fewshot, "malformed": malformed,
               "protocol": self.protocol}
        if breakdown:
            out["breakdown"] = breakdown
        out.update(extra)
        return out

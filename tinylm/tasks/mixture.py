"""A weighted mixture of tasks, deterministic given a seed.

`"alpaca:1,instructions:2"` means: of the mixture's examples, one third from Alpaca and two thirds
from the checkable instructions. The mixture has as many examples as its tasks have together
(unless `size` is given); a task with fewer examples than its share is repeated (each copy in a
new order), one with more is subsampled.
"""

from __future__ import annotations

import random

from tinylm.tasks import get_task
from tinylm.tasks.base import Example


def parse_mixture(spec: str) -> list[tuple[str, float]]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        name, sep, weight = part.rpartition(":")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:  # "jsonl:data.jsonl" is a task name without a weight
            name, w = part, 1.0
        if not sep:
            name = part
        if w <= 0:
            raise ValueError(f"mixture weight of {name!r} must be positive, got {w}")
        out.append((name, w))
    if not out:
        raise ValueError("empty mixture")
    return out


def check_mixture(spec: str) -> None:
    """Raise ValueError for an unparsable mixture, an unknown task or a missing JSONL file, without
    loading any data (the pipeline calls this before its first stage)."""
    from pathlib import Path

    from tinylm.tasks import TASKS

    for name, _ in parse_mixture(spec):
        for prefix in ("jsonl:", "jsonl-lenient:"):
            if name.startswith(prefix):
                if not Path(name[len(prefix):]).is_file():
                    raise ValueError(f"mixture {spec!r}: {name[len(prefix):]}: file not found")
                break
        else:
            if name not in TASKS:
                raise ValueError(f"mixture {spec!r}: unknown task {name!r}; available: {', '.join(TASKS)}, "
                                 "jsonl:PATH, jsonl-lenient:PATH")


def mixture_examples(spec: str, split: str, seed: int = 0, size: int = 0, tasks: dict | None = None,
                     heldout_percent: float = 0.0) -> list[Example]:
    parts = parse_mixture(spec)
    tasks = tasks or {}
    pools = []
    for name, w in parts:
        task = tasks.get(name) or get_task(name, seed, heldout_percent)
        ex = task.examples(split)
        if not ex:
            n = len(task.examples("train" if split == "test" else "test"))
            share = getattr(task, "heldout_percent", None)
            raise ValueError(f"task {name!r} has no {split} examples ({n} in the other split, {share}% held out); "
                             "for a small dataset raise --heldout_percent (e.g. 20)")
        pools.append((name, w, ex))
    total = size or sum(len(ex) for _, _, ex in pools)
    wsum = sum(w for _, w, _ in pools)
    rng = random.Random(f"mixture:{seed}:{spec}:{split}")
    out: list[Example] = []
    for name, w, ex in pools:
        quota = round(total * w / wsum)
        picked: list[Example] = []
        while len(picked) < quota:
            order = ex[:]
            rng.shuffle(order)
            picked += order[: quota - len(picked)]
        out += picked
    rng.shuffle(out)
    return out

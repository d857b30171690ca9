"""Progress of long stages: one style of tqdm bar, always with a total (so tqdm shows an ETA),
and the one summary line a stage ends with (what was done, how long it took, where it went).

Bars go to stderr and summaries to stdout, so `tinylm ... > log` keeps the summaries clean.
"""

from __future__ import annotations

from tqdm import tqdm


def bar(iterable=None, *, total: int | float | None = None, desc: str = "", unit: str = "it",
        leave: bool = False, **kw) -> tqdm:
    """A bar with a total and ETA; `leave=False` clears it when done, so the summary line stays."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, mininterval=1.0, **kw)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def summary(stage: str, what: str, seconds: float, out=None) -> str:
    """Print and return `stage: what in 1m05s -> out`."""
    line = f"{stage}: {what} in {duration(seconds)}" + (f" -> {out}" if out else "")
    tqdm.write(line)
    return line

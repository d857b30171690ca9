"""Words from numbers: what a difference between two measured values allows the report to say.

Every generated sentence that compares two results goes through `verdict`, so prose never claims a
difference its intervals do not resolve. The rule is the conservative one a reader checks by eye:
a difference is *resolved* when the two 95% intervals do not overlap (|a - b| > h_a + h_b); without
intervals nothing is claimed beyond the numbers themselves.
"""

from __future__ import annotations

import math


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def verdict(a, ha, b, hb, higher_is_better: bool = True) -> str:
    """'better' / 'worse' (b against a) when the 95% intervals do not overlap, else 'unresolved'
    ('unknown' without both intervals)."""
    if not all(_ok(x) for x in (a, b)):
        return "unknown"
    if not (_ok(ha) and _ok(hb)):
        return "unknown"
    if abs(b - a) <= ha + hb:
        return "unresolved"
    return "better" if (b > a) == higher_is_better else "worse"


def change_sentence(what: str, a, ha, b, hb, la: str, lb: str, digits: int = 3, higher_is_better: bool = True) -> str:
    """One sentence about `what` going from a (model la) to b (model lb) that says only what the intervals allow."""
    v = verdict(a, ha, b, hb, higher_is_better)
    fa = f"{a:.{digits}f}" + (f" ± {ha:.{digits}f}" if _ok(ha) else "")
    fb = f"{b:.{digits}f}" + (f" ± {hb:.{digits}f}" if _ok(hb) else "")
    if v == "better":
        return f"{what} improves from {fa} ({la}) to {fb} ({lb}), a difference the 95% intervals resolve."
    if v == "worse":
        return f"{what} falls from {fa} ({la}) to {fb} ({lb}), a drop the 95% intervals resolve."
    if v == "unresolved":
        return (f"{what} moves from {fa} ({la}) to {fb} ({lb}), but the 95% intervals overlap, so this sample size "
                "does not resolve a difference.")
    return f"{what}: {fa} ({la}) and {fb} ({lb}); no intervals were recorded, so no difference is claimed."


def min_detectable(p: float, n: int) -> float | None:
    """Smallest difference two independent accuracies near p, each on n examples, resolve by the
    non-overlap rule: 2 x 1.96 x sqrt(p (1 - p) / n)."""
    if not (_ok(p) and isinstance(n, int) and n > 0):
        return None
    return 2 * 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / n)

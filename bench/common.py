"""What every benchmark result records: name, date, the command, hardware and versions."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from tinylm.util import code_version, hardware_info

RESULTS = Path(__file__).parent / "results"


def loadavg() -> list[float]:
    """1/5/15-minute load averages: how busy the (shared) machine was around a measurement."""
    return [round(x, 2) for x in os.getloadavg()]


def write_result(name: str, path, body: dict) -> dict:
    """Write {header..., **body} as JSON to `path` and return it (with the load average at the end;
    scripts put `loadavg_start` in `body`)."""
    out = {
        "benchmark": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "hardware": hardware_info(),  # includes python and torch versions
        "code_version": code_version(),
        **body,
        "loadavg_end": loadavg(),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    return out


def steps_per_second(step, seconds: float, warmup: int = 3) -> float:
    """Calls of `step()` per second over at least `seconds` (and 3 calls), after `warmup` untimed ones."""
    import time

    for _ in range(warmup):
        step()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


class RandomBatches:
    """A batch source with the loader's interface: fixed random tokens, so no I/O is timed."""

    def __init__(self, B, T, V, seed=0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, V, (B, T), generator=g)
        self.y = torch.randint(0, V, (B, T), generator=g)

    def next_batch(self):
        return self.x, self.y

    def state_dict(self):
        return {}

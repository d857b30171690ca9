"""One table across models from their eval.json files (`tinylm compare A B C [--out FILE.md]`).

Rows are tasks (primary metric, plus acc_norm where a task reports it), columns are models, each
cell the value ± the half-width of its 95% interval; the chance column says what guessing
scores. The best model per row is in bold when its interval does not overlap the runner-up's.
"""

from __future__ import annotations

import json
from pathlib import Path


def load_results(path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "eval.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no eval.json (run `tinylm eval --model ... --out {path}` first)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e
    if not str(doc.get("schema", "")).startswith("tinylm.eval/"):
        raise ValueError(f"{p}: not a tinylm eval results file (no 'schema': 'tinylm.eval/...')")
    return doc


def fmt_metric(m: dict | None, digits: int = 3) -> str:
    """value ± half-width of its 95% interval ("-" when there is no value)."""
    if not m or m.get("value") is None:
        return "-"
    v = m["value"]
    s = f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return s + (f" ± {(m['ci95'][1] - m['ci95'][0]) / 2:.{digits}f}" if m.get("ci95") else "")


def rows(docs: list[dict]) -> list[dict]:
    """[{task, metric, chance, higher_is_better, cells: [metric dict | None per model]}]"""
    order: list[tuple[str, str]] = []
    info: dict[tuple[str, str], dict] = {}
    for d in docs:
        for name, r in d["tasks"].items():
            if not r.get("primary"):
                continue
            for metric in [r["primary"]] + (["acc_norm"] if "acc_norm" in r["metrics"] else []):
                key = (name, metric)
                if key not in info:
                    order.append(key)
                    info[key] = {"task": name, "metric": metric, "higher_is_better": r.get("higher_is_better", True),
                                 "chance": r.get("chance") if metric.startswith("acc") else None}
    return [{**info[k], "cells": [d["tasks"].get(k[0], {}).get("metrics", {}).get(k[1]) for d in docs],
             "limits": [d["tasks"].get(k[0], {}).get("limit", d.get("limit")) if k[0] in d["tasks"] else None
                        for d in docs]} for k in order]


def _best(cells: list[dict | None], higher: bool) -> int | None:
    vals = [(c["value"], i, c.get("ci95")) for i, c in enumerate(cells) if c and c.get("value") is not None]
    if len(vals) < 2:
        return None
    vals.sort(reverse=higher)
    (v1, i1, ci1), (v2, _, ci2) = vals[0], vals[1]
    if ci1 and ci2:
        separated = ci1[0] > ci2[1] if higher else ci1[1] < ci2[0]
        return i1 if separated else None
    return i1 if v1 != v2 else None


def compare_markdown(docs: list[dict], names: list[str] | None = None) -> str:
    names = names or [d["model"].get("name", f"model{i}") for i, d in enumerate(docs)]
    out = ["| task | metric | chance | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in rows(docs):
        best = _best(r["cells"], r["higher_is_better"])
        cells = [(f"**{fmt_metric(c)}**" if i == best else fmt_metric(c)) + (f" (n≤{lim}†)" if lim else "")
                 for i, (c, lim) in enumerate(zip(r["cells"], r["limits"]))]
        chance = f"{r['chance']:.3f}" if r["chance"] is not None else ""
        arrow = "" if r["higher_is_better"] else " (lower is better)"
        out.append(f"| {r['task']} | {r['metric']}{arrow} | {chance} | " + " | ".join(cells) + " |")
    models = "\n".join(f"- **{n}**: `{d['model'].get('spec')}` ({d['model'].get('kind')}, "
                       f"{d['model'].get('params', 0):,} parameters, context {d['model'].get('seq_len')}), "
                       f"evaluated {d.get('date', '?')}"
                       for n, d in zip(names, docs))
    return "\n".join(out) + "\n\nValues ± half-width of the 95% interval; bold: best, when its interval does not " \
        "overlap the runner-up's. † run with --limit: the first N examples of the task (per subject for MMLU, " \
        "per paradigm for BLiMP), so the interval is wider than on the full set.\n\n" + models + "\n"

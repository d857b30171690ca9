"""Instruction following: the constraint-satisfaction rate of a model on held-out checkable
instructions, with greedy or sampled decoding. Works for base and SFT checkpoints alike (a base
model is prompted with the same chat template; it has never seen it, which is the point of the
comparison).

Run: tinylm ifeval --checkpoint runs/default/sft --n 300 --out runs/default/ifeval-sft.json
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from tinylm.chat import ContextFullError, respond
from tinylm.config import IFEvalConfig, to_dict
from tinylm.runtime import resolve_device
from tinylm.tasks import get_task
from tinylm.train.checkpoint import find_checkpoint, load_model
from tinylm.util import atomic_write_text


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / max(n - 1, 1)
    return m, 1.96 * math.sqrt(var / n)


def run(cfg: IFEvalConfig) -> dict:
    model, tok, meta = load_model(cfg.checkpoint, resolve_device(cfg.device))
    task = get_task(cfg.task, cfg.data_seed)
    if not task.checkable:
        raise ValueError(f"task {cfg.task!r} has no checker")
    examples = task.examples("test")
    random.Random(cfg.data_seed).shuffle(examples)
    if cfg.n:
        examples = examples[: cfg.n]
    t0 = time.time()
    rows, skipped = [], 0
    for i, ex in enumerate(examples):
        for s in range(cfg.samples):
            try:
                response = respond(model, tok, ex.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k,
                                   seed=cfg.seed + 1000 * i + s, compile=cfg.compile)
            except ContextFullError:
                skipped += 1
                continue
            res = task.check(ex, response)
            rows.append({"kind": ex.meta.get("kind"), "prompt": ex.prompt[-1]["content"], "response": response,
                         "reference": ex.messages[-1]["content"], "score": res.score, "details": res.details,
                         "reference_score": task.check(ex, ex.messages[-1]["content"]).score})
    scores = [r["score"] for r in rows]
    mean, ci = _mean_ci(scores)
    by_kind = {}
    for kind in sorted({r["kind"] for r in rows}):
        m, c = _mean_ci([r["score"] for r in rows if r["kind"] == kind])
        by_kind[kind] = {"score": m, "ci95": c, "n": sum(r["kind"] == kind for r in rows)}
    by_constraint: dict[str, list[float]] = {}
    for r in rows:
        for d in r["details"]:
            by_constraint.setdefault(d["type"], []).append(d["score"])
    out = {
        "checkpoint": str(find_checkpoint(cfg.checkpoint)), "stage": meta.get("stage"), "task": cfg.task,
        "decoding": "greedy" if cfg.temperature <= 0 else f"temperature {cfg.temperature}, top_k {cfg.top_k}",
        "n_prompts": len(examples), "n_responses": len(rows), "skipped_context_full": skipped,
        "score": mean, "ci95": ci, "perfect_rate": sum(s == 1.0 for s in scores) / max(len(scores), 1),
        "reference_score": sum(r["reference_score"] for r in rows) / max(len(rows), 1),
        "by_kind": by_kind, "by_constraint": {k: sum(v) / len(v) for k, v in by_constraint.items()},
        "seconds": round(time.time() - t0, 1), "config": to_dict(cfg),
    }
    print(f"ifeval {cfg.task} ({out['decoding']}): constraint satisfaction {mean:.3f} ± {ci:.3f} over {len(rows)} "
          f"responses (reference answers score {out['reference_score']:.3f})")
    for kind, v in by_kind.items():
        print(f"  {kind:<14} {v['score']:.3f} ± {v['ci95']:.3f} (n={v['n']})")
    if cfg.out:
        out_path = Path(cfg.out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_path, json.dumps({**out, "responses": rows}, indent=2) + "\n")
        md = [f"# Instruction following: {out['checkpoint']}\n", f"{out['decoding']}; score {mean:.3f} ± {ci:.3f}\n"]
        for r in rows[:12]:
            md += [f"## {r['kind']} (score {r['score']:.2f})\n", f"**User:** {r['prompt']}\n",
                   f"**Model:** {r['response']}\n", f"**Reference:** {r['reference']}\n"]
        atomic_write_text(out_path.with_suffix(".md"), "\n".join(md))
    return out

"""Instruction following: the constraint-satisfaction rate of a model on held-out checkable
instructions, with greedy or sampled decoding. Works for base and SFT checkpoints alike (a base
model is prompted with the same chat template; it has never seen it, which is the point of the
comparison).

Run: tinylm ifeval --checkpoint runs/default/sft --n 300 --out runs/default/ifeval-sft.json
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from tinylm.chat import respond
from tinylm.config import IFEvalConfig, to_dict
from tinylm.eval.tasks.generation import score_instructions, summarize_instructions
from tinylm.progress import summary
from tinylm.runtime import resolve_device
from tinylm.tasks import get_task
from tinylm.train.checkpoint import find_checkpoint, load_model
from tinylm.util import atomic_write_text


def run(cfg: IFEvalConfig) -> dict:
    model, tok, meta = load_model(cfg.checkpoint, resolve_device(cfg.device))
    task = get_task(cfg.task, cfg.data_seed, cfg.heldout_percent)
    if not task.checkable:
        raise ValueError(f"task {cfg.task!r} has no checker")
    examples = task.examples("test")
    random.Random(cfg.data_seed).shuffle(examples)
    if cfg.n:
        examples = examples[: cfg.n]
    t0 = time.time()

    def respond_fn(messages, max_new_tokens, temperature, top_k, seed):
        return respond(model, tok, messages, max_new_tokens, temperature, top_k, seed=seed, compile=cfg.compile)

    rows, skipped = score_instructions(task, examples, respond_fn, cfg.temperature, cfg.top_k, cfg.max_new_tokens,
                                       cfg.samples, cfg.seed)
    s = summarize_instructions(rows)
    mean, ci = s["score"]["value"], (s["score"]["ci95"][1] - s["score"]["value"]) if s["score"]["ci95"] else float("nan")
    by_kind = {k: {"score": v["value"], "ci95": (v["ci95"][1] - v["value"]) if v["ci95"] else float("nan"), "n": v["n"]}
               for k, v in s["by_kind"].items()}
    out = {
        "checkpoint": str(find_checkpoint(cfg.checkpoint)), "stage": meta.get("stage"), "task": cfg.task,
        "decoding": "greedy" if cfg.temperature <= 0 else f"temperature {cfg.temperature}, top_k {cfg.top_k}",
        "n_prompts": len(examples), "n_responses": len(rows), "skipped_context_full": skipped,
        "score": mean, "ci95": ci, "perfect_rate": s["perfect_rate"], "reference_score": s["reference_score"],
        "by_kind": by_kind, "by_constraint": s["by_constraint"],
        "seconds": round(time.time() - t0, 1), "config": to_dict(cfg),
    }
    print(f"ifeval {cfg.task}, {out['stage'] or 'model'} checkpoint {out['checkpoint']} ({out['decoding']}): constraint satisfaction {mean:.3f} ± {ci:.3f} over {len(rows)} "
          f"responses (reference answers score {out['reference_score']:.3f})")
    for kind, v in by_kind.items():
        print(f"  {kind:<14} {v['score']:.3f} ± {v['ci95']:.3f} (n={v['n']})")
    summary("ifeval", f"{len(rows)} responses to {len(examples)} prompts", out["seconds"], cfg.out or None)
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

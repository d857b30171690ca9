"""The alignment comparison: SFT and each aligned model on the same held-out checkable instructions.

For every model: constraint satisfaction (greedy and sampled, `tinylm ifeval`'s 300 prompts and
protocol) with 95% intervals and per-kind scores, the degenerate-output rate (the reward-hacking
guard's definition, tinylm/train/rollout.py), KL to the SFT model (answers sampled at temperature
1 from the model, nats per answer), TinyStories bits per byte (does alignment wreck language
modelling?), and the stage's wall-clock from its summary.json. Written to one alignment.json:

    {"protocol": {...}, "sft": "<checkpoint>", "load_average_1_5_15": [...],
     "methods": {"sft": M, "grpo": M, ...}}
    M = {"checkpoint", "run_summary": {...} | null,
         "greedy":  {"score", "ci95", "n", "by_kind": {kind: {"score", "ci95", "n"}}, "degenerate_rate", "perfect_rate"},
         "sampled": {... same ...},
         "kl_to_sft": {"kl", "ci95", "n", "unit"}, "bpb_tinystories": float, "seconds": float}

Run: python -m tinylm.eval.alignment --sft runs/default/sft --models grpo=runs/default/grpo dpo=runs/default/dpo
     --out results/gc-1m-align/alignment.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from tinylm.chat import respond
from tinylm.eval.tasks.generation import score_instructions, summarize_instructions
from tinylm.tasks import get_task
from tinylm.train.checkpoint import find_checkpoint, load_model
from tinylm.util import atomic_write_text


def _summary(rows, task_examples_by_prompt) -> dict:
    from tinylm.train.rollout import degenerate

    s = summarize_instructions(rows)
    half = lambda m: (m["ci95"][1] - m["value"]) if m["ci95"] else None  # noqa: E731
    degen = [degenerate(task_examples_by_prompt[r["prompt"]], r["response"]) for r in rows]
    return {"score": s["score"]["value"], "ci95": half(s["score"]), "n": len(rows), "perfect_rate": s["perfect_rate"],
            "by_kind": {k: {"score": v["value"], "ci95": half(v), "n": v["n"]} for k, v in s["by_kind"].items()},
            "by_constraint": s["by_constraint"], "degenerate_rate": sum(d is not None for d in degen) / max(len(rows), 1),
            "degenerate_reasons": {k: degen.count(k) for k in sorted({d for d in degen if d})}}


def _head(docs, max_bytes: int):
    n = 0
    for d in docs:
        if n >= max_bytes:
            return
        n += len(d.encode("utf-8"))
        yield d


def evaluate_model(ckpt, sft_model, n: int = 300, data_seed: int = 0, kl_prompts: int = 100, bpb_bytes: int = 0,
                   compile: bool = False, samples_out: Path | None = None, task: str = "instructions") -> dict:
    from tinylm.bpb import score_documents
    from tinylm.data.sources import resolve
    from tinylm.train.align import kl_to_reference

    t0 = time.time()
    model, tok, _ = load_model(ckpt)
    task = get_task(task, data_seed)
    examples = task.examples("test")
    random.Random(data_seed).shuffle(examples)  # the order `tinylm ifeval` uses: the same 300 prompts
    examples = examples[:n]
    by_prompt = {e.prompt[-1]["content"]: e for e in examples}

    def respond_fn(messages, max_new_tokens, temperature, top_k, seed):
        return respond(model, tok, messages, max_new_tokens, temperature, top_k, seed=seed, compile=compile)

    out = {"checkpoint": str(find_checkpoint(ckpt))}
    for name, temp, top_k in (("greedy", 0.0, 0), ("sampled", 0.7, 50)):
        rows, skipped = score_instructions(task, examples, respond_fn, temp, top_k, 160, 1, 0)
        out[name] = {**_summary(rows, by_prompt), "skipped_context_full": skipped}
        if samples_out is not None and name == "greedy":
            atomic_write_text(samples_out, json.dumps(rows, indent=1) + "\n")
    out["kl_to_sft"] = kl_to_reference(model, sft_model, tok, examples[:kl_prompts], samples=1) if sft_model is not None else None
    try:
        docs = resolve("tinystories").documents("valid")
        if bpb_bytes:
            docs = _head(docs, bpb_bytes)
        res = score_documents(model, tok, docs)
        out["bpb_tinystories"], out["bpb_bytes"] = res.bits_per_byte, res.bytes
    except Exception as e:  # a missing corpus should not hide the other numbers
        out["bpb_tinystories"], out["bpb_error"] = None, str(e)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def compare(sft: str, models: dict[str, str], out: str, n: int = 300, compile: bool = False, task: str = "instructions",
            kl_prompts: int = 100, bpb_bytes: int = 0, reuse: bool = False) -> dict:
    """Evaluate SFT and each of `models` ({name: run or checkpoint}) into `out`, merged with what the
    file already holds (models not named keep their entries). reuse=True keeps an entry whose
    checkpoint is the one named instead of evaluating it again."""
    from tinylm.util import load_average

    sft_model = load_model(sft)[0]
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update({"protocol": {"prompts": n, "task": "instructions (test split, data_seed 0, ifeval order)",
                                "greedy": "temperature 0, 160 tokens", "sampled": "temperature 0.7, top_k 50, seed 0",
                                "kl": "KL(model || SFT), answers sampled at temperature 1, first 100 prompts, nats per answer",
                                "bpb": "TinyStories validation head (as `tinylm bpb --text tinystories`)"},
                   "sft": str(find_checkpoint(sft))})
    methods = result.setdefault("methods", {})
    for name, path in {"sft": sft, **models}.items():
        if reuse and methods.get(name, {}).get("checkpoint") == str(find_checkpoint(path)):
            print(f"alignment: {name} already evaluated at {methods[name]['checkpoint']}; kept", flush=True)
            continue
        print(f"alignment: evaluating {name} ({path})", flush=True)
        m = evaluate_model(path, sft_model if name != "sft" else None, n, kl_prompts=kl_prompts, bpb_bytes=bpb_bytes,
                           compile=compile, samples_out=out_path.parent / f"responses-{name}.json", task=task)
        summary = Path(path) / "summary.json"
        m["run_summary"] = json.loads(summary.read_text()) if summary.exists() and name != "sft" else None
        m["load_average_1_5_15"] = load_average()
        methods[name] = m
        g = m["greedy"]
        print(f"  greedy {g['score']:.3f} ± {g['ci95']:.3f}; sampled {m['sampled']['score']:.3f}; "
              f"degenerate {g['degenerate_rate']:.1%}; bpb {m.get('bpb_tinystories')}", flush=True)
        atomic_write_text(out_path, json.dumps(result, indent=2) + "\n")  # after each model: a partial file is useful
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinylm.eval.alignment",
                                description="SFT vs aligned models on the held-out checkable instructions")
    p.add_argument("--sft", required=True)
    p.add_argument("--models", nargs="*", default=[], metavar="NAME=RUN")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--compile", action="store_true", help="compiled decoding (faster after 12-25 s of compiling per shape)")
    p.add_argument("--reuse", action="store_true", help="keep models already in --out at the same checkpoint")
    a = p.parse_args(argv)
    bad = [m for m in a.models if "=" not in m]
    if bad:
        p.error(f"--models takes NAME=RUN pairs, got {', '.join(bad)}")
    from tinylm.cli import one_line_errors

    return one_line_errors(lambda: compare(a.sft, dict(m.split("=", 1) for m in a.models), a.out, a.n,
                                           compile=a.compile, reuse=a.reuse) and 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""Tasks that generate text: instruction following (constraint satisfaction on held-out
checkable instructions, tinylm/tasks/instructions.py) and the fixed set of qualitative prompts.

Prompts go through the chat template when the tokenizer has chat tokens (base and SFT tinylm
models alike, so the two are compared on the same prompt); a model without them (llama2.c
stories260K, most Hub models) gets the instruction as plain text followed by a blank line and
continues it (recorded as `prompt_format`).
"""

from __future__ import annotations

import random

from tinylm.chat import ContextFullError
from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, mean_metric

# Version of the qualitative prompt set: bump it when a prompt changes, so that samples.md files
# of different versions are never read side by side as if they were comparable.
SAMPLES_VERSION = 1
SAMPLE_PROMPTS = [
    ("story", "Once upon a time, there was a little girl named Lily. One day,"),
    ("story", "The old man looked at the sea and"),
    ("story", "Tom and his dog went to the park. They"),
    ("story", "It was a dark and stormy night."),
    ("instruction", "Write a short story about a cat named Tom."),
    ("instruction", "Write a story that uses the words ball, happy and garden."),
    ("instruction", "Give this story a title: Lily found a red ball in the garden. She played with it all day and was very happy."),
    ("question", "What is the capital of France?"),
    ("question", "Why is the sky blue?"),
    ("question", "What do cats like to eat?"),
]


def respond_fn(lm):
    """respond(messages, max_new_tokens, temperature, top_k, seed) -> (text, prompt_format)."""
    tok = lm.tok
    if tok.has_chat_tokens():
        from tinylm.chat import end_id, render_prompt

        stop = end_id(tok)

        def respond(messages, max_new_tokens, temperature, top_k, seed):
            out = lm.generate(render_prompt(tok, messages), max_new_tokens, temperature, top_k, seed, (stop,))
            return tok.decode([t for t in out if t != stop])

        return respond, "chat"

    def respond(messages, max_new_tokens, temperature, top_k, seed):
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        out = lm.generate([tok.eot_id] + tok.encode(text), max_new_tokens, temperature, top_k, seed, (tok.eot_id,))
        return tok.decode([t for t in out if t != tok.eot_id])

    return respond, "plain"


def score_instructions(task, examples, respond, temperature: float, top_k: int, max_new_tokens: int,
                       samples: int = 1, seed: int = 0) -> tuple[list[dict], int]:
    """Generate a response to every example and check it; responses that cannot start (prompt
    fills the context) are skipped and counted."""
    from tinylm.progress import bar

    rows, skipped = [], 0
    for i, ex in enumerate(bar(examples, desc=f"generate {getattr(task, 'name', 'responses')}", unit="prompt")):
        for s in range(samples):
            try:
                response = respond(ex.prompt, max_new_tokens, temperature, top_k, seed + 1000 * i + s)
            except (ValueError, ContextFullError):  # the prompt leaves no room in the context
                skipped += 1
                continue
            res = task.check(ex, response)
            rows.append({"kind": ex.meta.get("kind"), "prompt": ex.prompt[-1]["content"], "response": response,
                         "reference": ex.messages[-1]["content"], "score": res.score, "details": res.details,
                         "reference_score": task.check(ex, ex.messages[-1]["content"]).score})
    return rows, skipped


def summarize_instructions(rows: list[dict]) -> dict:
    scores = [r["score"] for r in rows]
    by_kind = {k: {**mean_metric([r["score"] for r in rows if r["kind"] == k]), "n": sum(r["kind"] == k for r in rows)}
               for k in sorted({r["kind"] for r in rows})}
    by_constraint: dict[str, list[float]] = {}
    for r in rows:
        for d in r["details"]:
            by_constraint.setdefault(d["type"], []).append(d["score"])
    return {"score": mean_metric(scores), "perfect_rate": sum(s == 1.0 for s in scores) / max(len(scores), 1),
            "reference_score": sum(r["reference_score"] for r in rows) / max(len(rows), 1), "by_kind": by_kind,
            "by_constraint": {k: sum(v) / len(v) for k, v in sorted(by_constraint.items())}}


class _IFEval(EvalTask):
    primary = "score"
    chance = 0.0
    temperature, top_k = 0.0, 0
    n, max_new_tokens, data_seed = 300, 160, 0

    def run(self, lm, limit: int = 0) -> dict:
        from tinylm.tasks import get_task

        task = get_task("instructions", self.data_seed)
        examples = task.examples("test")
        random.Random(self.data_seed).shuffle(examples)  # the same 300 prompts `tinylm ifeval` scores
        examples = examples[: limit or self.n]
        respond, fmt = respond_fn(lm)
        rows, skipped = score_instructions(task, examples, respond, self.temperature, self.top_k, self.max_new_tokens)
        s = summarize_instructions(rows)
        metrics = {"score": s["score"], "perfect_rate": {"value": s["perfect_rate"], "stderr": None, "ci95": None}}
        breakdown = {"kind": {k: {"score": v["value"], "n": v["n"]} for k, v in s["by_kind"].items()},
                     "constraint": {k: {"score": v} for k, v in s["by_constraint"].items()}}
        return self.result(metrics, len(rows), 0, breakdown, skipped_context_full=skipped, prompt_format=fmt,
                           reference_score=s["reference_score"], examples=rows[:20])


@register("ifeval")
class IFEvalGreedy(_IFEval):
    protocol = "constraint satisfaction in [0,1] on 300 held-out checkable instructions (data_seed 0), greedy, 160 tokens"


@register("ifeval-sampled")
class IFEvalSampled(_IFEval):
    temperature, top_k = 0.7, 50
    protocol = ("constraint satisfaction in [0,1] on 300 held-out checkable instructions (data_seed 0), "
                "temperature 0.7, top-k 50, seeded, 160 tokens")


@register("samples")
class Samples(EvalTask):
    primary = ""
    chance = None
    temperature, top_k, max_new_tokens, seed = 0.8, 50, 120, 0
    protocol = (f"qualitative prompt set v{SAMPLES_VERSION} ({len(SAMPLE_PROMPTS)} prompts): stories continued "
                "as raw text, instructions and questions through the chat template; T 0.8, top-k 50, seed 0")

    def run(self, lm, limit: int = 0) -> dict:
        respond, fmt = respond_fn(lm)
        out = []
        from tinylm.progress import bar

        for i, (kind, prompt) in enumerate(bar(SAMPLE_PROMPTS[: limit or None], desc="generate samples", unit="prompt")):
            try:
                if kind == "story":
                    prompt_ids = lm.tok.encode(prompt)
                    ids = lm.generate([lm.tok.eot_id] + prompt_ids, self.max_new_tokens, self.temperature,
                                      self.top_k, self.seed + i, (lm.tok.eot_id,))
                    # decoded together: a SentencePiece decoder drops the leading space of a
                    # sequence, so the continuation decoded alone would lose the space after the prompt
                    text = lm.tok.decode(prompt_ids + [t for t in ids if t != lm.tok.eot_id])
                else:
                    text = respond([{"role": "user", "content": prompt}], self.max_new_tokens, self.temperature,
                                   self.top_k, self.seed + i)
            except ValueError as e:  # the prompt does not fit the model's context
                text = f"[not generated: {e}]"
            out.append({"kind": kind, "prompt": prompt, "output": text})
        return self.result({}, len(out), 0, None, samples=out, version=SAMPLES_VERSION, prompt_format=fmt)

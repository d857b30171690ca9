"""The paper's frame: introduction, related work, conclusion and references.

The introduction and conclusion are generated from the same numbers as the tables (through
reading.verdict, so they never claim a difference the intervals do not resolve, and they name what got
worse); related work is fixed text with the references the report's methods come from.
"""

from __future__ import annotations

from tinylm.report.artifacts import STAGE_LABELS
from tinylm.report.document import Bullets, Paragraph, Section, fci, ffloat, fint, fsi
from tinylm.report.reading import verdict
from tinylm.report.sections_setup import Context, corpus_of, pretrain_numbers

REFERENCES = [
    "Brown et al. 2020. Language Models are Few-Shot Learners (GPT-3). NeurIPS.",
    "Eldan and Li 2023. TinyStories: How Small Can Language Models Be and Still Speak Coherent English? arXiv:2305.07759.",
    "Gao et al. 2023. A framework for few-shot language model evaluation (lm-evaluation-harness). Zenodo.",
    "Hoffmann et al. 2022. Training Compute-Optimal Large Language Models (Chinchilla). NeurIPS.",
    "Kaplan et al. 2020. Scaling Laws for Neural Language Models. arXiv:2001.08361.",
    "Karpathy 2023. llama2.c: inference Llama 2 in one file of pure C. github.com/karpathy/llama2.c.",
    "Mitchell et al. 2019. Model Cards for Model Reporting. FAT*.",
    "Ouyang et al. 2022. Training language models to follow instructions with human feedback (InstructGPT). NeurIPS.",
    "Rafailov et al. 2023. Direct Preference Optimization: Your Language Model is Secretly a Reward Model. NeurIPS.",
    "Shao et al. 2024. DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models (GRPO). arXiv:2402.03300.",
    "Taori et al. 2023. Stanford Alpaca: An Instruction-following LLaMA model. github.com/tatsu-lab/stanford_alpaca.",
    "Touvron et al. 2023a. LLaMA: Open and Efficient Foundation Language Models. arXiv:2302.13971.",
    "Touvron et al. 2023b. Llama 2: Open Foundation and Fine-Tuned Chat Models. arXiv:2307.09288.",
    "Warstadt et al. 2020. BLiMP: The Benchmark of Linguistic Minimal Pairs for English. TACL.",
    "Zhou et al. 2023. Instruction-Following Evaluation for Large Language Models (IFEval). arXiv:2311.07911.",
]


def ifeval_change(run) -> tuple[str, list[str]] | None:
    """(verdict, kinds that got worse) of greedy constraint satisfaction, base -> SFT."""
    a, b = run.ifeval.get("base"), run.ifeval.get("sft")
    if not (a and b):
        return None
    v = verdict(a.get("score"), a.get("ci95"), b.get("score"), b.get("ci95"))
    worse = []
    ka, kb = a.get("by_kind") or {}, b.get("by_kind") or {}
    for k in sorted(set(ka) & set(kb)):
        x, y = (ka[k] or {}).get("score"), (kb[k] or {}).get("score")
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y < x:
            worse.append(f"{k} {x:.2f} -> {y:.2f}")
    return v, worse


def introduction(ctx: Context) -> Section:
    s = Section("Introduction")
    r = ctx.trained[0] if ctx.trained else None
    if r is None:
        s.add(Paragraph("This report compares " + ", ".join(x.name for x in ctx.runs) + " with tinylm's evaluation "
                        "harness; none of them was pretrained in the directories given, so it covers evaluation only."))
        return s
    n = pretrain_numbers(r)
    stages = [STAGE_LABELS.get(x, x) for x in r.stages]
    s.add(Paragraph(
        f"Small language models are where every stage of a modern pipeline can be run, inspected and repeated on one "
        f"machine. This report describes {r.name}: a {fsi(n['params'])}-parameter Llama-style model trained from scratch "
        f"on {fsi(n['tokens'])} tokens of `{corpus_of(r)}`"
        + (f", then {', '.join(stages)}" if stages else "")
        + ", with tinylm. Following the Llama reports (Touvron et al. 2023a, b), it documents the data, the architecture "
          "and its reasons, the training run and its cost, instruction tuning"
        + (" and alignment" if any(x in r.stages for x in ("rm", "dpo", "ppo", "grpo")) else "")
        + ", and an evaluation whose every score carries a 95% interval."))
    s.add(Paragraph("Beyond the run itself, the report gives a data section in the style of Llama 2 §2.1 with a 13-gram "
                    "contamination check of every evaluation set; training curves, throughput and an energy estimate "
                    "with every assumption stated; benchmark scores with intervals and the differences those intervals "
                    "resolve; a comparison with published small models on one footing (bits per byte); samples chosen "
                    "by a stated rule; and a model card. Every number is read from the run's artifacts: tables name "
                    "their source file, and the appendix lists the commands that wrote them."))
    return s


def related_work() -> Section:
    s = Section("Related work")
    s.add(Paragraph(
        "Architecture and recipe follow LLaMA and Llama 2 (Touvron et al. 2023a, b): pre-normalisation with RMSNorm, "
        "SwiGLU, rotary embeddings, AdamW with warmup and cosine decay. At the small end, TinyStories (Eldan and Li 2023) "
        "showed that models of a few million parameters trained on simple synthetic stories write fluent English, and "
        "llama2.c (Karpathy 2023) trained Llama-architecture models of 260K to 110M parameters on it; both are our "
        "points of comparison. How loss falls with parameters and data is described by Kaplan et al. (2020) and, for "
        "compute-optimal budgets, by Hoffmann et al. (2022). Instruction tuning uses Alpaca's 52K instructions "
        "(Taori et al. 2023) and checkable instructions in the spirit of IFEval (Zhou et al. 2023); preference alignment "
        "follows InstructGPT's reward model and PPO (Ouyang et al. 2022), DPO (Rafailov et al. 2023) and GRPO "
        "(Shao et al. 2024). Evaluation follows lm-evaluation-harness (Gao et al. 2023) and BLiMP (Warstadt et al. 2020); "
        "the contamination check follows GPT-3 (Brown et al. 2020); the model card follows Mitchell et al. (2019)."))
    return s


def alignment_sentence(r) -> str:
    """The best aligned model of alignment.json against SFT, with both intervals, whether they separate,
    and the cost in TinyStories bits per byte; "" when the file is missing or malformed."""
    try:
        methods = r.alignment["methods"]
        sft = methods["sft"]
        rows = [(k, m) for k, m in methods.items() if k != "sft" and isinstance(m, dict) and isinstance(m.get("greedy"), dict)
                and isinstance(m["greedy"].get("score"), (int, float)) and isinstance(m["greedy"].get("ci95"), (int, float))]
        if not rows:
            return ""
        name, best = max(rows, key=lambda kv: kv[1]["greedy"]["score"])
        b, s = best["greedy"], sft["greedy"]
        resolved = b["score"] - b["ci95"] > s["score"] + s["ci95"]
        bpb = ""
        if isinstance(best.get("bpb_tinystories"), (int, float)) and isinstance(sft.get("bpb_tinystories"), (int, float)):
            bpb = (f", while TinyStories bits per byte go from {ffloat(sft['bpb_tinystories'], 3)} to "
                   f"{ffloat(best['bpb_tinystories'], 3)}")
        return (f" Of {len(rows)} alignment methods scored on the same held-out instructions, {r.label(name)} does best: "
                f"greedy constraint satisfaction {fci(b['score'], b['ci95'])} against {fci(s['score'], s['ci95'])} after SFT"
                f" ({'the intervals separate' if resolved else 'the intervals overlap'}){bpb}.")
    except (TypeError, KeyError, AttributeError):
        return _ifeval_alignment_sentence(r)


def _ifeval_alignment_sentence(r) -> str:
    """Without alignment.json (the default pipeline writes ifeval-<stage>.json only): the best greedy
    ifeval of an alignment stage against SFT's, with both intervals; "" when either is missing."""
    ok = lambda d: isinstance(d, dict) and d.get("decoding", "greedy") == "greedy" and all(  # noqa: E731
        isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool) for k in ("score", "ci95"))
    sft = r.ifeval.get("sft")
    rows = [(k, d) for k, d in r.ifeval.items() if k in ("rm", "rft", "dpo", "ppo", "grpo") and ok(d)]
    if not ok(sft) or not rows:
        return ""
    name, b = max(rows, key=lambda kv: kv[1]["score"])
    resolved = b["score"] - b["ci95"] > sft["score"] + sft["ci95"]
    return (f" After {name.upper()}, greedy constraint satisfaction on the same held-out instructions is "
            f"{fci(b['score'], b['ci95'])} against {fci(sft['score'], sft['ci95'])} after SFT "
            f"({'the intervals separate' if resolved else 'the intervals overlap'}).")


def conclusion(ctx: Context) -> Section:
    s = Section("Conclusion")
    r = ctx.trained[0] if ctx.trained else None
    if r is None:
        return s.add(Paragraph("No pretraining run was given; see the evaluation section for the comparison."))
    n = pretrain_numbers(r)
    out = [f"{r.name} reaches {ffloat(n['val_bpb'], 4)} bits per byte on its held-out text after {fsi(n['tokens'])} "
           f"tokens of pretraining."]
    ch = ifeval_change(r)
    if ch:
        v, worse = ch
        a, b = r.ifeval["base"], r.ifeval["sft"]
        pair = f"{ffloat(a.get('score'))} ± {ffloat(a.get('ci95'))} to {ffloat(b.get('score'))} ± {ffloat(b.get('ci95'))}"
        if v == "better":
            out.append(f"Instruction tuning raises constraint satisfaction on held-out instructions from {pair}, a gain "
                       "the 95% intervals resolve.")
        elif v == "worse":
            out.append(f"Instruction tuning lowers constraint satisfaction on held-out instructions from {pair}.")
        else:
            out.append(f"Constraint satisfaction on held-out instructions moves from {pair}; the intervals overlap, "
                       "so no gain is claimed at this sample size.")
        if worse:
            out.append("Instruction kinds that got worse: " + "; ".join(worse) + ".")
    aligned = alignment_sentence(r).strip()
    if aligned:
        out.append(aligned)
    if r.eval:
        from tinylm.report.sections_results import _half_ci, primary

        above, at = [], []
        for t, x in (r.eval.get("tasks") or {}).items():
            _, m = primary(x)
            v, h, c = m.get("value"), _half_ci(m), x.get("chance")
            if isinstance(v, (int, float)) and isinstance(c, (int, float)) and h is not None:
                (above if v - h > c else at).append(t)
        if above or at:
            out.append(f"Of {len(above) + len(at)} benchmarks with a chance level, {r.label('base')} is above chance "
                       f"(95% interval excluding it) on {len(above)}" + (f" ({', '.join(sorted(above))})" if above else "")
                       + f" and indistinguishable from chance on {len(at)}, at {fint(n['params'])} parameters.")
    return s.add(Paragraph(" ".join(out)))


def references() -> Section:
    return Section("References").add(Bullets(REFERENCES, compact=True))

"""Model cards with Hugging Face's sections, written from a run's artifacts: one home for every card.

    card_for_run(run, stage)          `tinylm report` writes it next to the report (model_card.md)
    card_for_checkpoint(ckpt, ...)    `tinylm export --format hf` writes it as the export's README.md;
                                      a GGUF export calls it with fmt="gguf"

Sections follow the Hugging Face model-card template (Mitchell et al. 2019, "Model Cards for Model
Reporting"): model details, uses (direct and out of scope), bias, risks and limitations, training
(data and procedure), evaluation, environmental impact, how to use. Every fact comes from the files a
run wrote (config.json, prepare.json, meta.json, metrics.jsonl, sft/summary.json, eval/eval.json,
bpb-*.json, ifeval-*.json); what is not there is written as "not recorded", never guessed. Only
evaluations of exactly the described checkpoint are listed when a checkpoint is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.report.artifacts import STAGE_LABELS, STAGES, Run, load_run
from tinylm.report.cost import CostAssumptions, estimate

LICENCE_NOTES = {
    "gutenberg-children": "Project Gutenberg books, public domain in the USA (Project Gutenberg header and licence text removed)",
    "gutenberg-general": "Project Gutenberg books, public domain in the USA (Project Gutenberg header and licence text removed)",
    "tinystories": "TinyStories (Eldan & Li 2023), CDLA-Sharing-1.0",
    "alpaca": "Stanford Alpaca instructions (Taori et al. 2023), CC BY-NC 4.0: the instruction-tuned weights inherit its non-commercial terms",
}


def _fmt(x, spec: str = ",") -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "not recorded"
    return format(int(x) if spec == "," else x, spec)


def _row(k, v) -> str:
    return f"| {k} | {str(v).replace('|', '/')} |"


def _eval_rows(ev: dict | None, ckpt: str | None) -> list[tuple[str, str]]:
    """(task (metric), value ± CI half-width) of an eval.json; none when it scored another checkpoint."""
    if not isinstance(ev, dict):
        return []
    model = ev.get("model") or {}
    if ckpt is not None and model.get("checkpoint") and Path(str(model["checkpoint"])).name != Path(ckpt).name:
        return []
    out = []
    for name, t in (ev.get("tasks") or {}).items():
        if not isinstance(t, dict) or not t.get("primary"):
            continue
        m = (t.get("metrics") or {}).get(t["primary"]) or {}
        v = m.get("value")
        if not isinstance(v, (int, float)):
            continue
        ci = m.get("ci95")
        half = (ci[1] - ci[0]) / 2 if isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci) else None
        chance = t.get("chance")
        cell = f"{v:.3f}" + (f" ± {half:.3f}" if half is not None else "")
        if isinstance(chance, (int, float)):
            cell += f" (chance {chance:g})"
        out.append((f"{name} ({t['primary']}, n={_fmt(t.get('n'))})", cell))
    return out


def render(f: dict) -> str:
    """The card as Markdown with YAML front matter, from a dict of facts (see `facts`)."""
    tags = ["tinylm", "llama", "text-generation", "from-scratch"]
    yaml = ["---", "library_name: transformers" if f.get("fmt") != "gguf" else "library_name: gguf",
            f"license: {f['license']}", "language:", "- en", "pipeline_tag: text-generation",
            "tags:", *[f"- {t}" for t in tags]]
    if f.get("datasets"):
        yaml += ["datasets:", *[f"- {d}" for d in f["datasets"]]]
    yaml.append("---")
    lines = yaml + ["", f"# {f['title']}", "", f["summary"], "",
                    "## Model details", "", "| | |", "|---|---|"]
    lines += [_row(k, v) for k, v in f["details"]]
    lines += ["", "## Uses", "",
              "**Direct use.** Studying how a small language model is trained end to end: its data, its loss "
              "curves, what instruction tuning changes, how evaluation intervals behave at this scale. "
              "Continuing text in the style of its training corpus; answering in the chat format after SFT.", "",
              "**Out of scope.** Anything where the content of the text matters: facts, advice, decisions about "
              "people, or use without a human reading the output. The model has about "
              f"{f['params_text']} parameters and does not know facts or follow instructions' content reliably.", "",
              "## Bias, risks and limitations", ""]
    lines += [f"- {x}" for x in f["limitations"]]
    lines += ["", "## Training details", "", "### Training data", ""]
    lines += [f"- {x}" for x in f["data"]]
    lines += ["", "### Training procedure", "", "| | |", "|---|---|"]
    lines += [_row(k, v) for k, v in f["procedure"]]
    lines += ["", "## Evaluation", ""]
    if f["evaluation"]:
        lines += ["| task (metric, examples) | result (95% CI half-width) |", "|---|---|"]
        lines += [_row(k, v) for k, v in f["evaluation"]]
        lines += ["", "Intervals are 95% confidence intervals over the evaluation examples; a difference between "
                      "two models is resolved only where their intervals do not overlap."]
    else:
        lines.append("No evaluation of this checkpoint was found beside it (run `tinylm eval`).")
    lines += ["", "## Environmental impact", ""]
    lines += [f"- {x}" for x in f["environment"]]
    lines += ["", "## How to use", ""] + f["usage"] + [""]
    return "\n".join(lines)


def facts(run: Run, stage: str = "base", ckpt: Path | None = None, fmt: str | None = "hf",
          extra_scores: dict | None = None, cost: CostAssumptions | None = None) -> dict:
    """Everything the card says about `stage` ("base", "sft", "dpo", ...) of `run`, from its artifacts."""
    st = run.stages.get(stage) if stage != "base" else None
    model = run.model_config()
    info = run.model_info()
    params = info.get("params")
    p, tc = run.prepare or {}, run.train_config()
    corpus = ((run.config or {}).get("data") or {}).get("source") or p.get("source") or "not recorded"
    rows = [r for r in run.metrics if isinstance(r.get("step"), int)]
    last = max(rows, key=lambda r: r["step"]) if rows else {}
    label = run.label(stage)
    hw = run.hardware()
    device = hw.get("gpu") or hw.get("cpu") or "not recorded"
    details = [
        ("model", label), ("architecture", "Llama-style decoder: RMSNorm, SwiGLU, rotary embeddings, no biases"
                           + (", tied embeddings" if model.get("tie_embeddings") else "")),
        ("parameters", _fmt(params)), ("non-embedding parameters", _fmt(info.get("params_non_embedding"))),
        ("layers / width / heads (kv)", f"{model.get('n_layer', '?')} / {model.get('n_embd', '?')} / "
                                        f"{model.get('n_head', '?')} ({model.get('n_kv_head', '?')})"),
        ("context", f"{model.get('seq_len', '?')} tokens"), ("vocabulary", f"{_fmt(model.get('vocab_size'))} (byte-level BPE)"),
        ("stage", STAGE_LABELS.get(stage, stage)), ("developed with", "tinylm (MIT licence)"),
        ("code version", (run.meta or {}).get("code_version", "not recorded")),
    ]
    if ckpt is not None:
        details.append(("checkpoint", str(ckpt)))
    data = [f"Pretraining: `{corpus}`, {_fmt((p.get('train') or {}).get('documents'))} documents, "
            f"{_fmt((p.get('train') or {}).get('bytes'))} bytes, {_fmt((p.get('train') or {}).get('tokens'))} tokens; "
            f"{_fmt((p.get('val') or {}).get('documents'))} documents held out for validation. "
            f"Licence: {LICENCE_NOTES.get(str(corpus), 'see the data directory SOURCES.md')}."]
    datasets = []
    if str(corpus) == "tinystories":
        datasets.append("roneneldan/TinyStories")
    licence = "mit"
    procedure = [("pretraining steps", _fmt(last.get("step"))), ("pretraining tokens", _fmt(last.get("tokens"))),
                 ("batch (tokens per step)", _fmt(tc.get("total_batch_tokens"))),
                 ("optimizer", f"AdamW ({tc.get('beta1', '?')}, {tc.get('beta2', '?')}), weight decay {tc.get('weight_decay', '?')}"),
                 ("learning rate", f"{tc.get('lr', '?')}, {tc.get('schedule', '?')} schedule, {tc.get('warmup_steps', '?')} warmup steps"),
                 ("precision", f"{tc.get('dtype', 'not recorded')} autocast"), ("seed", tc.get("seed", "not recorded")),
                 ("hardware", f"{device}" + (f", {hw.get('torch_threads')} threads" if hw.get("torch_threads") and not hw.get("gpu") else ""))]
    seconds = [("pretraining", last.get("elapsed_s"))]
    stages_done = [run.stages[s] for s in STAGES if s in run.stages]
    upto = stages_done if st is None else stages_done[:stages_done.index(st) + 1]
    if stage == "base":
        upto = []
    for s in upto:
        summ = s.summary or {}
        d = summ.get("data") or {}
        cfg = (s.config or {}).get("config") or {}
        mix = (cfg.get(s.name) or {}).get("mixture") or d.get("mixture")
        procedure.append((f"{STAGE_LABELS.get(s.name, s.name)} steps", _fmt(summ.get("step"))))
        if mix:
            data.append(f"{STAGE_LABELS.get(s.name, s.name)}: mixture `{mix}`, {_fmt(d.get('train_conversations'))} "
                        f"training conversations, {_fmt(d.get('val_conversations'))} held out.")
            if "alpaca" in str(mix):
                licence = "cc-by-nc-4.0"
                datasets.append("tatsu-lab/alpaca")
                data.append(f"Licence: {LICENCE_NOTES['alpaca']}.")
        seconds.append((s.name, summ.get("elapsed_s")))
    ev = st.eval if st is not None else run.eval
    evaluation = _eval_rows(ev, str(ckpt) if ckpt is not None else None)
    if ckpt is None:  # the report's card: the run's own single evaluations of this stage
        for name, b in run.bpb.items():
            if stage == "base" and isinstance(b.get("bits_per_byte"), (int, float)):
                evaluation.append((f"bits per byte, {name}", f"{b['bits_per_byte']:.4f}"))
        ife = run.ifeval.get("base" if stage == "base" else stage)
        if ife and isinstance(ife.get("score"), (int, float)):
            evaluation.append((f"held-out checkable instructions ({ife.get('decoding', '?')})",
                               f"{ife['score']:.3f}" + (f" ± {ife['ci95']:.3f}" if isinstance(ife.get("ci95"), (int, float)) else "")))
    evaluation += list((extra_scores or {}).items())
    env = []
    total = 0.0
    for name, secs in seconds:
        if isinstance(secs, (int, float)):
            c = estimate(secs, hw, cost or CostAssumptions())
            total += c.kwh
            env.append(f"{name}: {secs / 60:.1f} min on {device}; about {c.kwh * 1000:.1f} Wh at {c.watts:g} W ({c.power_basis}).")
    if env:
        env.append(f"Total about {total * 1000:.1f} Wh; at a typical grid intensity of 0.4 kg CO2e per kWh, "
                   f"about {total * 400:.1f} g CO2e. Power is an assumption (not measured); see the report's cost section.")
    else:
        env.append("Training time not recorded.")
    limitations = [
        f"At {_fmt(params)} parameters the model produces fluent-looking phrases without reliable meaning; "
        "it repeats itself, especially under greedy decoding.",
        f"It learned only from `{corpus}`: 19th-century books carry the attitudes, stereotypes and language of their "
        "time, which the model reproduces." if "gutenberg" in str(corpus) else
        f"It learned only from `{corpus}`; its style and knowledge are limited to that text.",
        "Multiple-choice benchmarks are at or near chance at this size; bits per byte is the informative measure.",
        "No safety tuning or preference alignment beyond what the stages listed under training did.",
    ]
    usage = _usage(fmt)
    params_text = f"{params / 1e6:.2f}M" if isinstance(params, (int, float)) else "a few million"
    return {"title": f"{label}: a tinylm model", "license": licence, "datasets": datasets, "fmt": fmt,
            "summary": f"A {params_text}-parameter Llama-style language model trained from scratch with tinylm "
                       f"on `{corpus}`" + ("." if stage == "base" else f", then {', '.join(STAGE_LABELS.get(s.name, s.name) for s in upto)}."),
            "params_text": params_text, "details": details, "data": data, "procedure": procedure,
            "evaluation": evaluation, "environment": env, "limitations": limitations, "usage": usage}


def _usage(fmt: str | None) -> list[str]:
    if fmt == "gguf":
        return ["```bash", "llama-cli -m model.gguf -p 'Once upon a time' -n 100", "```"]
    if fmt == "hf":
        return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                "tok = AutoTokenizer.from_pretrained(PATH); model = AutoModelForCausalLM.from_pretrained(PATH)",
                "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Tell me a story.'}],",
                "                              add_generation_prompt=True, return_tensors='pt')",
                "print(tok.decode(model.generate(ids, max_new_tokens=100)[0]))", "```", "",
                "Chat template (tinylm/chat.py, the one the model was tuned with): `" + _chat_template() + "`"]
    return ["```bash", "tinylm sample --checkpoint RUN --prompt 'Once upon a time'", "tinylm chat --checkpoint RUN/sft",
            "tinylm export --format hf --checkpoint RUN/sft --out RUN-hf   # this card becomes its README.md", "```"]


def _chat_template() -> str:
    from tinylm.chat import jinja_template

    return jinja_template()


def card_for_run(run: Run, stage: str = "base", fmt: str | None = None, cost: CostAssumptions | None = None) -> str:
    return render(facts(run, stage, None, fmt, None, cost))


def run_of_checkpoint(ckpt: Path) -> tuple[Path, str]:
    """(run directory, stage) of a checkpoint directory: runs/x/checkpoints/step_N -> (runs/x, "base"),
    runs/x/sft/checkpoints/step_N -> (runs/x, "sft")."""
    d = Path(ckpt).parent.parent
    if d.name in STAGES:
        return d.parent, d.name
    return d, "base"


def card_for_checkpoint(ckpt, meta: dict | None = None, scores: dict | None = None, fmt: str = "hf") -> str:
    """The card of one checkpoint directory, for an export in format `fmt` ("hf" or "gguf"). Artifacts of
    its run are read from beside it; an imported or moved checkpoint gets the facts its meta.json holds."""
    ckpt = Path(ckpt)
    run_dir, stage = run_of_checkpoint(ckpt)
    run = load_run(run_dir)
    if meta is None:
        try:
            meta = json.loads((ckpt / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
    if not run.meta:
        run.meta = meta
    if stage != "base" and stage not in run.stages:
        stage = "base"
    return render(facts(run, stage, ckpt, fmt, scores))


def card_for_meta(meta: dict, scores: dict | None = None, fmt: str = "hf", name: str = "tinylm model") -> str:
    """The card of a model known only by its checkpoint meta.json (no run directory beside it)."""
    from tinylm.report.artifacts import FileLog

    run = Run(dir=Path(name), name=name, log=FileLog(), meta=meta if isinstance(meta, dict) else {})
    return render(facts(run, "base", None, fmt, scores))

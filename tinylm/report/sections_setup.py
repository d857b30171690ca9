"""Report sections about how the models were made: summary, data, architecture, training, curves.

Each builder takes the report context (runs, figure directory, cost assumptions) and returns a
Section built only from artifacts; a run without the artifact gets a "Not available" note naming
the missing file. Runs given together appear as columns of the same tables and lines of the same
figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.report import figures
from tinylm.report.artifacts import Run
from tinylm.report.cost import CostAssumptions, estimate
from tinylm.report.document import (Bullets, Figure, Missing, Paragraph, Section, Table, fduration,
                                    ffloat, fint, fpct, fsi, num)


@dataclass
class Context:
    runs: list[Run]
    fig_dir: Path
    cost: CostAssumptions = field(default_factory=CostAssumptions)
    data_stats: dict = field(default_factory=dict)  # run name -> data_stats.json (tinylm/report/data_stats.py)
    compute_stats: bool = False  # compute (and cache) statistics that read text, or only read their caches
    published: dict | None = None  # bytes per token of published tokenizers (tinylm/report/comparison.py)
    sft_data: dict = field(default_factory=dict)  # run name -> sft/data_stats.json

    @property
    def trained(self) -> list[Run]:
        return [r for r in self.runs if r.trained]


def rel(path) -> str:
    """A path as the reader should see it: relative to the working directory when possible."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def missing(run: Run, what: str) -> Missing:
    return Missing(f"Not available: no {what} in {rel(run.dir)}.")


# --------------------------------------------------------------------------- derived numbers

def train_rows(run_rows: list[dict]) -> list[dict]:
    return [r for r in run_rows if num(r.get("loss")) is not None]


def last_row(rows: list[dict]) -> dict:
    with_step = [r for r in rows if isinstance(r.get("step"), int)]
    return max(with_step, key=lambda r: r["step"]) if with_step else {}


def val_rows(rows: list[dict], key: str) -> list[dict]:
    return [r for r in rows if num(r.get(key)) is not None]


def median_of(rows: list[dict], key: str):
    vals = [r[key] for r in rows if num(r.get(key)) is not None and r[key] > 0]
    return statistics.median(vals) if vals else None


def pretrain_numbers(run: Run) -> dict:
    """The headline numbers of a pretraining run, each from metrics.jsonl or config.json."""
    rows = run.metrics
    last = last_row(rows)
    vals = val_rows(rows, "val_bpb")
    # an MFU above 100% was computed against a peak measured while the machine was busy (older logs):
    # a measurement error, left out of the median and of the recovered peak
    mfu_rows = [r for r in rows if not (num(r.get("mfu")) is not None and r["mfu"] > 1)]
    info = run.model_info()
    fpt = info.get("flops_per_token")
    tokens = last.get("tokens")
    fpt, tokens = num(fpt), num(tokens)
    out = {
        "params": num(info.get("params")), "params_non_embedding": num(info.get("params_non_embedding")),
        "flops_per_token": fpt, "steps": num(last.get("step")), "tokens": tokens, "elapsed_s": num(last.get("elapsed_s")),
        "final_loss": num(last.get("loss")), "val_bpb_first": vals[0]["val_bpb"] if vals else None,
        "val_bpb": vals[-1]["val_bpb"] if vals else None, "val_bpb_step": num(vals[-1].get("step")) if vals else None,
        "tok_per_s": median_of(rows, "tok_per_s"), "mfu": median_of(mfu_rows, "mfu"),
        "mfu_impossible": len(rows) - len(mfu_rows),
        "total_flops": fpt * tokens if fpt and tokens else None,
    }
    peaks = [r["tok_per_s"] * fpt / r["mfu"] for r in mfu_rows
             if fpt and num(r.get("mfu")) and r["mfu"] > 0 and num(r.get("tok_per_s"))]
    out["peak_flops"] = statistics.median(peaks) if peaks else None
    return out


def hardware_text(run: Run, short: bool = False) -> str:
    hw = run.hardware()
    if not hw:
        return "not recorded"
    dev = hw.get("gpu") or hw.get("cpu") or hw.get("device") or "unknown"
    threads = hw.get("torch_threads") or hw.get("threads")
    extra = f", {threads} threads" if threads and not hw.get("gpu") else ""
    return f"{dev}{extra}, torch {hw['torch']}" if hw.get("torch") and not short else f"{dev}{extra}"


def corpus_of(run: Run) -> str:
    return ((run.config or {}).get("data") or {}).get("source") or (run.prepare or {}).get("source") or "unknown corpus"


# --------------------------------------------------------------------------- sections

def summary_table(ctx: Context, headline_evals: list[tuple[str, str]]) -> Table | None:
    """Model size, tokens, wall-clock, hardware and headline scores, one column per run."""
    runs = ctx.runs
    if not runs:
        return None
    rows: list[list[str]] = []

    def add(label, fn):
        cells = [fn(r) for r in runs]
        if any(c not in ("", "n/a") for c in cells):
            rows.append([label] + [c or "n/a" for c in cells])

    nums = {r.name: pretrain_numbers(r) for r in runs}
    add("parameters", lambda r: fint(num(r.model_info().get("params"))) if r.model_config() else "")
    add("non-embedding parameters", lambda r: fint(num(r.model_info().get("params_non_embedding"))) if r.model_config() else "")
    add("pretraining tokens", lambda r: fint(nums[r.name]["tokens"]) if r.trained else "")
    add("pretraining wall-clock", lambda r: fduration(nums[r.name]["elapsed_s"]) if r.trained else "")
    add("hardware", lambda r: hardware_text(r, short=True) if r.trained else "")
    add("final validation bits/byte", lambda r: ffloat(nums[r.name]["val_bpb"], 4) if r.trained else "")
    texts = sorted({t for r in runs for t in r.bpb})
    for t in texts:
        add(f"bits/byte on {t}", lambda r, t=t: ffloat(r.bpb[t]["bits_per_byte"], 4) if t in r.bpb else "")
    for name in ("base", "sft"):
        add(f"instruction following, {'SFT' if name == 'sft' else name} (greedy)",
            lambda r, n=name: ffloat(r.ifeval[n]["score"]) if n in r.ifeval else "")
    for label, task in headline_evals:
        def cell(r, task=task):
            ev = r.eval or {}
            t = (ev.get("tasks") or {}).get(task) or {}
            v = ((t.get("metrics") or {}).get(t.get("primary")) or {}).get("value")
            return ffloat(v) if isinstance(v, (int, float)) else ""
        add(label, cell)
    return Table(["", *[r.name for r in runs]], rows, caption="Summary.",
                 source="config.json, metrics.jsonl, meta.json, bpb-*.json, ifeval-*.json, eval/eval.json of each run")


LLAMA_CHOICES = [
    "Pre-normalisation with RMSNorm (Zhang & Sennrich 2019): normalising each block's input keeps deep "
    "residual streams stable, and RMSNorm drops LayerNorm's mean and bias at no loss.",
    "SwiGLU feed-forward with hidden size 8/3 d (Shazeer 2020): a gated MLP that is better per FLOP "
    "than ReLU/GELU at the same parameter count.",
    "Rotary position embeddings (Su et al. 2021): relative positions enter attention directly, with no "
    "learned position table.",
    "No biases in linear layers: fewer parameters, no measurable loss (as in PaLM and Llama).",
]


def optimizer_text(t: dict) -> str:
    """The optimizer as the run's saved train config says it ran (AdamW alone, or Muon for the block
    matrices with AdamW for the rest)."""
    adamw = f"AdamW, beta=({t.get('beta1')}, {t.get('beta2')}), eps={t.get('eps')}"
    if t.get("optimizer") == "muon":
        return (f"Muon (momentum {t.get('muon_momentum')}) on the block matrices; {adamw} on embeddings, "
                "output head and norms")
    return adamw


def schedule_text(t: dict) -> str:
    """The learning-rate schedule with its own parameters: warmup, then cosine to min x peak, or (WSD)
    constant until the last decay_frac of steps and a linear decay to min x peak."""
    warm, low = t.get("warmup_steps"), t.get("min_lr_frac")
    if t.get("schedule") == "wsd":
        return (f"warmup-stable-decay: {warm} warmup steps, constant, then linear decay over the last "
                f"{fpct(t.get('decay_frac')) if isinstance(t.get('decay_frac'), (int, float)) else '?'} of steps "
                f"to {low} x peak")
    return f"{t.get('schedule')}, {warm} warmup steps, min {low} x peak"


def architecture_section(ctx: Context) -> Section:
    s = Section("Architecture")
    runs = [r for r in ctx.runs if r.model_config()]
    for r in ctx.runs:
        if not r.model_config():
            s.add(missing(r, "config.json (model hyperparameters)"))
    if not runs:
        return s
    keys = ["n_layer", "n_embd", "n_head", "n_kv_head", "head_dim", "ffn_hidden", "seq_len", "vocab_size",
            "rope_theta", "norm_eps", "tie_embeddings"]
    rows = []
    for k in keys:
        cells = []
        for r in runs:
            m = r.model_config()
            if k == "head_dim":
                v = m.get("n_embd", 0) // max(m.get("n_head", 1), 1)
            elif k == "ffn_hidden":
                v = m.get("ffn_hidden") or _swiglu_hidden(m)
            else:
                v = m.get(k)
            cells.append(fint(v) if isinstance(v, int) and not isinstance(v, bool) else str(v))
        rows.append([k, *cells])
    for label, key, fmt in (("parameters", "params", fint), ("non-embedding parameters", "params_non_embedding", fint),
                            ("training FLOPs per token", "flops_per_token", fint)):
        rows.append([label, *[fmt(r.model_info().get(key)) for r in runs]])
    src = ", ".join(rel(r.dir / "config.json") if r.config else rel(r.meta_path) for r in runs)
    if len(runs) == 1:  # one model: two column pairs, half the height
        half = (len(rows) + 1) // 2
        folded = [a + (rows[half + i] if half + i < len(rows) else ["", ""]) for i, a in enumerate(rows[:half])]
        s.add(Table(["hyperparameter", runs[0].name, "hyperparameter", runs[0].name], folded, align="lrlr",
                    caption=f"Model hyperparameters of {runs[0].name}.", source=src))
    else:
        s.add(Table(["hyperparameter", *[r.name for r in runs]], rows, caption="Model hyperparameters.", source=src))
    s.add(Paragraph("FLOPs per token count a training step (forward and backward): 6 x the matmul parameters "
                    "(output head included) + 12 x layers x d x context for attention, the PaLM convention."))
    choices = list(LLAMA_CHOICES)
    m = runs[0].model_config()
    if m.get("tie_embeddings"):
        emb = m.get("vocab_size", 0) * m.get("n_embd", 0)
        params = runs[0].model_info().get("params")
        ok = isinstance(params, int) and isinstance(emb, int) and params > 0
        share = f" ({fint(emb)} parameters, {fpct(emb / params)} of {runs[0].name})" if ok else ""
        choices.append(f"Tied input and output embeddings{share}: at this size the embedding is a large part of "
                       "the model, and tying it saves that much again (a GPT-2 choice; Llama unties at scale).")
    if m.get("n_kv_head") and m.get("n_head") and m["n_kv_head"] < m["n_head"]:
        choices.append("Grouped-query attention (Ainslie et al. 2023): fewer key/value heads shrink the KV "
                       "cache for generation at little quality cost.")
    s.add(Paragraph("The Llama-style choices and why each was made:"), Bullets(choices))
    return s


def _swiglu_hidden(m: dict) -> int:
    h = int(8 * m.get("n_embd", 0) / 3)
    mult = m.get("multiple_of", 32) or 1
    return mult * ((h + mult - 1) // mult)


def load_note(r: Run) -> str:
    """The load average behind a training time, when the run recorded one (metrics rows or meta.json
    "loadavg"), flagged when above the threads used; otherwise said to be unrecorded."""
    loads = [x["loadavg"][0] for x in r.metrics if isinstance(x.get("loadavg"), list) and x["loadavg"]
             and isinstance(x["loadavg"][0], (int, float))]
    meta = (r.meta or {}).get("loadavg")
    if not loads and isinstance(meta, list) and meta and isinstance(meta[0], (int, float)):
        loads = [meta[0]]
    if not loads:
        return " (load average not recorded)"
    hw = r.hardware()
    threads = hw.get("torch_threads") or hw.get("cpu_count") or 1
    peak = max(loads)
    flag = f"; UNDER LOAD: above the {threads} threads used, so slower than a quiet machine" if peak > threads else ""
    return f" (load average up to {peak:.1f}{flag})"


def training_section(ctx: Context) -> Section:
    s = Section("Training details")
    runs = [r for r in ctx.runs if r.config]
    for r in ctx.runs:
        if not r.config and r.trained:
            s.add(missing(r, "config.json"))
    if not runs:
        s.add(Missing("Not available: no run with a config.json (the models given were not pretrained here)."))
        return s
    rows = []

    def add(label, fn):
        rows.append([label, *[fn(r) for r in runs]])
    tc = {r.name: r.train_config() for r in runs}
    num = {r.name: pretrain_numbers(r) for r in runs}
    seq = {r.name: r.model_config().get("seq_len", 0) for r in runs}
    add("optimizer", lambda r: optimizer_text(tc[r.name]))
    add("weight decay", lambda r: f"{tc[r.name].get('weight_decay')} (not on norms, embeddings)")
    add("peak learning rate", lambda r: (f"{tc[r.name].get('muon_lr')} (Muon), {tc[r.name].get('lr')} (AdamW)"
                                         if tc[r.name].get("optimizer") == "muon" else f"{tc[r.name].get('lr')}"))
    add("schedule", lambda r: schedule_text(tc[r.name]))
    add("gradient clipping", lambda r: f"{tc[r.name].get('grad_clip')}")
    add("batch (tokens per step)", lambda r: fint(tc[r.name].get("total_batch_tokens")))
    add("micro-batch", lambda r: f"{tc[r.name].get('batch_size')} x {seq[r.name]} tokens")
    add("steps", lambda r: fint(num[r.name]["steps"]))
    add("tokens", lambda r: fint(num[r.name]["tokens"]))
    add("precision", lambda r: f"{tc[r.name].get('dtype')} autocast" + (", torch.compile" if tc[r.name].get("compile") else ""))
    add("hardware", hardware_text)
    add("code version", lambda r: str((r.meta or {}).get("code_version", "not recorded")))
    add("wall-clock", lambda r: fduration(num[r.name]["elapsed_s"]) + load_note(r))
    add("median tokens/s", lambda r: fint(num[r.name]["tok_per_s"]))
    add("median MFU", lambda r: fpct(num[r.name]["mfu"]) + (f" ({num[r.name]['mfu_impossible']} log lines above 100% "
                                                             "left out: peak measured while busy)"
                                                             if num[r.name]["mfu_impossible"] else ""))
    add("peak FLOP/s behind MFU", lambda r: f"{fsi(num[r.name]['peak_flops'])} FLOP/s" if num[r.name]["peak_flops"] else "n/a")
    add("total training FLOPs", lambda r: f"{fsi(num[r.name]['total_flops'])} FLOP" if num[r.name]["total_flops"] else "n/a")
    add("seed", lambda r: str(tc[r.name].get("seed")))
    s.add(Table(["", *[r.name for r in runs]], rows, caption="Pretraining setup and throughput.", align="l" * (1 + len(runs)),
                source="config.json (setup), metrics.jsonl (steps, tokens, wall-clock, medians over log lines), "
                       "meta.json (hardware, code version)"))
    s.add(Paragraph("The MFU peak is recovered from the log itself (tokens/s x FLOPs per token / MFU): on a CPU "
                    "it is a bf16 matmul ceiling measured when training started, on a known GPU its datasheet peak."))
    s.subsections.append(cost_section(ctx, runs))
    return s


def cost_section(ctx: Context, runs: list[Run]) -> Section:
    s = Section("Estimated cost")
    rows, bases = [], []
    for r in runs:
        stages = [("pretraining", pretrain_numbers(r)["elapsed_s"])]
        for st in r.stages.values():
            secs = (st.summary or {}).get("elapsed_s") or last_row(st.metrics).get("elapsed_s")
            stages.append((st.name, secs))
        for stage, secs in stages:
            if not isinstance(secs, (int, float)):
                continue
            c = estimate(secs, r.hardware(), ctx.cost)
            rows.append([r.name, stage, fduration(secs), f"{c.watts:g}", f"{c.kwh * 1000:.1f}",
                         f"{c.usd_energy:.5f}", f"{c.usd_cloud:.4f}"])
            bases.append((c.power_basis, c.price_basis))
    if not rows:
        return s.add(Missing("Not available: no wall-clock in metrics.jsonl or summary.json."))
    s.add(Table(["run", "stage", "wall-clock", "power (W)", "energy (Wh)", "electricity ($)", "cloud ($)"], rows,
                caption="Estimated energy and cost of training.", align="llrrrrr", source="wall-clock: metrics.jsonl / summary.json; the rest assumed"))
    assumptions = sorted(set(bases))
    s.add(Paragraph("Assumptions (nothing here is measured except the wall-clock): power = "
                    + "; ".join(a for a, _ in assumptions)
                    + f"; electricity ${ctx.cost.usd_per_kwh:g} per kWh; cloud price = "
                    + "; ".join(b for _, b in assumptions)
                    + ". Idle power of the rest of the machine, cooling and evaluation time are not included. "
                      "`tinylm report --watts W --usd_per_kwh P --usd_per_hour H` changes the assumptions."))
    return s


def validation_note(r: Run) -> str:
    """Why the run has two validation numbers for the same held-out text, and how far apart they are."""
    n = pretrain_numbers(r)
    tc = r.train_config()
    seq = r.model_config().get("seq_len", "?")
    windows = (tc.get("eval_batches") or 0) * (tc.get("batch_size") or 0)
    p = (r.prepare or {}).get("val") or {}
    corpus = corpus_of(r)
    key = corpus if corpus in r.bpb else next(iter(r.bpb), None)
    text = (f"Two validation figures describe {r.name}. The curve's in-loop value (final {ffloat(n['val_bpb'], 4)}) scores "
            f"the first {fint(windows)} windows of {seq} tokens of the held-out shard"
            + (f" ({fpct(windows * seq / p['tokens'])} of its {fint(p.get('tokens'))} tokens)"
               if isinstance(p.get("tokens"), int) and p["tokens"] and isinstance(seq, int) else "")
            + ", the same windows at every evaluation, each window read from its first token, so its first tokens "
              "have little context; it tracks progress cheaply.")
    if key:
        b = r.bpb[key]
        text += (f" The rolling figure ({ffloat(b['bits_per_byte'], 4)} on {key}, bpb-{key}.json) scores every byte of "
                 f"the text ({fint(b.get('bytes'))} bytes) with windows that overlap so that every token after the first "
                 f"window sees at least {b.get('context_len', 'half a context')} tokens of context; it is the number "
                 "to compare across models.")
        if isinstance(n["val_bpb"], (int, float)):
            text += f" The difference ({ffloat(n['val_bpb'] - b['bits_per_byte'], 4)}) is the cost of the short contexts and of the sample."
    return text


def curves_section(ctx: Context) -> Section:
    s = Section("Loss curves")
    runs = [r for r in ctx.runs if train_rows(r.metrics)]
    for r in ctx.runs:
        if r.trained and not train_rows(r.metrics):
            s.add(missing(r, "metrics.jsonl with training losses"))
    if not runs:
        return s.add(Missing("Not available: no metrics.jsonl with training losses in any run."))
    data = {r.name: r.metrics for r in runs}
    src = ", ".join(rel(r.dir / "metrics.jsonl") for r in runs)
    f = figures.loss_curves(data, ctx.fig_dir / "loss_curves.png")
    if f:
        s.add(Figure(f, "Training loss (mean over each logging window) and validation bits per byte, against "
                        "tokens seen and against wall-clock; right: the learning-rate schedule and the training "
                        "throughput of each logging window.", src))
    for r in runs:
        s.add(Paragraph(validation_note(r)))
    for r in runs:
        n = pretrain_numbers(r)
        text = (f"{r.name}: training loss {ffloat(n['final_loss'], 3)} at step {fint(n['steps'])}; validation "
                f"bits per byte {ffloat(n['val_bpb_first'], 4)} at step 0 and {ffloat(n['val_bpb'], 4)} at step "
                f"{fint(n['val_bpb_step'])}.")
        tps = [x["tok_per_s"] for x in train_rows(r.metrics) if isinstance(x.get("tok_per_s"), (int, float))]
        if tps and n["tok_per_s"] and min(tps) < 0.7 * n["tok_per_s"]:
            worst = min(train_rows(r.metrics), key=lambda x: x.get("tok_per_s") or float("inf"))
            text += (f" Throughput dipped to {fint(worst['tok_per_s'])} tokens/s at step {fint(worst.get('step'))} "
                     f"(median {fint(n['tok_per_s'])}): the machine was shared or throttled then.")
        s.add(Paragraph(text))
    return s

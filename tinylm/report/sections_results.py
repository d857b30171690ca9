"""Report sections about what the models can do: instruction tuning, alignment, evaluation.

Instruction tuning reads `sft/` (config.json, metrics.jsonl, summary.json) and `ifeval-*.json`.
Alignment reads `rm/`, `dpo/`, `ppo/` and `grpo/` laid out like `sft/`: config.json, metrics.jsonl
(any of loss, val_loss, accuracy, val_accuracy, reward, reward_margin, chosen_reward,
rejected_reward, kl, entropy ... per line, plotted against the step when present) and
summary.json (its scalar fields become a table). Evaluation reads `eval/eval.json` (schema
tinylm.eval/1) of the run and of each stage, and `bpb-*.json`.
"""

from __future__ import annotations

from tinylm.report import figures
from tinylm.report.artifacts import Run, Stage
from tinylm.report.document import Bullets, Figure, Missing, Paragraph, Section, Table, fci, ffloat, fint, fpct, slug
from tinylm.report.sections_setup import Context, last_row, missing, rel

ALIGN_STAGES = ("rm", "dpo", "ppo", "grpo")
BOOKKEEPING = {"step", "tokens", "loss_tokens", "lr", "grad_norm", "tok_per_s", "mfu", "elapsed_s"}
CURVE_ORDER = ("loss", "val_loss", "accuracy", "val_accuracy", "reward", "reward_margin", "chosen_reward",
               "rejected_reward", "kl", "val_kl", "entropy")
TASK_ORDER = ("bpb-tinystories", "bpb-gutenberg-children", "bpb-gutenberg-general", "wikitext", "lambada",
              "mmlu", "mmlu-5shot", "mmlu-cloze", "blimp", "hellaswag", "arc-easy", "arc-challenge", "piqa",
              "winogrande", "openbookqa", "copa", "ifeval", "ifeval-sampled")


# --------------------------------------------------------------------------- instruction tuning

def ifeval_table(run: Run) -> Table | None:
    if not run.ifeval:
        return None
    kinds = sorted({k for d in run.ifeval.values() for k in (d.get("by_kind") or {})})
    rows = []
    for name, d in run.ifeval.items():
        by = d.get("by_kind") or {}
        rows.append([name, str(d.get("decoding", "")), fci(d.get("score"), d.get("ci95")),
                     ffloat(d.get("perfect_rate"), 3), fint(d.get("n_responses")),
                     *[ffloat((by.get(k) or {}).get("score"), 2) for k in kinds]])
    return Table(["model", "decoding", "score ± 95% CI", "all met", "n", *kinds], rows, align="ll" + "r" * (3 + len(kinds)),
                 caption=f"Constraint satisfaction on held-out checkable instructions ({run.name}); "
                         "per-kind columns are mean scores.",
                 source=", ".join(rel(run.dir / f"ifeval-{n}.json") for n in run.ifeval))


def ifeval_figure(ctx: Context, run: Run):
    greedy = {n: d for n, d in run.ifeval.items() if not n.endswith("sampled")}
    if len(greedy) < 1:
        return None
    kinds = sorted({k for d in greedy.values() for k in (d.get("by_kind") or {})})
    bars = {n: [((d.get("by_kind") or {}).get(k) or {}).get("score") for k in kinds] + [d.get("score")]
            for n, d in greedy.items()}
    errs = {n: [((d.get("by_kind") or {}).get(k) or {}).get("ci95") for k in kinds] + [d.get("ci95")]
            for n, d in greedy.items()}
    f = figures.grouped_bars(kinds + ["all"], bars, ctx.fig_dir / f"ifeval_{slug(run.name)}.png",
                             "constraint satisfaction", errs)
    return Figure(f, f"Constraint satisfaction by instruction kind, greedy decoding, with 95% CIs ({run.name}).",
                  ", ".join(rel(run.dir / f"ifeval-{n}.json") for n in greedy)) if f else None


def sft_section(ctx: Context) -> Section:
    s = Section("Instruction tuning")
    for run in ctx.trained:
        st = run.stages.get("sft")
        if st is None:
            s.add(missing(run, "sft/ directory"))
            t = ifeval_table(run)
            if t:
                s.add(t)
            continue
        cfg = (st.config or {}).get("config") or {}
        sft, train = cfg.get("sft") or {}, cfg.get("train") or {}
        summ = st.summary or {}
        data, pad = summ.get("data") or {}, summ.get("padding") or {}
        last = last_row(st.metrics)
        vals = [r for r in st.metrics if isinstance(r.get("val_loss"), (int, float))]
        rows = [
            ["starting checkpoint", f"`{train.get('init_from') or sft.get('checkpoint', '?')}`"],
            ["task mixture", f"`{sft.get('mixture', '?')}`"],
            ["training conversations", f"{fint(data.get('train_conversations'))} "
                                       f"({fint(data.get('train_dropped_too_long'))} longer than the context dropped)"],
            ["held-out conversations", fint(data.get("val_conversations"))],
            ["steps x batch", f"{fint(summ.get('step') or last.get('step'))} x {train.get('batch_size', '?')} conversations"],
            ["learning rate", f"{train.get('lr')}, {train.get('schedule')}, {train.get('warmup_steps')} warmup steps"],
            ["positions computed", fint(pad.get("computed_positions") or last.get("tokens"))],
            ["padding", fpct(pad.get("padding_fraction"))],
            ["wall-clock", f"{ffloat((summ.get('elapsed_s') or last.get('elapsed_s') or 0) / 60, 1)} min"],
        ]
        if last.get("loss_tokens") and last.get("tokens"):
            rows.append(["positions with loss (assistant tokens)",
                         f"{fint(last['loss_tokens'])} ({fpct(last['loss_tokens'] / last['tokens'])})"])
        if vals:
            rows.append(["held-out assistant-token loss", f"{ffloat(vals[0]['val_loss'], 3)} at step {vals[0].get('step')} -> "
                                                          f"{ffloat(vals[-1]['val_loss'], 3)} at step {vals[-1].get('step')}"])
        s.add(Paragraph(f"{run.name} is instruction-tuned with the same training loop, starting from the pretrained "
                        "weights. Conversations are rendered with the chat template "
                        "`<|endoftext|> [<|system|> text <|end|>] <|user|> text <|end|> <|assistant|> text <|end|>` "
                        "and padded (not packed, so no conversation attends to another). The loss is masked: it "
                        "counts only the assistant's tokens and the `<|end|>` that closes them, never the prompt."),
              Table(["", "value"], rows, caption=f"Instruction tuning of {run.name}.", align="ll",
                    source=f"{rel(st.dir / 'config.json')}, {rel(st.dir / 'summary.json')}, {rel(st.dir / 'metrics.jsonl')}"))
        f = figures.stage_curves(st.metrics, ["loss", "val_loss"], ctx.fig_dir / f"sft_curves_{slug(run.name)}.png", overlay=True)
        if f:
            s.add(Figure(f, "Instruction tuning: training loss and held-out loss on assistant tokens.",
                         rel(st.dir / "metrics.jsonl")))
        t = ifeval_table(run)
        if t:
            s.add(Paragraph("Before and after: the base model is prompted with the same chat template it never saw "
                            "in pretraining; each response is scored in [0, 1] by the constraints of its instruction."),
                  t)
            fig = ifeval_figure(ctx, run)
            if fig:
                s.add(fig)
        else:
            s.add(missing(run, "ifeval-*.json"))
    if not ctx.trained:
        s.add(Missing("Not available: no pretraining run among the directories given."))
    return s


# --------------------------------------------------------------------------- alignment

def _scalars(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out += _scalars(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) and not isinstance(v, list):
            out.append((prefix + k, v))
    return out


def _fmt_scalar(v) -> str:
    if isinstance(v, bool) or isinstance(v, str):
        return f"`{v}`" if isinstance(v, str) and v else str(v)
    if isinstance(v, int):
        return fint(v)
    return ffloat(v, 4) if abs(v) < 1000 else fint(v)


def stage_subsection(ctx: Context, run: Run, st: Stage) -> Section:
    sub = Section(f"{st.name.upper()} ({run.name})")
    cfg = (st.config or {}).get("config") or {}
    stage_cfg = cfg.get(st.name) or {}
    rows = [[k, _fmt_scalar(v)] for k, v in _scalars({k: v for k, v in stage_cfg.items() if k != "train"})]
    train = cfg.get("train") or {}
    rows += [[f"train.{k}", _fmt_scalar(train[k])] for k in ("lr", "max_steps", "batch_size", "init_from") if k in train]
    if rows:
        sub.add(Table(["setting", "value"], rows, caption=f"{st.name} configuration.", source=rel(st.dir / "config.json"), align="ll"))
    if st.summary:
        srows = [[k, _fmt_scalar(v)] for k, v in _scalars(st.summary)]
        sub.add(Table(["result", "value"], srows, caption=f"{st.name} results.", source=rel(st.dir / "summary.json"), align="ll"))
    keys = sorted({k for r in st.metrics for k, v in r.items() if isinstance(v, (int, float)) and k not in BOOKKEEPING},
                  key=lambda k: (CURVE_ORDER.index(k) if k in CURVE_ORDER else len(CURVE_ORDER), k))[:9]
    f = figures.stage_curves(st.metrics, keys, ctx.fig_dir / f"{slug(st.name)}_curves_{slug(run.name)}.png")
    if f:
        sub.add(Figure(f, f"{st.name}: {', '.join(k for k in keys if figures.series(st.metrics, 'step', k)[0])} "
                          "against the step.", rel(st.dir / "metrics.jsonl")))
    last = last_row(st.metrics)
    acc = next(((k, v) for k in ("val_accuracy", "accuracy") for v in [
        (st.summary or {}).get(k, last.get(k))] if isinstance(v, (int, float))), None)
    if acc:
        sub.add(Paragraph(f"Final {acc[0].replace('_', ' ')}: {ffloat(acc[1], 3)} (chance 0.5 for a pairwise preference)."))
    if not (rows or st.summary or st.metrics):
        sub.add(Missing(f"Not available: {rel(st.dir)} holds none of config.json, summary.json, metrics.jsonl."))
    return sub


def alignment_section(ctx: Context) -> Section:
    s = Section("Alignment")
    for run in ctx.trained:
        present = [run.stages[n] for n in ALIGN_STAGES if n in run.stages]
        if not present:
            s.add(missing(run, "rm/, dpo/, ppo/ or grpo/ directory"))
        for st in present:
            s.subsections.append(stage_subsection(ctx, run, st))
        after = [n for n in run.ifeval if any(n.startswith(a) for a in ALIGN_STAGES)]
        if after:
            s.add(Paragraph(f"Before/after constraint satisfaction of the aligned models is in the instruction-tuning "
                            f"table ({', '.join(after)})."))
    if not ctx.trained:
        s.add(Missing("Not available: no pretraining run among the directories given."))
    return s


# --------------------------------------------------------------------------- evaluation

def _half_ci(m: dict):
    ci = m.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return (ci[1] - ci[0]) / 2
    se = m.get("stderr")
    return 1.96 * se if isinstance(se, (int, float)) else None


def fmetric(v, half=None) -> str:
    if not isinstance(v, (int, float)):
        return "n/a"
    digits = 3 if abs(v) < 10 else 1 if abs(v) < 1000 else 0
    return fci(v, half, digits)


def eval_models(ctx: Context) -> list[tuple[str, dict, object]]:
    out = []
    for r in ctx.runs:
        out += r.evals()
    return out


def primary(task: dict) -> tuple[str, dict]:
    metrics = task.get("metrics") or {}
    name = task.get("primary") or next(iter(metrics), "")
    m = metrics.get(name)
    return name, m if isinstance(m, dict) else {}


def eval_table(models) -> Table:
    names = sorted({t for _, ev, _ in models for t, x in (ev.get("tasks") or {}).items()
                    if not isinstance(x, dict) or x.get("primary", True)},  # generation-only tasks have no score
                   key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))
    rows = []
    for t in names:
        tasks = [(ev.get("tasks") or {}).get(t) for _, ev, _ in models]
        first = next(x for x in tasks if isinstance(x, dict))
        metric, _ = primary(first)
        arrow = {True: " ↑", False: " ↓"}.get(first.get("higher_is_better"), "")
        chance = first.get("chance")
        cells = []
        for x in tasks:
            if not isinstance(x, dict):
                cells.append("")
                continue
            _, m = primary(x)
            cells.append(fmetric(m.get("value"), _half_ci(m)))
        rows.append([t, metric + arrow, ffloat(chance, 3) if isinstance(chance, (int, float)) else "",
                     fint(first.get("n")), *cells])
    return Table(["task", "metric", "chance", "n", *[label for label, _, _ in models]], rows, align="llrr" + "r" * len(models),
                 caption="Evaluation results: primary metric with 95% CI half-width; n = examples of the first model.",
                 source=", ".join(rel(p) for _, _, p in models))


def eval_figure(ctx: Context, models) -> Figure | None:
    """Accuracy-like tasks (those with a chance level) side by side, with CIs and chance ticks."""
    tasks = [t for t in sorted({t for _, ev, _ in models for t in (ev.get("tasks") or {})},
                               key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))
             if any(isinstance(((ev.get("tasks") or {}).get(t) or {}).get("chance"), (int, float)) for _, ev, _ in models)]
    if not tasks:
        return None
    bars, errs, chance = {}, {}, []
    for t in tasks:
        chance.append(next(((ev.get("tasks") or {}).get(t) or {}).get("chance") for _, ev, _ in models
                           if ((ev.get("tasks") or {}).get(t) or {}).get("chance") is not None))
    for label, ev, _ in models:
        ms = [primary((ev.get("tasks") or {}).get(t) or {})[1] for t in tasks]
        bars[label] = [m.get("value") for m in ms]
        errs[label] = [_half_ci(m) for m in ms]
    f = figures.grouped_bars(tasks, bars, ctx.fig_dir / "eval_tasks.png", "primary metric", errs, chance=chance)
    return Figure(f, "Tasks with a chance level: primary metric with 95% CIs; black ticks mark chance.",
                  "the eval.json files of the table above") if f else None


def eval_reading(models) -> list[str]:
    """Plain-language findings that follow from the numbers: above chance or not, clear differences."""
    out = []
    for label, ev, _ in models:
        above, at = [], []
        for t, x in (ev.get("tasks") or {}).items():
            _, m = primary(x)
            v, h, c = m.get("value"), _half_ci(m), x.get("chance")
            if not all(isinstance(a, (int, float)) for a in (v, c)) or h is None:
                continue
            better = v - h > c if x.get("higher_is_better", True) else v + h < c
            (above if better else at).append(t)
        if above or at:
            out.append(f"{label}: above chance (95% CI excludes it) on {', '.join(sorted(above)) or 'no task'}; "
                       f"indistinguishable from chance on {', '.join(sorted(at)) or 'no task'}.")
    if len(models) >= 2:
        (la, a, _), (lb, b, _) = models[0], models[1]
        wins = {la: [], lb: []}
        for t in set(a.get("tasks") or {}) & set(b.get("tasks") or {}):
            (_, ma), (_, mb) = primary(a["tasks"][t]), primary(b["tasks"][t])
            va, vb, ha, hb = ma.get("value"), mb.get("value"), _half_ci(ma), _half_ci(mb)
            if not all(isinstance(v, (int, float)) for v in (va, vb, ha, hb)):
                continue
            if abs(va - vb) > ha + hb:  # non-overlapping CIs: a clear difference
                hib = a["tasks"][t].get("higher_is_better", True)
                wins[la if (va > vb) == hib else lb].append(t)
        for who, ts in wins.items():
            if ts:
                out.append(f"{who} is clearly better (non-overlapping 95% CIs) on {', '.join(sorted(ts))}.")
        out.append(f"Differences on the other shared tasks between {la} and {lb} are within the CIs.")
    return out


def bpb_table(ctx: Context) -> Table | None:
    runs = [r for r in ctx.runs if r.bpb]
    if not runs:
        return None
    texts = sorted({t for r in runs for t in r.bpb})
    rows = []
    for t in texts:
        cells = []
        for r in runs:
            d = r.bpb.get(t)
            cells.append(ffloat(d["bits_per_byte"], 4) if d else "")
        first = next(r.bpb[t] for r in runs if t in r.bpb)
        rows.append([t, fint(first.get("bytes")), *cells])
    return Table(["text", "bytes", *[r.name for r in runs]], rows,
                 caption="Bits per byte (lower is better) with rolling windows, on each model's own tokenizer.",
                 source=", ".join(rel(r.dir / f"bpb-{t}.json") for r in runs for t in r.bpb))


def bpb_reading(ctx: Context) -> list[str]:
    runs = [r for r in ctx.runs if r.bpb]
    out = []
    for t in sorted({t for r in runs for t in r.bpb}):
        have = sorted((r.bpb[t]["bits_per_byte"], r.name) for r in runs if t in r.bpb)
        if len(have) >= 2:
            out.append(f"On {t}, {have[0][1]} has the lowest bits per byte ({ffloat(have[0][0], 4)} vs "
                       + ", ".join(f"{ffloat(v, 4)} for {n}" for v, n in have[1:]) + ").")
    return out


def evaluation_section(ctx: Context) -> Section:
    s = Section("Evaluation")
    t = bpb_table(ctx)
    if t:
        s.add(Paragraph("Bits per byte normalises the loss by the bytes of text, so models with different "
                        "tokenizers compare directly."), t)
        reading = bpb_reading(ctx)
        if reading:
            s.add(Bullets(reading))
    models = eval_models(ctx)
    for r in ctx.runs:
        if r.trained and not r.eval:
            s.add(missing(r, "eval/eval.json (written by `tinylm eval`)"))
    if not models:
        if not t:
            s.add(Missing("Not available: no bpb-*.json or eval/eval.json in any run."))
        return s
    s.add(eval_table(models))
    f = eval_figure(ctx, models)
    if f:
        s.add(f)
    mc = [label for label, ev, _ in models
          if ev.get("limit") or any(isinstance(t, dict) and t.get("limit") for t in (ev.get("tasks") or {}).values())]
    if mc:
        s.add(Paragraph(f"Evaluated on a subset (`--limit`) for {', '.join(mc)}: CIs are wider than on the full sets."))
    proto = {t: x.get("protocol") for _, ev, _ in models for t, x in (ev.get("tasks") or {}).items() if x.get("protocol")}
    if proto:
        s.add(Paragraph("Protocols:"), Bullets([f"{t}: {p}" for t, p in sorted(proto.items())]))
    problems = [f"{label} {t}: {x.get('truncated', 0)} truncated, {x.get('malformed', 0)} malformed"
                for label, ev, _ in models for t, x in (ev.get("tasks") or {}).items()
                if (x.get("truncated") or 0) + (x.get("malformed") or 0) > 0]
    if problems:
        s.add(Paragraph("Examples that did not fit the context or could not be scored:"), Bullets(problems))
    reading = eval_reading(models)
    if reading:
        s.add(Paragraph("What the numbers say:"), Bullets(reading))
    return s

"""Assemble the report: read the runs, build the document, write report.md / .html / .tex / .pdf.

    write_report(["results/gc-1m", "results/stories260K"], out="/tmp/report")

Section order follows the Llama papers: data, architecture, training, curves, instruction tuning,
alignment, evaluation, samples, scaling, limitations and reproducibility. The abstract is written
from the same numbers the tables show.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from tinylm.report.artifacts import FileLog, load_run, read_sweeps
from tinylm.report.cost import CostAssumptions
from tinylm.report.document import Document, Missing, Section, fduration, ffloat, fint, fsi
from tinylm.report.sections_extra import reproducibility_section, samples_section, sweeps_section
from tinylm.report.sections_results import alignment_section, evaluation_section, primary, sft_section
from tinylm.report.sections_setup import (Context, architecture_section, corpus_of, curves_section, data_section,
                                          hardware_text, pretrain_numbers, summary_table, training_section)

HEADLINE_TASKS = ("wikitext", "blimp", "hellaswag", "arc-easy", "mmlu", "ifeval")


def abstract(ctx: Context) -> str:
    parts = []
    for r in ctx.trained[:1]:
        n = pretrain_numbers(r)
        m = r.model_config()
        hw = hardware_text(r)
        parts.append(
            f"We describe {r.name}, a {fint(n['params'])}-parameter Llama-style decoder ({m.get('n_layer', '?')} "
            f"layers, width {m.get('n_embd', '?')}, context {m.get('seq_len', '?')}) trained from scratch with tinylm "
            f"on {fsi(n['tokens'])} tokens of `{corpus_of(r)}` in {fduration(n['elapsed_s'])}"
            + (f" on {hw}" if hw != "not recorded" else "")
            + f". It reaches {ffloat(n['val_bpb'], 4)} bits per byte on held-out text."
        )
        sft = r.stages.get("sft")
        if sft and sft.summary:
            vals = [x for x in sft.metrics if isinstance(x.get("val_loss"), (int, float))]
            line = f" Instruction tuning for {fint(sft.summary.get('step'))} steps"
            if vals:
                line += f" lowers the held-out assistant-token loss from {ffloat(vals[0]['val_loss'], 3)} to {ffloat(vals[-1]['val_loss'], 3)}"
            if "base" in r.ifeval and "sft" in r.ifeval:
                line += (f" and raises constraint satisfaction on held-out instructions from "
                         f"{ffloat(r.ifeval['base']['score'])} to {ffloat(r.ifeval['sft']['score'])}")
            parts.append(line + ".")
        aligned = [s for s in ("rm", "dpo", "ppo", "grpo") if s in r.stages]
        if aligned:
            parts.append(f" Alignment stages: {', '.join(a.upper() for a in aligned)}.")
        if r.eval:
            tasks = r.eval.get("tasks") or {}
            heads = []
            for t in HEADLINE_TASKS:
                if t in tasks:
                    name, m = primary(tasks[t])
                    if isinstance(m.get("value"), (int, float)):
                        heads.append(f"{t} {name} {ffloat(m['value'])}")
            if heads:
                parts.append(f" On the evaluation suite ({len(tasks)} tasks) it scores " + "; ".join(heads) + ".")
    if ctx.trained[:1] == ctx.runs[:1]:
        if ctx.runs[1:]:
            parts.append(f" It is compared with {', '.join(r.name for r in ctx.runs[1:])}.")
    else:
        parts.append(f"This report compares {', '.join(r.name for r in ctx.runs)}, none of them pretrained in the "
                     "directories given.")
    parts.append(" Every number in this report is read from the run's artifacts; each table names the file it "
                 "comes from, and the last section lists the commands that wrote them.")
    return "".join(parts).strip()


def _guarded(title: str, build, log: FileLog | None) -> Section:
    """A section that cannot be built from malformed artifacts says so instead of stopping the report."""
    try:
        return build()
    except Exception as e:  # artifacts can be hand-edited; one bad value must not cost the other sections
        if log is not None:
            log.problems.append(f"section {title!r} could not be built: {e.__class__.__name__}: {e}")
        return Section(title, [Missing(f"Not available: this section could not be built from the artifacts "
                                       f"({e.__class__.__name__}: {e}).")])


def _abstract_or_note(ctx: Context) -> str:
    try:
        return abstract(ctx)
    except Exception as e:  # same policy as the sections
        return f"The abstract could not be written from the artifacts ({e.__class__.__name__}: {e})."


def build_document(run_dirs, fig_dir: Path, cost: CostAssumptions | None = None, sweeps=()) -> Document:
    runs = [load_run(d) for d in run_dirs]
    ctx = Context(runs, Path(fig_dir), cost or CostAssumptions())
    sweep_log = FileLog()
    sweep_objs = read_sweeps(sweep_log, sweeps)
    headline = []
    for t in HEADLINE_TASKS:
        for r in runs:
            task = ((r.eval or {}).get("tasks") or {}).get(t)
            if task:
                headline.append((f"{t} ({primary(task)[0]})", t))
                break
    builders = [
        ("Pretraining data", lambda: data_section(ctx)), ("Architecture", lambda: architecture_section(ctx)),
        ("Training details", lambda: training_section(ctx)), ("Loss curves", lambda: curves_section(ctx)),
        ("Instruction tuning", lambda: sft_section(ctx)), ("Alignment", lambda: alignment_section(ctx)),
        ("Evaluation", lambda: evaluation_section(ctx)), ("Qualitative samples", lambda: samples_section(ctx)),
        ("Scaling and ablations", lambda: sweeps_section(ctx, sweep_objs)),
    ]
    sections = [_guarded(title, fn, sweep_log) for title, fn in builders]
    sections.append(_guarded("Limitations and reproducibility", lambda: reproducibility_section(ctx, [sweep_log]), None))
    names = ", ".join(r.name for r in runs)
    return Document(
        title=f"tinylm technical report: {names}",
        subtitle="Generated by `tinylm report` from the run artifacts",
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        abstract=_abstract_or_note(ctx),
        sections=sections,
        summary=summary_table(ctx, headline),
    )


def write_report(run_dirs, out, pdf: bool = True, cost: CostAssumptions | None = None, sweeps=()) -> dict:
    """Write report.md, report.html, report.tex (+ report.pdf when a TeX engine is present) into `out`.
    Returns {"md": path, "html": path, "tex": path, "pdf": path or None, "pdf_note": why/how}."""
    from tinylm.report.render_html import render_html
    from tinylm.report.render_md import render_md
    from tinylm.report.render_tex import build_pdf, render_tex
    from tinylm.util import atomic_write_text

    from tinylm.progress import bar

    out = Path(out)
    fig_dir = out / "figures"
    steps = bar(total=5 if pdf else 4, desc="report", unit="step")
    steps.set_postfix_str("artifacts and figures")
    doc = build_document(run_dirs, fig_dir, cost, sweeps)
    paths = {"md": out / "report.md", "html": out / "report.html", "tex": out / "report.tex"}
    for kind, render in (("md", lambda: render_md(doc, out)), ("html", lambda: render_html(doc)),
                         ("tex", lambda: render_tex(doc, out))):
        steps.update(1)
        steps.set_postfix_str(kind)
        atomic_write_text(paths[kind], render())
    steps.update(1)
    if pdf:
        steps.set_postfix_str("pdf (LaTeX)")
        paths["pdf"], paths["pdf_note"] = build_pdf(paths["tex"])
        steps.update(1)
    else:
        paths["pdf"], paths["pdf_note"] = None, "skipped (--no_pdf)"
    steps.close()
    return paths

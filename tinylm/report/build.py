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
from tinylm.report.comparison import comparison_section
from tinylm.report.document import Document, Missing, Section, fci, fduration, ffloat, fint, fsi
from tinylm.report.sections_experiments import ablations_section, classify, scaling_section, ttq_recipes_appendix
from tinylm.report.sections_extra import limitations_section, reproducibility_section, sweeps_section
from tinylm.report.sections_frame import (alignment_sentence, conclusion, ifeval_change, introduction, references,
                                         related_work)
from tinylm.report.sections_samples import all_samples_md, samples_section
from tinylm.report.sections_alignment import alignment_appendix, alignment_section
from tinylm.report.sections_results import evaluation_appendix, evaluation_section, primary, sft_examples_appendix, sft_section
from tinylm.report.sections_data import data_appendix, data_section
from tinylm.report.sections_setup import (Context, architecture_section, corpus_of, curves_section, hardware_text,
                                          pretrain_numbers, summary_table, training_section)

HEADLINE_TASKS = ("wikitext", "blimp", "hellaswag", "arc-easy", "mmlu", "ifeval")


def abstract(ctx: Context) -> str:
    """The abstract, from the same numbers as the tables; comparisons through reading.verdict."""
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
            + f". It reaches {ffloat(n['val_bpb'], 4)} bits per byte on held-out text.")
        sft = r.stages.get("sft")
        if sft and sft.summary:
            vals = [x for x in sft.metrics if isinstance(x.get("val_loss"), (int, float))]
            line = f" Instruction tuning for {fint(sft.summary.get('step'))} steps"
            if vals:
                line += (f" lowers the held-out assistant-token loss from {ffloat(vals[0]['val_loss'], 3)} to "
                         f"{ffloat(vals[-1]['val_loss'], 3)}")
            parts.append(line + ".")
            ch = ifeval_change(r)
            if ch:
                v, worse = ch
                a, b = r.ifeval["base"], r.ifeval["sft"]
                pair = (f"{fci(a.get('score'), a.get('ci95'))} ({r.label('base')}) to "
                        f"{fci(b.get('score'), b.get('ci95'))} ({r.label('sft')})")
                parts.append({"better": f" Constraint satisfaction on held-out instructions rises from {pair}, "
                                        "resolved by the 95% intervals",
                              "worse": f" Constraint satisfaction on held-out instructions falls from {pair}"}.get(
                    v, f" Constraint satisfaction on held-out instructions goes from {pair}; the intervals overlap, so "
                       "no gain is claimed") + (f"; kinds that got worse: {'; '.join(worse)}." if worse else "."))
        aligned = [s for s in ("rm", "rft", "dpo", "ppo", "grpo") if s in r.stages]
        if aligned:
            parts.append(f" Alignment stages: {', '.join(a.upper() for a in aligned)}.")
        parts.append(alignment_sentence(r))
    if ctx.trained[:1] == ctx.runs[:1]:
        if ctx.runs[1:]:
            parts.append(f" It is compared with {', '.join(r.name for r in ctx.runs[1:])} and with published small "
                         "models in bits per byte.")
    else:
        parts.append(f"This report compares {', '.join(r.name for r in ctx.runs)}, none of them pretrained in the "
                     "directories given.")
    parts.append(" Every number in this report is read from the run's artifacts; each table names the file it "
                 "comes from, and the appendix lists the commands that wrote them.")
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


def collect_data_stats(runs, budget_s: float | None) -> dict:
    """data_stats.json of each pretrained run (computed and cached when the corpus is readable and
    `budget_s` is not None; only read from the cache when it is None)."""
    from tinylm.report.data_stats import SCHEMA, data_stats

    out = {}
    for r in runs:
        if not r.trained:
            continue
        try:  # the default suite always, so the cache does not go stale when an evaluation is added
            from tinylm.eval.tasks import SUITES

            suite = set(SUITES["default"])
        except Exception:  # noqa: BLE001
            suite = set()
        tasks = sorted(suite | {t for _, ev, _ in r.evals() for t in (ev.get("tasks") or {})})
        if budget_s is None:
            cached = r.log.json(r.dir / "data_stats.json")
            if cached and cached.get("schema") == SCHEMA:
                out[r.name] = cached
            continue
        tok = r.dir / "tokenizer.json"
        try:
            ds = data_stats(r.dir, corpus_of(r) if corpus_of(r) != "unknown corpus" else None, tasks,
                            tok if tok.is_file() else None, budget_s=budget_s)
        except Exception as e:  # noqa: BLE001 - statistics are an extra; the report still builds without them
            r.log.problems.append(f"data statistics could not be computed: {e.__class__.__name__}: {e}")
            ds = None
        if ds:
            out[r.name] = ds
    return out


def collect_sft_data(runs, compute: bool) -> dict:
    """sft/data_stats.json of each run with an SFT stage (computed when `compute`, else only read)."""
    from tinylm.report.data_stats import SFT_SCHEMA, sft_data

    out = {}
    for r in runs:
        st = r.stages.get("sft")
        if st is None:
            continue
        cfg = ((st.config or {}).get("config") or {}).get("sft") or {}
        mixture = cfg.get("mixture") or ((st.summary or {}).get("data") or {}).get("mixture")
        if not mixture:
            continue
        if compute:
            try:
                got = sft_data(st.dir, mixture, int(cfg.get("data_seed", 0) or 0))
            except Exception as e:  # noqa: BLE001
                r.log.problems.append(f"SFT data statistics could not be computed: {e.__class__.__name__}: {e}")
                got = None
        else:
            got = r.log.json(st.dir / "data_stats.json")
            got = got if got and got.get("schema") == SFT_SCHEMA else None
        if got and got.get("tasks"):
            out[r.name] = got
    return out


def build_document(run_dirs, fig_dir: Path, cost: CostAssumptions | None = None, sweeps=(),
                   data_budget_s: float | None = None) -> Document:
    runs = [load_run(d) for d in run_dirs]
    ctx = Context(runs, Path(fig_dir), cost or CostAssumptions())
    ctx.data_stats = collect_data_stats(runs, data_budget_s)
    ctx.compute_stats = data_budget_s is not None
    ctx.sft_data = collect_sft_data(runs, ctx.compute_stats)
    sweep_log = FileLog()
    sweep_objs = read_sweeps(sweep_log, sweeps)
    experiments = classify(sweep_log, sweeps)
    headline = []
    for t in HEADLINE_TASKS:
        for r in runs:
            task = ((r.eval or {}).get("tasks") or {}).get(t)
            if task:
                headline.append((f"{t} ({primary(task)[0]})", t))
                break
    builders = [
        ("Introduction", lambda: introduction(ctx)), ("Related work", lambda: related_work()),
        ("Pretraining data", lambda: data_section(ctx)), ("Architecture", lambda: architecture_section(ctx)),
        ("Training details", lambda: training_section(ctx)), ("Loss curves", lambda: curves_section(ctx)),
        ("Instruction tuning", lambda: sft_section(ctx)), ("Alignment", lambda: alignment_section(ctx)),
        ("Evaluation", lambda: evaluation_section(ctx)),
        ("Comparison with published models", lambda: comparison_section(ctx)),
        ("Qualitative samples", lambda: samples_section(ctx)),
        ("Scaling", lambda: scaling_section(ctx, experiments)), ("Ablations", lambda: ablations_section(ctx, experiments)),
        ("Limitations", lambda: limitations_section(ctx)), ("Conclusion", lambda: conclusion(ctx)),
    ]
    sections = [_guarded(title, fn, sweep_log) for title, fn in builders]
    sections.append(references())
    appendix = [_guarded("Pretraining data in detail", lambda: data_appendix(ctx), sweep_log)]
    for title, fn in (("Instruction data in detail", sft_examples_appendix),
                      ("Alignment stages in detail", alignment_appendix)):
        details = _guarded(title, lambda fn=fn: fn(ctx) or Section("-"), sweep_log)
        if details.title != "-":
            appendix.append(details)
    appendix.append(_guarded("Evaluation protocols", lambda: evaluation_appendix(ctx), sweep_log))
    recipes = _guarded("Time-to-quality recipes", lambda: ttq_recipes_appendix(experiments) or Section("-"), sweep_log)
    if recipes.title != "-":
        appendix.append(recipes)
    appendix += [_guarded("Other sweeps", lambda: sweeps_section(ctx, sweep_objs), sweep_log),
                 _guarded("Reproducibility: commands and files", lambda: reproducibility_section(ctx, [sweep_log], experiments), None)]
    files = {}
    try:
        files["samples_all.md"] = all_samples_md(ctx)
    except Exception as e:  # noqa: BLE001 - the appendix file is an extra
        sweep_log.problems.append(f"samples_all.md could not be written: {e.__class__.__name__}: {e}")
    names = ", ".join(r.name for r in runs)
    return Document(
        title=f"tinylm technical report: {names}",
        subtitle="Generated by `tinylm report` from the run artifacts",
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        abstract=_abstract_or_note(ctx),
        sections=sections,
        summary=summary_table(ctx, headline),
        appendix=appendix,
        files=files,
    )


def model_card_of(run_dirs, cost: CostAssumptions | None = None) -> str | None:
    """The model card of the first pretrained run's last stage (its SFT or aligned model when there is one)."""
    from tinylm.report.artifacts import STAGES
    from tinylm.report.model_card import card_for_run

    for d in run_dirs:
        run = load_run(d)
        if run.trained:
            last = next((s for s in reversed(STAGES) if s in run.stages), "base")
            return card_for_run(run, last, cost=cost)
    return None


def write_report(run_dirs, out, pdf: bool = True, cost: CostAssumptions | None = None, sweeps=(),
                 data_budget_s: float | None = None) -> dict:
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
    steps.set_postfix_str("artifacts, text statistics and figures")
    doc = build_document(run_dirs, fig_dir, cost, sweeps, data_budget_s)
    paths = {"md": out / "report.md", "html": out / "report.html", "tex": out / "report.tex"}
    for kind, render in (("md", lambda: render_md(doc, out)), ("html", lambda: render_html(doc)),
                         ("tex", lambda: render_tex(doc, out))):
        steps.update(1)
        steps.set_postfix_str(kind)
        atomic_write_text(paths[kind], render())
    for name, text in doc.files.items():
        atomic_write_text(out / name, text)
    # figures/ belongs to the report: a PNG an earlier version wrote and this one does not show would be a stale
    # figure next to a fresh report
    shown = {Path(f.path).name for f in doc.figures()}
    for stale in fig_dir.glob("*.png") if fig_dir.is_dir() else []:
        if stale.name not in shown:
            stale.unlink()
    card = model_card_of(run_dirs, cost)
    if card:
        paths["card"] = out / "model_card.md"
        atomic_write_text(paths["card"], card)
    steps.update(1)
    if pdf:
        steps.set_postfix_str("pdf (LaTeX)")
        paths["pdf"], paths["pdf_note"] = build_pdf(paths["tex"])
        steps.update(1)
    else:
        paths["pdf"], paths["pdf_note"] = None, "skipped (--no_pdf)"
    steps.close()
    return paths

"""The Alignment section: what each alignment stage did and what it bought over SFT.

Reads `rm/`, `rft/`, `dpo/`, `ppo/` and `grpo/`, laid out like `sft/`: config.json, metrics.jsonl
(any of loss, val_loss, accuracy, val_accuracy, reward, reward_margin, chosen_reward,
rejected_reward, kl, entropy ... per line, plotted against the step when present) and
summary.json (its scalar fields become a table), plus `ifeval-<stage>.json` and `alignment.json`.
"""

from __future__ import annotations

from tinylm.report import figures
from tinylm.report.artifacts import STAGE_LABELS, Run, Stage
from tinylm.report.document import (Bullets, Figure, Missing, Paragraph, Section, Table, fci, ffloat,
                                    fint, fpct, slug)
from tinylm.report.sections_setup import Context, last_row, missing, rel

ALIGN_STAGES = ("rm", "rft", "dpo", "ppo", "grpo")
BOOKKEEPING = {"step", "tokens", "loss_tokens", "lr", "grad_norm", "tok_per_s", "mfu", "elapsed_s"}
CURVE_ORDER = ("loss", "val_loss", "accuracy", "val_accuracy", "reward_accuracy", "reward", "mean_reward",
               "reward_margin", "pass_rate", "heldout_score", "kl", "kl_ref", "approx_kl", "heldout_logratio", "val_kl",
               "heldout_degenerate", "dead_group_frac", "clip_frac", "entropy", "value_loss", "chosen_reward",
               "rejected_reward")
BODY_CURVES = 6  # panels of a stage's figure in the body (2 rows of 3); the appendix draws all of them


def alignment_appendix(ctx: Context) -> Section | None:
    """Every alignment stage's full configuration, results and every curve it logged (the body gives a
    digest of each and at most BODY_CURVES panels); None when no stage ran."""
    s = Section("Alignment stages in detail")
    for run in ctx.trained:
        s.subsections += [stage_subsection(ctx, run, run.stages[n]) for n in ALIGN_STAGES if n in run.stages]
    return s if s.subsections else None


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


def stage_digest(st: Stage) -> str:
    """One paragraph from a stage's summary.json: method, data, the main hyperparameters, held-out
    score and wall-clock; only the fields present are named (an empty string when none are)."""
    sm = st.summary or {}
    hp, data = sm.get("hyperparameters") or {}, sm.get("data") or {}
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    parts = []
    if num(data.get("pairs")):
        src = data.get("pairs_source")
        made = (f" from {fint(data['prompts'])} prompts x {fint(data['samples_per_prompt'])} samples"
                if num(data.get("prompts")) and num(data.get("samples_per_prompt")) else "")
        ties = f", {fint(data['ties_dropped'])} tied groups dropped" if num(data.get("ties_dropped")) else ""
        parts.append(f"{fint(data['pairs'])} {src + ' ' if isinstance(src, str) and src else ''}pairs{made}{ties}")
    knobs = [f"{name} {hp[k]:g}" if num(hp[k]) else f"{name} {hp[k]}" for k, name in (
        ("beta", "beta"), ("nll_weight", "NLL weight"), ("kl_coef", "KL coefficient"), ("group_size", "group size"),
        ("lr", "learning rate"), ("steps", "steps"), ("batch_pairs", "pairs per step"), ("ref_logprobs", "reference log-probs"))
        if k in hp and (num(hp[k]) or isinstance(hp[k], str))]
    if knobs:
        parts.append(", ".join(knobs))
    if num(sm.get("heldout_score")):
        deg = f", degenerate {fpct(sm['heldout_degenerate'])}" if num(sm.get("heldout_degenerate")) else ""
        parts.append(f"in-training held-out check: score {ffloat(sm['heldout_score'], 3)}{deg}")
    for k, label in (("val_accuracy", "held-out pairwise accuracy"), ("accuracy", "pairwise accuracy")):
        if num(sm.get(k)):
            parts.append(f"{label} {ffloat(sm[k], 3)}")
            break
    wall = sm.get("wall_clock_s", sm.get("elapsed_s"))
    if num(wall):
        load = sm.get("load_average_1_5_15")
        parts.append(f"{ffloat(wall / 60, 1)} min wall-clock" + (f" (load {load[0]})" if isinstance(load, list) and load else ""))
    if not parts:
        return ""
    return f"{STAGE_LABELS.get(sm.get('method') or st.name, st.name)}: " + "; ".join(parts) + "."


def stage_brief(ctx: Context, run: Run, st: Stage) -> Section:
    """The body's view of one stage: the digest and its training curves (full tables in the appendix)."""
    sub = Section(f"{STAGE_LABELS.get(st.name, st.name)} ({run.name})")
    text = stage_digest(st)
    if text:
        sub.add(Paragraph(text + " Full configuration and results: appendix, Alignment stages in detail."))
    f = _curves(ctx, run, st, BODY_CURVES)
    if f:
        sub.add(f)
    if not (text or f):
        sub.add(Missing(f"Not available: {rel(st.dir)} holds neither a readable summary.json nor metrics.jsonl."))
    return sub


def _curves(ctx: Context, run: Run, st: Stage, limit: int = 9):
    keys = sorted({k for r in st.metrics for k, v in r.items() if isinstance(v, (int, float)) and k not in BOOKKEEPING},
                  key=lambda k: (CURVE_ORDER.index(k) if k in CURVE_ORDER else len(CURVE_ORDER), k))[:limit]
    tag = "" if limit == 9 else f"_{limit}"
    f = figures.stage_curves(st.metrics, keys, ctx.fig_dir / f"{slug(st.name)}_curves{tag}_{slug(run.name)}.png")
    if not f:
        return None
    return Figure(f, f"{STAGE_LABELS.get(st.name, st.name)}: {', '.join(k for k in keys if figures.series(st.metrics, 'step', k)[0])} "
                     "against the step.", rel(st.dir / "metrics.jsonl"))


def stage_subsection(ctx: Context, run: Run, st: Stage, curves: bool = True) -> Section:
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
    f = _curves(ctx, run, st) if curves else None
    if f:
        sub.add(f)
    last = last_row(st.metrics)
    acc = next(((k, v) for k in ("val_accuracy", "accuracy") for v in [
        (st.summary or {}).get(k, last.get(k))] if isinstance(v, (int, float))), None)
    if acc:
        sub.add(Paragraph(f"Final {acc[0].replace('_', ' ')}: {ffloat(acc[1], 3)} (chance 0.5 for a pairwise preference)."))
    if not (rows or st.summary or st.metrics):
        sub.add(Missing(f"Not available: {rel(st.dir)} holds none of config.json, summary.json, metrics.jsonl."))
    return sub


def _half(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def alignment_comparison(ctx: Context, run: Run) -> list:
    """Blocks for alignment.json (tinylm.eval.alignment): a table of every method against SFT on the same
    held-out instructions with intervals, a per-kind figure and a reading generated from the numbers."""
    from tinylm.report.reading import verdict

    a = run.alignment
    methods = a.get("methods") if isinstance(a, dict) else None
    if not isinstance(methods, dict) or not methods:
        return [Missing(f"Not available: {rel(run.dir / 'alignment.json')} has no \"methods\" mapping.")] if a else []
    ok = {k: m for k, m in methods.items() if isinstance(m, dict) and isinstance(m.get("greedy"), dict)}
    bad = sorted(set(methods) - set(ok))
    blocks = []
    rows = []
    for k, m in ok.items():
        g, sm = m.get("greedy") or {}, m.get("sampled") if isinstance(m.get("sampled"), dict) else {}
        kl = m.get("kl_to_sft") if isinstance(m.get("kl_to_sft"), dict) else {}
        summ = m.get("run_summary") if isinstance(m.get("run_summary"), dict) else {}
        secs = summ.get("wall_clock_s") or m.get("seconds")
        rows.append([run.label(k), fci(g.get("score"), _half(g.get("ci95"))), fci(sm.get("score"), _half(sm.get("ci95"))),
                     fpct(g.get("degenerate_rate")), fci(kl.get("kl"), _half(kl.get("ci95"))),
                     ffloat(m.get("bpb_tinystories"), 4),
                     f"{secs / 60:.1f} min" if isinstance(secs, (int, float)) else "n/a"])
    if not rows:
        return [Missing(f"Not available: no method in {rel(run.dir / 'alignment.json')} has a greedy score.")]
    blocks.append(Table(["model", "greedy score", "sampled score", "degenerate", "KL to SFT (nats)", "bpb TinyStories",
                         "training time"], rows, align="lrrrrrr",
                        caption="Alignment methods against SFT on the same held-out checkable instructions (95% "
                                "intervals). Degenerate: answers the reward-hacking guard rejects; KL per answer "
                                "sampled at temperature 1; bits per byte checks that language modelling survived.",
                        source=rel(run.dir / "alignment.json")))
    kinds = sorted({kd for m in ok.values() for kd in ((m["greedy"].get("by_kind") or {}) if isinstance(m["greedy"].get("by_kind"), dict) else {})})
    if kinds:
        bars = {run.label(k): [((m["greedy"].get("by_kind") or {}).get(kd) or {}).get("score") for kd in kinds]
                for k, m in ok.items()}
        errs = {run.label(k): [_half(((m["greedy"].get("by_kind") or {}).get(kd) or {}).get("ci95")) for kd in kinds]
                for k, m in ok.items()}
        f = figures.grouped_bars(kinds, bars, ctx.fig_dir / f"alignment_kinds_{slug(run.name)}.png",
                                 "constraint satisfaction (greedy)", errs)
        if f:
            blocks.append(Figure(f, "Constraint satisfaction by instruction kind for SFT and each aligned model, with "
                                    "95% intervals: look for kinds where a method's bar clears SFT's interval, and for "
                                    "kinds that fall.", rel(run.dir / "alignment.json")))
    sft = ok.get("sft")
    reading = []
    if sft:
        for k, m in ok.items():
            if k == "sft":
                continue
            g, g0 = m["greedy"], sft["greedy"]
            v = verdict(g0.get("score"), _half(g0.get("ci95")), g.get("score"), _half(g.get("ci95")))
            what = {"better": "raises", "worse": "lowers"}.get(v)
            line = (f"{run.label(k)} {what} greedy constraint satisfaction from {ffloat(g0.get('score'))} to "
                    f"{ffloat(g.get('score'))}, resolved by the 95% intervals" if what else
                    f"{run.label(k)} moves greedy constraint satisfaction from {ffloat(g0.get('score'))} to "
                    f"{ffloat(g.get('score'))}, within the intervals (not resolved)")
            worse = []
            bk, bk0 = g.get("by_kind") or {}, g0.get("by_kind") or {}
            if isinstance(bk, dict) and isinstance(bk0, dict):
                for kd in sorted(set(bk) & set(bk0)):
                    x, y = (bk0.get(kd) or {}).get("score"), (bk.get(kd) or {}).get("score")
                    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y < x:
                        worse.append(f"{kd} {x:.2f} -> {y:.2f}")
            line += "; kinds that got worse: " + ", ".join(worse) + "." if worse else "; no kind got worse."
            reading.append(line)
        b0 = sft.get("bpb_tinystories")
        moved = [(run.label(k), m.get("bpb_tinystories")) for k, m in ok.items() if k != "sft"
                 and isinstance(m.get("bpb_tinystories"), (int, float))]
        if isinstance(b0, (int, float)) and moved:
            reading.append("Language modelling after alignment (TinyStories bits per byte, SFT "
                           f"{ffloat(b0, 4)}): " + ", ".join(f"{n} {ffloat(b, 4)} ({b - b0:+.4f})" for n, b in moved) + ".")
    else:
        reading.append("alignment.json has no SFT entry, so no method is compared with its starting point.")
    if bad:
        reading.append(f"Entries without a greedy score, left out: {', '.join(bad)}.")
    blocks.append(Bullets(reading))
    return blocks


def _details_in_appendix(run) -> bool:
    """A run whose alignment.json compares the methods gets that comparison in the body and each
    stage's recipe and curves in the appendix (the body stays short enough to read)."""
    return isinstance(run.alignment, dict) and isinstance(run.alignment.get("methods"), dict)


def alignment_section(ctx: Context) -> Section:
    s = Section("Alignment")
    for run in ctx.trained:
        s.add(*alignment_comparison(ctx, run))
        present = [run.stages[n] for n in ALIGN_STAGES if n in run.stages]
        if not present:
            s.add(missing(run, "rm/, dpo/, ppo/ or grpo/ directory"))
        elif _details_in_appendix(run):
            s.add(Paragraph(f"Each stage's data, hyperparameters and training curves ({', '.join(STAGE_LABELS.get(st.name, st.name) for st in present)}) "
                            "are in the appendix, Alignment stages in detail."))
        else:
            for st in present:
                s.subsections.append(stage_brief(ctx, run, st))
        after = [n for n in run.ifeval if any(n.startswith(a) for a in ALIGN_STAGES)]
        if after:
            s.add(Paragraph(f"Before/after constraint satisfaction of the aligned models is in the instruction-tuning "
                            f"table ({', '.join(after)})."))
    if not ctx.trained:
        s.add(Missing("Not available: no pretraining run among the directories given."))
    return s

"""Scaling and ablations, read from the experiment artifacts `tinylm sweep` and `tinylm scaling` write:

    sweep.json   {"sweep", "kind": "isoflop" | "grid", "x", "y", "command", "rows": [{cell, seed, budget,
                  params, flops, val_bpb, wall_s, loadavg_start, loadavg_end, variant?, ...}],
                  "ablation": {variant: {n_seeds, val_bpb_mean, val_bpb_std, delta_mean, delta_std, n_paired}}}
    fit.json     {"sweep", "y", "primary", "conventions": {key: {"approach2": {a, a_ci, b, b_ci, per_budget},
                  "approach3": {E, A, B, alpha, beta (+ _ci), a, a_ci, ...}}}, "holdout": {mean_abs_error, ...}}

(results/scaling/, results/ablations/, or any path given with --sweeps). Each section has a figure, a
table with intervals and a two-sentence reading generated from the numbers: the intervals decide what is
claimed. Inputs that are missing or do not have these fields give "Not available", never an exception.
"""

from __future__ import annotations

import math
from pathlib import Path

from tinylm.report import figures
from tinylm.report.artifacts import FileLog
from tinylm.report.document import Bullets, Figure, Missing, Paragraph, Section, Table, ffloat, fint, fsi, slug
from tinylm.report.sections_setup import Context, rel

CHINCHILLA_A = 0.5  # N_opt ~ C^0.5 (Hoffmann et al. 2022, approaches 1-3: 0.49-0.50)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ci(c) -> tuple[float, float] | None:
    return (c[0], c[1]) if isinstance(c, (list, tuple)) and len(c) == 2 and all(_num(v) for v in c) else None


def classify(log: FileLog, paths) -> dict[str, list[tuple[str, dict]]]:
    """Experiment JSONs under `paths` (files or directories, searched one level down) by kind."""
    out = {"isoflop": [], "ablation": [], "fit": [], "ttq": []}
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(p.glob("*.json")) + sorted(p.glob("*/*.json"))
        elif p.is_file():
            files.append(p)
    for f in files:
        obj = log.json(f)
        if not isinstance(obj, dict):
            continue
        if isinstance(obj.get("conventions"), dict):
            out["fit"].append((str(f), obj))
        elif obj.get("benchmark") == "time_to_quality" and isinstance(obj.get("recipes"), dict):
            out["ttq"].append((str(f), obj))
        elif isinstance(obj.get("rows"), list) and isinstance(obj.get("ablation"), dict):
            out["ablation"].append((str(f), obj))
        elif isinstance(obj.get("rows"), list) and obj.get("kind") == "isoflop":
            out["isoflop"].append((str(f), obj))
    return out


def _cell_ci(v, ci, spec=".3g") -> str:
    if not _num(v):
        return "n/a"
    c = _ci(ci)
    return format(v, spec) + (f" [{format(c[0], spec)}, {format(c[1], spec)}]" if c else "")


def _approaches(fit: dict) -> tuple[dict, dict]:
    """(approach2, approach3) of the primary parameter convention; empty dicts when malformed."""
    conv = fit.get("conventions") or {}
    conv = conv.get(fit.get("primary", "params")) if isinstance(conv, dict) else None
    if not isinstance(conv, dict):
        return {}, {}
    a2, a3 = conv.get("approach2"), conv.get("approach3")
    return (a2 if isinstance(a2, dict) else {}), (a3 if isinstance(a3, dict) else {})


def scaling_section(ctx: Context, found: dict) -> Section:
    s = Section("Scaling")
    fits, tables = found.get("fit") or [], found.get("isoflop") or []
    if not fits and not tables:
        return s.add(Missing("Not available: no IsoFLOP sweep (sweep.json with kind \"isoflop\") or scaling fit "
                             "(fit.json) was found; run `tinylm sweep` and `tinylm scaling` (results/scaling/)."))
    for path, t in tables:
        rows = [r for r in t["rows"] if isinstance(r, dict) and _num(r.get("params")) and _num(r.get(t.get("y", "val_bpb")))
                and _num(r.get("budget"))]
        y = t.get("y", "val_bpb")
        if not rows:
            s.add(Missing(f"Not available: {rel(path)} has no rows with params, budget and {y}."))
            continue
        f = figures.isoflop(rows, y, ctx.fig_dir / f"isoflop_{slug(Path(path).parent.name)}.png")
        if f:
            s.add(Figure(f, f"IsoFLOP profiles: final {y} against parameters, one line per compute budget. A "
                            "profile's minimum is the compute-optimal size at that budget when it lies inside the grid; "
                            "where each minimum lies is stated below.", rel(path)))
        loads = [r["loadavg_end"][0] for r in rows if isinstance(r.get("loadavg_end"), list) and r["loadavg_end"]
                 and _num(r["loadavg_end"][0])]
        s.add(Paragraph(isoflop_reading(rows, y, fitted=bool(fits))))
        s.add(Paragraph(f"{len(rows)} runs over {len({r['budget'] for r in rows})} budgets "
                        f"({', '.join(fsi(b) for b in sorted({r['budget'] for r in rows}))} FLOPs)"
                        + (f"; load average at the end of runs {min(loads):.1f}-{max(loads):.1f}" if loads else "")
                        + (". The command is in the appendix, Reproducibility." if t.get("command") else ".")))
    for path, fit in fits:
        a2, a3 = _approaches(fit)
        if not (a2 or a3):
            s.add(Missing(f"Not available: {rel(path)} has no approach2/approach3 fit for {fit.get('primary')}."))
            continue
        rows = []
        for name, key, src in (("exponent a, N_opt ~ C^a", "a", a2), ("exponent b, D_opt ~ C^b", "b", a2),
                               ("E, irreducible loss", "E", a3), ("alpha, N term", "alpha", a3),
                               ("beta, D term", "beta", a3), ("exponent a, exact FLOPs", "a", a3)):
            if _num(src.get(key)):
                rows.append([name, "IsoFLOP" if src is a2 else "L(N, D)", _cell_ci(src[key], src.get(f"{key}_ci"))])
        outside = []
        for p in a2.get("per_budget") if isinstance(a2.get("per_budget"), list) else []:
            if isinstance(p, dict) and _num(p.get("budget")):
                if not p.get("inside", True):  # a vertex outside the sizes trained: its interval says nothing
                    outside.append(f"{p['budget']:.0e}")
                    continue
                rows.append([f"N_opt; tokens/param at {p['budget']:.0e}", "IsoFLOP",
                             _cell_ci(p.get("n_opt"), p.get("n_opt_ci"), ".2g") + "; "
                             + _cell_ci(p.get("tokens_per_param"), p.get("tokens_per_param_ci"), ".2g")])
        top = tokens_per_param_by_convention(fit)
        if top:
            rows.append([f"tokens/param at {top[0]:.0e}", "L(N, D)",
                         "; ".join(f"{name} {cell}" for name, cell in top[1])])
        s.add(Table(["quantity", "fit", "estimate [95% bootstrap interval]"], rows, align="lll",
                    caption=f"Scaling fits of {fit.get('sweep', '?')} ({fit.get('y', 'val_bpb')}, N = {fit.get('primary')}), "
                            f"{fit.get('n_bootstrap', '?')} bootstrap resamples. IsoFLOP: a parabola in log N per budget "
                            "(Chinchilla approach 2); L(N, D): the parametric law (approach 3)."
                            + (f" Budgets whose IsoFLOP minimum lies outside the sizes trained ({', '.join(outside)}) "
                               "have no N_opt row." if outside else "")
                            + " Tokens/param by parameter count: all parameters, non-embedding, matrices only.",
                    source=rel(path)))
        s.add(Paragraph(scaling_reading(fit)))
    return s


def isoflop_reading(rows: list[dict], y: str, fitted: bool) -> str:
    """Per budget, where the lowest `y` lies among the shapes trained: at the smallest or largest shape
    (the optimum is outside the grid, so a parabola's vertex there is an extrapolation) or inside."""
    sizes = sorted({r["params"] for r in rows})
    parts, edges = [], 0
    for b in sorted({r["budget"] for r in rows}):
        cells = sorted((r for r in rows if r["budget"] == b), key=lambda r: r["params"])
        best = min(cells, key=lambda r: r[y])
        where = ("the smallest shape trained" if best["params"] == sizes[0] else
                 "the largest shape trained" if best["params"] == sizes[-1] else
                 "the smallest shape trained at this budget" if best is cells[0] else
                 "the largest shape trained at this budget" if best is cells[-1] else "an interior shape")
        edges += where != "an interior shape"
        parts.append(f"at {fsi(b)} FLOPs the lowest {y} ({best[y]:.4f}) is at {fsi(best['params'])} parameters, {where}")
    text = "Per budget, " + "; ".join(parts) + "."
    if not fitted:
        text += (" No scaling fit (fit.json) was found for this sweep, so no law is claimed"
                 + (f": {edges} of {len(parts)} budgets have their minimum at an edge of the grid, where a parabola's "
                    "vertex would be an extrapolation." if edges else "."))
    return text


def tokens_per_param_by_convention(fit: dict) -> tuple[float, list[tuple[str, str]]] | None:
    """The parametric law's compute-optimal tokens per parameter at the largest budget, under every
    parameter-count convention in the fit: (budget, [(convention label, "value [lo, hi]")]); None when
    the fit has no approach-3 per-budget rows."""
    conv = fit.get("conventions") if isinstance(fit.get("conventions"), dict) else {}
    labels = {"params": "all", "params_non_embedding": "non-embedding", "params_matrices": "matrices"}
    out, budget = [], None
    for key, label in labels.items():
        a3 = (conv.get(key) or {}).get("approach3") if isinstance(conv.get(key), dict) else None
        per = [p for p in (a3 or {}).get("per_budget") or [] if isinstance(p, dict) and _num(p.get("budget"))
               and _num(p.get("tokens_per_param"))] if isinstance(a3, dict) else []
        if not per:
            continue
        p = max(per, key=lambda p: p["budget"])
        budget = p["budget"] if budget is None else budget
        if p["budget"] == budget:
            out.append((label, _cell_ci(p["tokens_per_param"], p.get("tokens_per_param_ci"))))
    return (budget, out) if out else None


def scaling_reading(fit: dict) -> str:
    """Two sentences from the fit: the exponent against Chinchilla's, decided by its interval; and how well
    the law predicts a budget it was not fitted on."""
    a2, _ = _approaches(fit)
    a, ci = a2.get("a"), _ci(a2.get("a_ci"))
    if _num(a) and ci:
        if ci[0] <= CHINCHILLA_A <= ci[1]:
            first = (f"The compute-optimal size grows as C^{a:.2f} (95% interval {ci[0]:.2f}-{ci[1]:.2f}), an interval that "
                     f"contains Chinchilla's 0.5, so these runs do not distinguish their law from Chinchilla's.")
        else:
            side = "faster" if ci[0] > CHINCHILLA_A else "slower"
            first = (f"The compute-optimal size grows as C^{a:.2f} (95% interval {ci[0]:.2f}-{ci[1]:.2f}), {side} than "
                     "Chinchilla's 0.5 with the interval excluding it, at these small scales.")
    elif _num(a):
        first = f"The compute-optimal size grows as C^{a:.2f}; no interval was recorded, so no comparison is claimed."
    else:
        first = "The IsoFLOP fit has no exponent (fewer than two budgets with an interior minimum)."
    h = fit.get("holdout") if isinstance(fit.get("holdout"), dict) else {}
    if _num(h.get("mean_abs_error")):
        second = (f"Fitted without one budget, the parametric law predicts that budget's runs to within "
                  f"{h['mean_abs_error']:.3f} {fit.get('y', 'val_bpb')} on average (worst {h.get('max_abs_error', float('nan')):.3f}).")
    else:
        second = "No leave-one-budget-out check was recorded, so the law's predictions are untested."
    top = tokens_per_param_by_convention(fit)
    third = ""
    if top and top[1][0][0] == "all":
        others = "; ".join(f"{name} {cell}" for name, cell in top[1][1:])
        third = (f" At {top[0]:.0e} FLOPs the parametric law puts the compute-optimal data at {top[1][0][1]} tokens per "
                 f"parameter counting all parameters" + (f" ({others} under the other counts)" if others else "")
                 + f", against Chinchilla's ~{fit.get('chinchilla_tokens_per_param', 20):g} and the "
                   f"~{fit.get('small_scale_tokens_per_param', 10):g} of small-scale replications.")
    return f"{first} {second}{third}"


def ablation_rows(ab: dict) -> list[dict]:
    """Per variant: paired difference from the baseline with a t-interval over seeds, and its verdict."""
    out = []
    bw = (ab.get("baseline") or {}).get("wall_s_mean") if isinstance(ab.get("baseline"), dict) else None
    for name, v in ab.items():
        if name == "baseline" or not isinstance(v, dict):
            continue
        w = v.get("wall_s_mean")
        d, sd, n = v.get("delta_mean"), v.get("delta_std"), v.get("n_paired")
        half = T975.get(n - 1, 1.96) * sd / math.sqrt(n) if _num(d) and _num(sd) and isinstance(n, int) and n >= 2 else None
        if half is None:
            verdict = "unknown (one seed)" if _num(d) else "unknown"
        elif d - half > 0:
            verdict = "worse"  # higher bits per byte
        elif d + half < 0:
            verdict = "better"
        else:
            verdict = "unresolved"
        out.append({"variant": name, "n": n, "mean": v.get("val_bpb_mean"), "std": v.get("val_bpb_std"),
                    "delta": d, "half": half, "verdict": verdict,
                    "time_ratio": w / bw if _num(w) and _num(bw) and bw > 0 else None})
    return out


def ablations_section(ctx: Context, found: dict) -> Section:
    s = Section("Ablations")
    tables = found.get("ablation") or []
    ttqs = found.get("ttq") or []
    if ttqs:
        s.subsections.append(Section("Time to quality").add(*time_to_quality(ttqs)))
    if not tables:
        return s.add(Missing("Not available: no ablation table (sweep.json with an \"ablation\" block) was found; run "
                             "`tinylm sweep --variant NAME:FIELD=VALUE --seeds ...` (results/ablations/)."))
    done = []
    for path, t in tables:
        rows = ablation_rows(t["ablation"])
        if not rows:
            s.add(Missing(f"Not available: {rel(path)} has no variant with a paired difference from the baseline."))
            continue
        done.append((path, t, rows, (t.get("spec") or {}).get("match") == "wallclock"))
    if not done:
        return s
    f = figures.deltas([("equal wall-clock" if wc else "equal tokens", [r["variant"] for r in rows],
                         [r["delta"] for r in rows], [r["half"] for r in rows]) for _, _, rows, wc in done],
                       ctx.fig_dir / f"ablation_{slug(Path(done[0][0]).parent.name)}.png", done[0][1].get("y", "val_bpb"))
    if f:
        s.add(Figure(f, "Each variant's change in final validation bits per byte against the baseline trained with "
                        "the same seeds (mean of paired differences, 95% t-interval)"
                        + (", one panel per ablation table below" if len(done) > 1 else "")
                        + ". Bars whose interval crosses zero are not resolved; above zero is worse.",
                     ", ".join(rel(p) for p, *_ in done)))
    for path, t, rows, wallclock in done:
        s.add(ablation_table(path, t, rows, wallclock), Paragraph(ablation_reading(rows)))
    return s


def ablation_table(path, t: dict, rows: list[dict], wallclock: bool) -> Table:
    """One ablation sweep as a table: per variant its seeds, bits per byte, paired change with its
    interval and verdict, and training time relative to the baseline's; with `wallclock` (a sweep
    run with --match wallclock) also the steps each variant's measured throughput bought."""
    base = (t["ablation"].get("baseline") or {})
    steps = {}
    for r in t.get("rows") or []:
        if isinstance(r, dict) and _num(r.get("steps")):
            steps.setdefault(r.get("variant"), set()).add(int(r["steps"]))
    fsteps = lambda v: "/".join(fint(x) for x in sorted(steps.get(v, ()))) or "n/a"  # noqa: E731
    trows = [[r["variant"], fint(r["n"]), ffloat(r["mean"], 4) + (f" ± {r['std']:.4f}" if _num(r["std"]) else ""),
              (f"{r['delta']:+.4f}" if _num(r["delta"]) else "n/a") + (f" ± {r['half']:.4f}" if _num(r["half"]) else ""),
              r["verdict"], f"{r['time_ratio']:.2f}" if _num(r["time_ratio"]) else "n/a"]
             + ([fsteps(r["variant"])] if wallclock else []) for r in rows]
    if _num(base.get("val_bpb_mean")):
        trows.insert(0, ["baseline", fint(base.get("n_seeds")), ffloat(base["val_bpb_mean"], 4)
                         + (f" ± {base['val_bpb_std']:.4f}" if _num(base.get("val_bpb_std")) else ""), "0", "reference",
                         "1.00"] + ([fsteps("baseline")] if wallclock else []))
    loads = [r["loadavg_end"][0] for r in t.get("rows") or [] if isinstance(r, dict)
             and isinstance(r.get("loadavg_end"), list) and r["loadavg_end"] and _num(r["loadavg_end"][0])]
    load = f"; load average {min(loads):.1f}-{max(loads):.1f} at the end of runs" if loads else ""
    brows = [r for r in t.get("rows") or [] if isinstance(r, dict) and r.get("variant") == "baseline"
             and _num(r.get("steps")) and _num(r.get("tokens"))]
    budget = (f" Each baseline run: {fint(brows[0]['steps'])} steps, {fsi(brows[0]['tokens'])} tokens"
              + (f", {fint(brows[0]['params'])} parameters" if _num(brows[0].get("params")) else "") + ".") if brows else ""
    if wallclock:
        how = (" Equal wall-clock: each variant trained for the steps that its own throughput, measured before the "
               "sweep, buys in the baseline's training time (steps column). Time: measured training wall-clock "
               f"relative to the baseline's{load}; it stays near 1 when the plan held.")
    else:
        how = (" Time: mean training wall-clock relative to the baseline's (the same tokens unless the variant says "
               f"otherwise{load}), so a variant with a better score but a time above 1 has not shown a gain at equal "
               "wall-clock.")
    vocab = [r["variant"] for r in rows if "vocab" in r["variant"]]
    if vocab:
        how += (" The vocabulary variants use their own tokenizer and shards of the same text; bits per byte compares "
                "them directly.")
    return Table(["variant", "seeds", "val bpb (mean ± sd)", "paired change (95% CI)", "verdict", "time"]
                 + (["steps"] if wallclock else []), trows, align="lrrrlr" + ("r" if wallclock else ""),
                 caption=f"Ablations of {t.get('sweep', '?')}: lower bits per byte is better.{budget}{how}",
                 source=rel(path))


def _flag_diff(flags: str, base: str) -> str:
    """The recipe's flags that are not the baseline's (bookkeeping flags dropped)."""
    skip = ("--train.eval_every", "--train.eval_batches", "--train.sample_every", "--train.save_every",
            "--train.seed", "--train.threads")
    pairs = lambda text: [" ".join(p) for p in zip(text.split()[::2], text.split()[1::2])]  # noqa: E731
    b = set(pairs(base or ""))
    return " ".join(p for p in pairs(flags or "") if p not in b and not p.startswith(skip))


def _ttq_parts(path: str, t: dict):
    """(rows, reading, loads) of one time-to-quality table, or a Missing when it has no usable rows."""
    recipes = sorted(((n, r) for n, r in t["recipes"].items() if isinstance(r, dict) and _num(r.get("val_bpb"))
                      and _num(r.get("wall_ratio"))), key=lambda nr: nr[0] != "baseline")  # the baseline first
    base = t["recipes"].get("baseline") if isinstance(t["recipes"].get("baseline"), dict) else {}
    if not recipes or not _num(base.get("val_bpb")):
        return Missing(f"Not available: {rel(path)} has no baseline and candidate rows with val_bpb and wall_ratio.")
    rows = [[n, fsi(r.get("tokens")), ffloat(r.get("train_elapsed_s") or r.get("wall_s"), 0), f"{r['wall_ratio']:.3f}",
             f"{r['val_bpb']:.4f}", "yes" if r.get("reached") else "no"] for n, r in recipes]
    loads = [x[0] for _, r in recipes for x in (r.get("loadavg_during") or []) if isinstance(x, list) and x and _num(x[0])]
    hits = [n for n, r in recipes if n != "baseline" and r.get("reached") and r["wall_ratio"] <= 0.5]
    best = min((r for n, r in recipes if n != "baseline"), key=lambda r: r["val_bpb"], default=None)
    reading = (f"{', '.join(hits)} reached the baseline's {base['val_bpb']:.4f} bits per byte in at most half its "
               "training time." if hits else
               f"No candidate reached the baseline's {base['val_bpb']:.4f} bits per byte in at most half its training "
               "time" + (f"; the closest ended {best['val_bpb'] - base['val_bpb']:+.4f} from it at "
                         f"{best['wall_ratio']:.2f} of the time." if best else "."))
    return rows, reading, loads


def _ttq_machine(t: dict, date: bool = True) -> str:
    hw = t.get("hardware") if isinstance(t.get("hardware"), dict) else {}
    return " ".join(str(x) for x in (hw.get("cpu"), hw.get("cpu_isa"), str(t.get("date", ""))[:10] if date else "")
                    if x) or "?"


def time_to_quality(tables: list[tuple[str, dict]]) -> list:
    """The time-to-quality benchmark, every table in one: each recipe's training time relative to its
    own baseline's (measured beside it on the same machine) and its final bits per byte on the whole
    validation shard, the target and whether it was reached. Several tables (machines) get a machine
    column and a reading each; a malformed table gets a "Not available" note."""
    parts = [(path, t, _ttq_parts(path, t)) for path, t in tables]
    out = [p for _, _, p in parts if isinstance(p, Missing)]
    good = [(path, t, p) for path, t, p in parts if not isinstance(p, Missing)]
    if not good:
        return out
    t0 = good[0][1]
    how = ("Time to quality: the earlier default recipe (baseline) and candidate recipes trained side by side, "
           f"{t0.get('threads_per_run', 1)} thread each, final checkpoints scored on the whole validation shard. ")
    many = len(good) > 1
    readings = " ".join((f"On {_ttq_machine(t)}: " if many else "") + p[1] for _, t, p in good)
    rows = [([_ttq_machine(t, date=False) if i == 0 else ""] if many else []) + row
            for _, t, p in good for i, row in enumerate(p[0])]
    loads = [x for _, _, p in good for x in p[2]]
    header = (["machine"] if many else []) + ["recipe", "tokens", "training s", "time ratio", "val bpb", "reached"]
    return out + [Paragraph(how + readings + " Each recipe's flags: appendix, Time-to-quality recipes."),
                  Table(header, rows, align=("l" if many else "") + "lrrrrl",
                        caption="Time to quality. Time ratio: training wall-clock over the baseline's"
                                + (" measured on the same machine" if many else "")
                                + (f" (load average {min(loads):.1f}-{max(loads):.1f} during the runs)" if loads else "")
                                + f". Target: {t0.get('target', 'n/a')}.", source=", ".join(rel(path) for path, _, _ in good))]


def time_to_quality_recipes(path: str, t: dict) -> list:
    """The `tinylm pretrain` flags of every recipe of one time-to-quality table: the baseline's, the
    flags all candidates share (once), then each candidate's own. Empty when the table has no recipes."""
    recipes = [(n, r) for n, r in (t.get("recipes") or {}).items() if isinstance(r, dict) and n != "baseline"]
    if not recipes:
        return []
    pairs = lambda text: [" ".join(p) for p in zip(text.split()[::2], text.split()[1::2])]  # noqa: E731
    cands = [pairs(_flag_diff(r.get("flags", ""), "")) for _, r in recipes]
    common = [p for p in cands[0] if all(p in c for c in cands)] if len(cands) > 1 else []
    own = {n: " ".join(p for p in pairs(_flag_diff(r.get("flags", ""), "")) if p not in common) or "(common flags)"
           for n, r in recipes}
    return [Paragraph(f"Recipes of {rel(path)} (`tinylm pretrain` flags; bookkeeping flags, the same for all, omitted):"),
            Bullets([f"baseline, the earlier default: `{t.get('baseline_flags') or '?'}`"]
                    + ([f"every candidate: `{' '.join(common)}`"] if common else [])
                    + [f"{n}: `{f}`" for n, f in own.items()])]


def ttq_recipes_appendix(found: dict) -> Section | None:
    """Appendix: the flags of every time-to-quality recipe (the body keeps only the tables)."""
    blocks = [b for path, t in found.get("ttq") or [] if isinstance(t.get("recipes"), dict)
              for b in time_to_quality_recipes(path, t)]
    return Section("Time-to-quality recipes", blocks) if blocks else None


def ablation_reading(rows: list[dict]) -> str:
    worse = [r["variant"] for r in rows if r["verdict"] == "worse"]
    better = [r["variant"] for r in rows if r["verdict"] == "better"]
    open_ = [r["variant"] for r in rows if r["verdict"] not in ("worse", "better")]
    first = ("Resolved by their 95% intervals: " + "; ".join(
        x for x in ((f"worse than the baseline: {', '.join(worse)}" if worse else ""),
                    (f"better: {', '.join(better)}" if better else "")) if x) + ".") if (worse or better) else \
        "No variant differs from the baseline by more than its 95% interval."
    second = (f"Not resolved at {min((r['n'] or 0) for r in rows)} seed(s): {', '.join(open_)}; more seeds would be "
              "needed before claiming an effect.") if open_ else "Every variant's effect is resolved at these seeds."
    return f"{first} {second}"

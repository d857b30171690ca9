"""Report sections: scaling and ablation sweeps, limitations and reproducibility.

Sweeps are JSON files with a "rows" list (the format of
bench/results/*.json) given with `--sweeps` or found in RUN/sweeps/. The commands are rebuilt from
the configs each artifact saved, as flags that differ from the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from tinylm import config as C
from tinylm.report import figures
from tinylm.report.artifacts import Run, sweep_axes
from tinylm.report.document import Bullets, Figure, Missing, Paragraph, Section, Table, Verbatim, ffloat, fint, slug
from tinylm.report.sections_setup import Context, pretrain_numbers, rel

# --------------------------------------------------------------------------- sweeps

SIZE_KEYS = {"params", "params_non_embedding", "flops", "compute", "train_tokens", "tokens"}


def power_law(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares fit of log y = log a + b log x; (a, b), or None with < 3 positive points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return math.exp(my - b * mx), b


def _cell(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return fint(v)
    return ffloat(v, 4) if abs(v) < 100 else fint(v)


def sweeps_section(ctx: Context, sweeps: dict[str, dict]) -> Section:
    s = Section("Other sweeps")
    all_sweeps = dict(sweeps)
    for r in ctx.runs:
        all_sweeps.update(r.sweeps)
    if not all_sweeps:
        return s.add(Missing("Not available: no sweep results (pass `--sweeps bench/results` or put sweep JSON "
                             "files in RUN/sweeps/)."))
    for path, obj in all_sweeps.items():
        x, y = sweep_axes(obj)
        rows = obj["rows"]
        title = obj.get("benchmark") or Path(path).stem
        sub = Section(f"{title}")
        if obj.get("command"):
            sub.add(Paragraph(f"Command: `{obj['command']}`" + (f"; corpus `{obj['corpus']}`" if obj.get("corpus") else "")
                              + (f"; {obj['steps']} steps" if obj.get("steps") else "") + "."))
        cols = [x, y] + [k for k in rows[0] if k not in (x, y) and isinstance(rows[0][k], (int, float))
                         and not isinstance(rows[0][k], bool)][:4]
        sub.add(Table(cols, [[_cell(r.get(c)) for c in cols] for r in rows], caption=f"{title}: one row per setting.",
                      source=rel(path)))
        fit = None
        if x in SIZE_KEYS:
            fit = power_law(*figures.series(rows, x, y))
        f = figures.sweep(rows, x, y, ctx.fig_dir / f"sweep_{slug(title)}.png", fit=fit)
        if f:
            sub.add(Figure(f, f"{y} against {x}" + (" with a fitted power law." if fit else "."), rel(path)))
        if fit:
            sub.add(Paragraph(f"Fitted law (least squares in log-log space, {len(rows)} points): "
                              f"{y} = {fit[0]:.4g} x {x}^{fit[1]:.4f}."))
        best = min(rows, key=lambda r: r.get(y, float("inf")))
        sub.add(Paragraph(f"Lowest {y}: {_cell(best.get(y))} at {x} = {_cell(best.get(x))}."))
        s.subsections.append(sub)
    return s


# --------------------------------------------------------------------------- reproducibility

def flags(d: dict, cls=None, prefix: str = "") -> list[str]:
    """`--field value` for each leaf of `d` that differs from dataclass `cls`'s default."""
    defaults = {}
    if cls is not None:
        defaults = {k: v for k, _, v in C.flat_fields(cls)}
    out = []

    def walk(obj, pre):
        for k, v in obj.items():
            if isinstance(v, dict):
                walk(v, f"{pre}{k}.")
            elif f"{pre}{k}" not in defaults or defaults[f"{pre}{k}"] != v:
                if v is None or v == "" and f"{pre}{k}" not in defaults:
                    continue
                out.append(f"--{pre}{k} {_shell(v)}")
    walk(d, "")
    return [f"--{prefix}{f[2:]}" for f in out]


def _shell(v) -> str:
    s = str(v).lower() if isinstance(v, bool) else str(v)
    return s if s and all(c.isalnum() or c in "._-/:,=+" for c in s) else "'" + s.replace("'", "'\\''") + "'"


def _preset_of(model: dict) -> str | None:
    for name, p in C.MODEL_PRESETS.items():
        ref = dataclasses.asdict(C.model_preset(name, vocab_size=model.get("vocab_size", 4096),
                                                seq_len=model.get("seq_len", 256)))
        if ref == model:
            return name
    return None


def commands(run: Run) -> list[str]:
    cmds = []
    if run.tokenizer and isinstance(run.tokenizer.get("config"), dict):
        cmds.append(" ".join(["tinylm tokenizer", *flags(run.tokenizer["config"], C.TokenizerConfig)]))
    if run.prepare and isinstance(run.prepare.get("config"), dict):
        cmds.append(" ".join(["tinylm prepare", *flags(run.prepare["config"], C.PrepareConfig)]))
    cfg = (run.config or {}).get("config")
    if isinstance(cfg, dict):
        model, train = cfg.get("model") or {}, cfg.get("train") or {}
        preset = _preset_of(model)
        parts = ["tinylm pretrain", f"--preset {preset}" if preset else ""]
        if not preset:
            parts += flags(model, C.ModelConfig, "model.")
        parts += flags(train, C.TrainConfig, "train.")
        if cfg.get("repeat_frac"):  # copying drills in the pretraining windows
            parts.append(f"--repeat_frac {cfg['repeat_frac']}")
        cmds.append(" ".join(p for p in parts if p))
    for t, d in run.bpb.items():
        if isinstance(d.get("config"), dict):
            cmds.append(" ".join(["tinylm bpb", *flags(d["config"], C.BpbConfig)]))
    for st in run.stages.values():
        scfg = ((st.config or {}).get("config") or {}).get(st.name)
        if isinstance(scfg, dict):
            cls = C.SFTConfig if st.name == "sft" else None
            cmds.append(" ".join([f"tinylm {st.name}", *flags(scfg, cls)]))
    for n, d in run.ifeval.items():
        if isinstance(d.get("config"), dict):
            cmds.append(" ".join(["tinylm ifeval", *flags(d["config"], C.IFEvalConfig)]))
    for label, ev, path in run.evals():
        if ev.get("command"):
            cmds.append(str(ev["command"]))
        elif isinstance(ev.get("config"), dict):
            cmds.append(" ".join(["tinylm eval", *flags(ev["config"])]))
        else:
            spec = (ev.get("model") or {}).get("spec", "?")
            cmds.append(f"tinylm eval {spec}    # eval.json records no command; see {rel(path)}")
    return cmds


def limitations_section(ctx: Context) -> Section:
    s = Section("Limitations")
    lim = []
    for r in ctx.trained:
        n = pretrain_numbers(r)
        lim.append(f"{r.name}: one training run with one seed ({r.train_config().get('seed', '?')}); differences "
                   "smaller than run-to-run noise cannot be resolved from it.")
        if not r.hardware():
            lim.append(f"{r.name}: the hardware is not recorded in the artifacts (no meta.json or "
                       "checkpoints/*/meta.json); the cost estimate assumes it.")
        if n["params"] and n["params"] < 1e8:
            lim.append(f"{r.name}: at {fint(n['params'])} parameters the model is far below the scale at which "
                       "benchmark tasks such as MMLU rise above chance; they are reported to show where it stands.")
        absent = [st for st in ("sft", "rm", "dpo", "ppo", "grpo") if st not in r.stages]
        if absent:
            lim.append(f"{r.name}: stages without artifacts, so not reported: {', '.join(absent)}.")
    lim.append("Costs are estimates from wall-clock and stated assumptions, not measurements of power.")
    return s.add(Paragraph(" ".join(lim)))


def reproducibility_section(ctx: Context, extra_logs=(), experiments: dict | None = None) -> Section:
    """Commands (rebuilt per run from the saved configs; recorded per experiment table, as
    `experiments` from sections_experiments.classify holds them) and every file read."""
    s = Section("Reproducibility: commands and files")
    recorded = [(rel(path), obj["command"]) for kind in ("isoflop", "ablation", "ttq", "fit")
                for path, obj in (experiments or {}).get(kind, []) if isinstance(obj.get("command"), str) and obj["command"]]
    if recorded:
        s.add(Paragraph("Commands recorded in the experiment tables (scaling, ablations, time to quality), as run:"),
              Verbatim("\n\n".join(f"# {path}\n{cmd}" for path, cmd in recorded)))
    for r in ctx.runs:
        cmds = commands(r)
        if cmds:
            text = "\n".join(cmds)
            s.add(Paragraph(f"Commands that produced the artifacts of {r.name}, rebuilt from the configs they saved "
                            "(flags at their defaults omitted)" + (
                                "; `pipeline.log` shows they ran inside one `tinylm pipeline` call" if r.pipeline_log else "")
                            + ":"), Verbatim(text))
        else:
            s.add(Paragraph(f"{r.name}: no saved config to rebuild commands from ({rel(r.dir)})."))
    rows, corrupt, problems = [], 0, []
    for log in [r.log for r in ctx.runs] + list(extra_logs):
        rows += [[rel(path), note] for path, note in log.read]
        corrupt += log.corrupt_lines
        problems += log.problems
    s.add(Paragraph(f"Corrupt metrics lines skipped: {corrupt} in total (a line that is not a JSON object, e.g. torn "
                    "by a kill mid-write, is skipped and counted, never fatal)."))
    if problems:
        s.add(Paragraph("Problems met while reading:"), Bullets(problems))
    if rows:
        s.add(Table(["artifact read", "note"], rows, caption="Every file this report read.", align="ll"))
    return s

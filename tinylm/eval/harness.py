"""Run evaluation tasks on one model and write what they found.

    tinylm eval --model runs/default --tasks default          # every task (see tasks/__init__.py)
    tinylm eval --model ../shared/data/checkpoints/stories260K.bin \\
                --tokenizer ../shared/data/checkpoints/tok512.bin --tasks blimp,wikitext --limit 100
    tinylm compare runs/default/eval runs/default/sft/eval results/stories260K/eval

Writes OUT/eval.json (schema `tinylm.eval/1`: model, hardware, code version, and per task its
metrics with standard errors and 95% intervals, chance level, examples, few-shot setting,
seconds, truncations, malformed rows), OUT/eval.md (the table) and OUT/samples.md (the
qualitative generations). Running again into the same OUT for the same model replaces the tasks
it runs and keeps the others, so a suite can be built up task by task.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from tinylm.eval import tasks as registry
from tinylm.eval.compare import fmt_metric
from tinylm.eval.tasks.base import TaskDataError
from tinylm.util import atomic_write_text, code_version, hardware_info, load_average

SCHEMA = "tinylm.eval/1"
# how contexts begin (eval/lm.py); `prefix_doc_start: true` in older files meant every context
# started with the document-start token
START_TOKEN_PROTOCOL = ("lm-eval: the document-start token (the export's bos_token) is the context of an empty "
                        "context only; non-empty contexts get no start token (add_bos_token false)")


def evaluate(lm, task_names: list[str], limit: int = 0, log=print, on_task=None) -> dict:
    """Run the tasks in order; `on_task(found)` after each one (the harness saves then, so a
    killed run keeps every finished task)."""
    from tinylm.progress import bar

    results, errors = {}, {}
    tasks_bar = bar(total=len(task_names), desc="eval tasks", unit="task", disable=len(task_names) < 2)
    log = tasks_bar.write if log is print else log  # lines print above the bar, not through it
    for name in task_names:
        tasks_bar.set_postfix_str(name)
        task = registry.get(name)
        task.name = name
        lm.counters.requests = lm.counters.truncated = 0
        t0 = time.time()
        try:
            res = task.run(lm, limit)
        except TaskDataError as e:
            errors[name] = str(e)
            log(f"{name}: skipped: {e}")
            tasks_bar.update(1)
            continue
        tasks_bar.update(1)
        if not res.get("n"):  # nothing scored is not a result: never let it replace a real one
            errors[name] = "nothing to score (0 examples)"
            log(f"{name}: skipped: nothing to score (0 examples)")
            continue
        res["seconds"] = round(time.time() - t0, 1)
        res["limit"] = limit or None
        res["requests"] = lm.counters.requests
        res["truncated"] = lm.counters.truncated
        results[name] = res
        log(summary_line(name, res))
        if on_task:
            on_task({"tasks": results, "errors": errors})
    tasks_bar.close()
    return {"tasks": results, "errors": errors}


def summary_line(name: str, res: dict) -> str:
    if not res.get("primary"):
        return f"{name:<24} {res['n']} generations ({res['seconds']}s)"
    m = res["metrics"][res["primary"]]
    chance = f", chance {res['chance']:.3f}" if res.get("chance") else ""
    trunc = f", {res['truncated']} truncated" if res.get("truncated") else ""
    bad = f", {res['malformed']} malformed skipped" if res.get("malformed") else ""
    return (f"{name:<24} {res['primary']} {fmt_metric(m)} (n={res['n']:,}{chance}{trunc}{bad}; "
            f"{res['seconds']}s)")


def markdown_table(doc: dict) -> str:
    m = doc["model"]
    lines = [f"# Evaluation: {m.get('name')}\n",
             f"Model `{m.get('spec')}` ({m.get('kind')}, {m.get('params', 0):,} parameters, context {m.get('seq_len')}); "
             f"{doc['date']}, code {doc['code_version']}, {doc['seconds']:.0f} s"
             + (f", --limit {doc['limit']}" if doc.get("limit") else "") + ".\n",
             *(["Tasks run with --limit (first N examples; per subject/paradigm for MMLU/BLiMP): "
                + ", ".join(f"{n} ({r['limit']})" for n, r in doc["tasks"].items() if r.get("limit")) + ".\n"]
               if any(r.get("limit") for r in doc["tasks"].values()) else []),
             "| task | metric | value ± 95% CI | chance | n | shots | truncated | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in doc["tasks"].items():
        if not r.get("primary"):
            continue
        for metric, v in r["metrics"].items():
            chance = f"{r['chance']:.3f}" if r.get("chance") is not None and metric.startswith("acc") else ""
            mark = "**" if metric == r["primary"] else ""
            lines.append(f"| {name} | {mark}{metric}{mark} | {fmt_metric(v)} | {chance} | {r['n']:,} | "
                         f"{r.get('num_fewshot', 0)} | {r.get('truncated', 0):,} | {r.get('seconds', 0)} |")
    for name, err in doc.get("errors", {}).items():
        lines.append(f"| {name} | not run | {err} | | | | | |")
    for name, r in doc["tasks"].items():
        for key, groups in (r.get("breakdown") or {}).items():
            if key in ("paradigm", "subject", "constraint") or not groups:
                continue
            lines += [f"\n**{name} by {key}**\n", "| group | value | n |", "|---|---|---|"]
            for g, v in groups.items():
                val = v.get("acc", v.get("score"))
                lines.append(f"| {g} | {val:.3f} | {v.get('n', '')} |")
    lines.append("\nProtocols:\n")
    lines += [f"- `{n}`: {r['protocol']}" for n, r in doc["tasks"].items()]
    return "\n".join(lines) + "\n"


def samples_markdown(doc: dict) -> str:
    m = doc["model"]
    out = [f"# Samples: {m.get('name')}\n", f"Model `{m.get('spec')}`; {doc['date']}.\n"]
    s = doc["tasks"].get("samples")
    if s:
        out.append(f"{s['protocol']} (prompt format: {s.get('prompt_format')}).\n")
        for i, x in enumerate(s["samples"], 1):
            out += [f"## {i}. {x['kind']}: {x['prompt']}\n", "```text", x["output"].replace("```", "'''"), "```\n"]
    for name in ("ifeval", "ifeval-sampled"):
        r = doc["tasks"].get(name)
        if r and r.get("examples"):
            out.append(f"## {name}: first responses\n")
            for x in r["examples"][:6]:
                out += [f"**{x['kind']}** (score {x['score']:.2f}) *{x['prompt']}*\n", "```text",
                        x["response"].replace("```", "'''"), "```\n"]
    return "\n".join(out)


def write(doc: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eval.json"
    if path.exists():  # keep tasks this run did not redo, if it is the same model
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("model", {}).get("spec") == doc["model"].get("spec"):
            # each task records its own --limit, so tasks run with different limits can share a file
            for r in old.get("tasks", {}).values():
                r.setdefault("limit", old.get("limit"))
            doc["tasks"] = {**{k: v for k, v in old.get("tasks", {}).items() if k not in doc["tasks"]}, **doc["tasks"]}
            doc["errors"] = {k: v for k, v in {**old.get("errors", {}), **doc["errors"]}.items() if k not in doc["tasks"]}
            doc["seconds"] = sum(r.get("seconds", 0) for r in doc["tasks"].values())
            limits = {r.get("limit") for r in doc["tasks"].values()}
            doc["limit"] = limits.pop() if len(limits) == 1 else "per task"
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    atomic_write_text(out / "eval.md", markdown_table(doc))
    atomic_write_text(out / "samples.md", samples_markdown(doc))
    return path


def run(lm, task_names: list[str], limit: int, out_dir, extra: dict | None = None) -> dict:
    t0 = time.time()
    head = {"schema": SCHEMA, "model": lm.info, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(), "hardware": hardware_info(), "limit": limit or None,
            "prefix_doc_start": False, "start_token": START_TOKEN_PROTOCOL, **(extra or {})}

    load_start = load_average()

    def save(found):
        # load averages say whether the seconds were measured on a quiet machine
        doc = {**head, "seconds": round(time.time() - t0, 1), "loadavg_start": load_start,
               "loadavg_end": load_average(), **found}
        return doc, write(doc, out_dir)

    found = evaluate(lm, task_names, limit, on_task=save)
    doc, path = save(found)
    print(f"eval: {len(found['tasks'])} task(s) in {doc['seconds']:.0f}s -> {path} (+ eval.md, samples.md)")
    if found["errors"]:
        print(f"eval: {len(found['errors'])} task(s) not run: {', '.join(found['errors'])}")
    return dict(doc, run_errors=found["errors"], run_tasks=list(found["tasks"]))  # this run's, not the file's

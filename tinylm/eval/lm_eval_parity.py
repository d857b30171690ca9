"""lm-evaluation-harness side by side with `tinylm eval`, on the same examples from local files.

`tinylm eval` follows lm-evaluation-harness's protocol (eval/lm.py). This module checks that claim
with the harness itself: it rewrites tinylm's local data files into the harness's dataset layout,
writes task configs that `include:` the harness's own task YAML (prompt, target, choices, metrics
and !function hooks as the harness ships them) and only point the dataset at the local file, runs
`lm_eval --model hf` with default settings on a Hugging Face directory (`tinylm export --format
hf`), runs `tinylm eval` on the same directory, and prints both.

    python -m tinylm.eval.lm_eval_parity --model runs/me-hf --tasks wikitext,arc-easy,blimp --limit 100

Needs `pip install lm-eval` (the `test` extra); no network (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# tinylm task -> (the harness's task YAML, relative to lm_eval/tasks)
HARNESS_YAML = {"wikitext": "wikitext/wikitext.yaml", "arc-easy": "arc/arc_easy.yaml",
                "arc-challenge": "arc/arc_challenge.yaml", "blimp": "blimp/_template_yaml"}


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _task_yaml(path: Path, name: str, include: Path, data: Path, split: str, extra: str = "") -> None:
    # only the dataset changes: the harness's prompt, target, choices and metrics come from `include`
    splits = "".join(f"{s}_split: {split if s == split else 'null'}\n" for s in ("validation", "test"))
    path.write_text(f"include: {include}\ntask: {name}\ntag: []\ndataset_path: json\ndataset_name: null\n"
                    f"dataset_kwargs:\n  data_files:\n    {split}: {data}\n"
                    f"training_split: null\nfewshot_split: null\n{splits}" + extra, encoding="utf-8")


def write_harness_tasks(tasks: list[str], out: Path) -> dict[str, list[str]]:
    """Write the harness's dataset files and task configs for `tasks` from tinylm's local data (the
    data directory, as `tinylm eval` reads it). Returns tinylm task -> harness task names."""
    import lm_eval

    from tinylm.eval.tasks import multiple_choice as mc
    from tinylm.eval.tasks.base import find_data
    from tinylm.eval.tasks.blimp import read_blimp
    from tinylm.eval.tasks.perplexity import wikitext_pages

    root = Path(lm_eval.__file__).parent / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for task in tasks:
        if task not in HARNESS_YAML:
            raise ValueError(f"lm-eval side by side: no harness task for {task!r}; choose from {', '.join(HARNESS_YAML)}")
        include = root / HARNESS_YAML[task]
        if task == "wikitext":
            path = find_data(task, "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw")
            pages = wikitext_pages(path.read_text(encoding="utf-8"))  # as EleutherAI/wikitext_document_level
            _write_jsonl(out / "wikitext.jsonl", [{"page": p} for p in pages])
            _task_yaml(out / "wikitext.yaml", "tinylm_wikitext", include, out / "wikitext.jsonl", "test")
            names[task] = ["tinylm_wikitext"]
        elif task.startswith("arc-"):
            arc = getattr(mc, "ARCEasy" if task == "arc-easy" else "ARCChallenge")()
            arc.name = task
            docs, _ = arc.docs()
            rows = []
            for d in docs:  # back to allenai/ai2_arc's fields
                labels = [chr(ord("A") + i) for i in range(len(d.choices))]
                q = d.contexts[0].removeprefix("Question: ").removesuffix("\nAnswer:")
                rows.append({"question": q, "choices": {"text": d.choices, "label": labels}, "answerKey": labels[d.gold]})
            stem = task.replace("-", "_")
            _write_jsonl(out / f"{stem}.jsonl", rows)
            _task_yaml(out / f"{stem}.yaml", f"tinylm_{stem}", include, out / f"{stem}.jsonl", "test")
            names[task] = [f"tinylm_{stem}"]
        elif task == "blimp":
            rows, _ = read_blimp(task)
            by_uid: dict[str, list] = {}
            for r in rows:
                by_uid.setdefault(r["UID"], []).append(r)
            names[task] = []
            for uid, rs in sorted(by_uid.items()):  # one harness task per paradigm, as blimp_<uid>
                _write_jsonl(out / "blimp" / f"{uid}.jsonl", rs)
                _task_yaml(out / "blimp" / f"{uid}.yaml", f"tinylm_blimp_{uid}", include,
                           out / "blimp" / f"{uid}.jsonl", "validation")
                names[task].append(f"tinylm_blimp_{uid}")
    return names


def run_harness(hf_dir, names: dict[str, list[str]], include: Path, limit: int = 0) -> dict:
    """lm_eval.simple_evaluate with `--model hf` and default settings (batch size 1, no few-shot),
    on CPU in float32; bootstrap_iters=0 only skips the standard errors."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    flat = [n for ns in names.values() for n in ns]
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={hf_dir},dtype=float32", tasks=flat,
                                  device="cpu", limit=limit or None, bootstrap_iters=0, log_samples=True,
                                  task_manager=TaskManager(include_path=str(include)))
    return res["results"], res.get("samples", {})


def request_diffs(lm, samples: dict) -> tuple[int, float]:
    """(requests, largest |log-likelihood difference|): every (context, continuation) the harness
    scored, scored again by tinylm's engine from the same strings."""
    pairs, theirs = [], []
    for rows in samples.values():
        for s in rows:
            for args, resp in zip(s["arguments"], s["resps"]):
                if isinstance(args, (list, tuple)) and len(args) == 2 and isinstance(resp, list) and resp \
                        and isinstance(resp[0], (list, tuple)):
                    pairs.append(tuple(args))
                    theirs.append(float(resp[0][0]))
    ours = [ll for ll, _ in lm.loglikelihood(pairs)] if pairs else []
    return len(pairs), max((abs(a - b) for a, b in zip(ours, theirs)), default=0.0)


def harness_metrics(results: dict, names: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """tinylm-shaped metrics from the harness's results (BLiMP: the mean over paradigms, and each)."""
    out: dict[str, dict[str, float]] = {}
    for task, ns in names.items():
        if task == "blimp":
            accs = {n.removeprefix("tinylm_blimp_"): results[n]["acc,none"] for n in ns}
            out[task] = {"acc": sum(accs.values()) / len(accs), **{f"acc[{u}]": a for u, a in accs.items()}}
        else:
            out[task] = {k.split(",")[0]: v for k, v in results[ns[0]].items()
                         if k.endswith(",none") and "stderr" not in k and isinstance(v, (int, float))}
    return out


def tinylm_metrics(hf_dir, tasks: list[str], limit: int = 0) -> dict[str, dict[str, float]]:
    from tinylm.eval.harness import evaluate
    from tinylm.eval.lm import load

    found = evaluate(load(str(hf_dir)), tasks, limit, log=lambda *_: None)
    if found["errors"]:
        raise ValueError(f"tinylm eval: {found['errors']}")
    out = {}
    for task, r in found["tasks"].items():
        out[task] = {k: v["value"] for k, v in r["metrics"].items()}
        if task == "blimp":  # per paradigm; the harness's blimp is the mean over paradigms
            para = r["breakdown"]["paradigm"]
            out[task]["acc"] = sum(v["acc"] for v in para.values()) / len(para)
            out[task].update({f"acc[{u}]": v["acc"] for u, v in para.items()})
    return out


def side_by_side(hf_dir, tasks: list[str], limit: int, work: Path) -> list[dict]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = write_harness_tasks(tasks, work)
    t0 = time.time()
    results, samples = run_harness(hf_dir, names, work, limit)
    theirs = harness_metrics(results, names)
    t1 = time.time()
    ours = tinylm_metrics(hf_dir, tasks, limit)
    t2 = time.time()
    from tinylm.eval.lm import load

    n_req, worst = request_diffs(load(str(hf_dir)), samples)
    rows = []
    for task in tasks:
        for metric, v in ours[task].items():
            if metric in theirs[task]:
                rows.append({"task": task, "metric": metric, "tinylm": v, "lm_eval": theirs[task][metric],
                             "abs_diff": abs(v - theirs[task][metric])})
    rows.append({"requests": n_req, "max_abs_loglikelihood_diff": worst,
                 "seconds": {"lm_eval": round(t1 - t0, 1), "tinylm": round(t2 - t1, 1)}})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a Hugging Face directory (tinylm export --format hf)")
    ap.add_argument("--tasks", default="wikitext,arc-easy,blimp", help=f"comma-separated, from {', '.join(HARNESS_YAML)}")
    ap.add_argument("--limit", type=int, default=0, help="first N examples per task (per paradigm for BLiMP); 0 = all")
    ap.add_argument("--work", default="runs/lm_eval_parity", help="where the harness's task files are written")
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    rows = side_by_side(a.model, a.tasks.split(","), a.limit, Path(a.work))
    print(f"{'task':<14} {'metric':<34} {'tinylm eval':>14} {'lm_eval hf':>14} {'|diff|':>10}")
    for r in rows[:-1]:
        print(f"{r['task']:<14} {r['metric']:<34} {r['tinylm']:>14.6f} {r['lm_eval']:>14.6f} {r['abs_diff']:>10.2e}")
    print(f"{rows[-1]['requests']} (context, continuation) requests of the harness rescored by tinylm: "
          f"largest |log-likelihood difference| {rows[-1]['max_abs_loglikelihood_diff']:.2e}")
    print(f"seconds: {rows[-1]['seconds']}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"model": a.model, "tasks": a.tasks, "limit": a.limit, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

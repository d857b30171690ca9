"""Summarise the copying-drill experiment (run.sh): for every model, greedy constraint satisfaction on
the 300 held-out instructions (with its 95% interval and per kind), the degenerate rate of those
answers (tinylm.train.rollout.degenerate, the reward-hacking guard), and in-context copying (the
`copy` evaluation task). Writes summary.json and summary.md beside this file.

    python results/gc-1m-copy/summarize.py BASE_RUN_DIR RUNS_COPY_DIR
"""

import json
import sys
from collections import Counter
from pathlib import Path

from tinylm.tasks.base import Example
from tinylm.train.rollout import degenerate

KINDS = ("continue", "ends_with", "keywords", "max_sentences", "title")


def row(ifeval_path: Path, eval_path: Path) -> dict | None:
    if not ifeval_path.is_file():
        return None
    d = json.loads(ifeval_path.read_text())
    reasons = Counter(degenerate(Example([], {"kind": r["kind"]}), r["response"]) for r in d["responses"])
    n = len(d["responses"])
    out = {"ifeval": str(ifeval_path), "checkpoint": d["checkpoint"], "greedy": d["score"], "ci95": d["ci95"],
           "by_kind": {k: d["by_kind"][k]["score"] for k in KINDS if k in d["by_kind"]},
           "degenerate_rate": 1 - reasons.pop(None, 0) / n, "degenerate_reasons": dict(reasons),
           "ends_with_pasted_alone": sum(1 for r in d["responses"] if r["kind"] == "ends_with" and r["score"] == 1
                                         and degenerate(Example([], {"kind": "ends_with"}), r["response"]) == "pasted_end")}
    if eval_path.is_file():
        m = json.loads(eval_path.read_text())["tasks"]["copy"]["metrics"]
        out["copy"] = {k: v["value"] for k, v in m.items()} | {"copy_gain_ci95": m["copy_gain"]["ci95"]}
    return out


def main(base: str, runs: str) -> None:
    base, runs = Path(base), Path(runs)
    models = {"base": (base / "ifeval-base.json", runs / "eval-base/eval.json"),
              "sft (default mixture)": (base / "ifeval-sft.json", runs / "eval-sft/eval.json"),
              "rpo (default pipeline)": (base / "ifeval-dpo.json", runs / "eval-dpo/eval.json")}
    for p in sorted(runs.glob("ifeval-*.json")):
        name = p.stem[len("ifeval-"):]
        models[name] = (p, runs / f"eval-{name}/eval.json")
    rows = {name: r for name, (a, b) in models.items() if (r := row(a, b))}
    here = Path(__file__).parent
    (here / "summary.json").write_text(json.dumps({"models": rows}, indent=1) + "\n")
    lines = ["| model | greedy ± 95% CI | " + " | ".join(KINDS) + " | degenerate | copy_gain |",
             "|---|---|" + "---|" * len(KINDS) + "---|---|"]
    for name, r in rows.items():
        cg = r.get("copy", {}).get("copy_gain")
        lines.append(f"| {name} | {r['greedy']:.3f} ± {r['ci95']:.3f} | "
                     + " | ".join(f"{r['by_kind'].get(k, float('nan')):.2f}" for k in KINDS)
                     + f" | {r['degenerate_rate']:.0%} | {'' if cg is None else f'{cg:.3f}'} |")
    (here / "summary.md").write_text("\n".join(lines) + "\n")
    (here / "runs.json").write_text(json.dumps(collect_runs(runs), indent=1) + "\n")
    print("\n".join(lines))


def collect_runs(runs: Path) -> dict:
    """Per run directory under `runs` (pretraining, SFT, RPO, nested too): config, summary, last
    metrics line with a validation score, and bits per byte files; written to runs.json."""
    out = {}
    for cfg in sorted(runs.rglob("config.json")):
        d = cfg.parent
        if "checkpoints" in d.parts:
            continue
        rec = {"config": json.loads(cfg.read_text())}
        for name in ("summary.json", "bpb-gutenberg-children.json"):
            if (d / name).is_file():
                rec[name[:-5]] = {k: v for k, v in json.loads((d / name).read_text()).items() if not isinstance(v, list)}
        m = d / "metrics.jsonl"
        if m.is_file():
            rows = [json.loads(x) for x in m.read_text().splitlines() if x.strip()]
            val = [r for r in rows if "val_bpb" in r or "val_loss" in r]
            rec["last_metrics"] = rows[-1] if rows else None
            rec["last_validation"] = val[-1] if val else None
        out[str(d.relative_to(runs))] = rec
    return out


if __name__ == "__main__":
    main(*sys.argv[1:3])

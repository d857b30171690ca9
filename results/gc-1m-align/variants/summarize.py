"""One table of the alignment variants: greedy held-out score (300 prompts) with its 95% interval and
per-kind scores, the stage's recipe and data counts, its wall-clock and the load it ran under.
Usage: python summarize.py RUNS_EXP_DIR OUT.json"""
import json
import sys
from pathlib import Path

exp, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = {}
for ev in sorted(exp.glob("ifeval-*.json")):
    name = ev.stem[len("ifeval-"):]
    d = json.loads(ev.read_text())
    run = exp / name
    summ = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    rows[name] = {"greedy_score": round(d["score"], 4), "ci95": round(d["ci95"], 4), "n": d["n_prompts"],
                  "by_kind": {k: round(v["score"], 3) for k, v in d["by_kind"].items()},
                  "checkpoint": d["checkpoint"], "stage": cfg.get("stage"),
                  "recipe": summ.get("hyperparameters"), "data": summ.get("data"),
                  "wall_clock_s": summ.get("wall_clock_s"), "load_average_1_5_15": summ.get("load_average_1_5_15"),
                  "eval_seconds": d.get("seconds")}
out.write_text(json.dumps(rows, indent=1) + "\n")
for k, r in sorted(rows.items(), key=lambda kv: -kv[1]["greedy_score"]):
    print(f"{k:14s} {r['greedy_score']:.3f} ± {r['ci95']:.3f}  " + " ".join(f"{a}={b:.2f}" for a, b in sorted(r["by_kind"].items())))

"""Time to quality: does a pretraining recipe reach the old default's final validation loss sooner?

Trains the *baseline* recipe (today's default, spelled out flag by flag so that changing the
defaults never changes it) and one or more *candidate* recipes on the same prepared data, on the
same machine, at the same time: the baseline in one slot, the candidates one after another in the
other slot (and in the first once the baseline is done: a baseline reused from an earlier sitting
leaves both slots to candidates), each a `tinylm pretrain` subprocess with `--threads` intra-op threads (1 by default:
two 1-thread jobs on a 2-core CPU is the arrangement in which neither disturbs the other). Then it
scores every final checkpoint on the *whole* validation shard (the same windows for all recipes;
the in-loop curve uses the first eval_batches x batch_size windows, so recipes with other batch
sizes see other windows: 1.502 in-loop against 1.667 on the whole shard for one Muon run, so in-loop
figures are never compared across recipes here) and prints, per candidate:

    wall-clock ratio  = candidate training wall-clock / baseline training wall-clock
    reached           = candidate final val bpb <= baseline final val bpb

The target of issue 13 is ratio <= 0.5 with reached = True. Wall-clock is the subprocess's own,
start to exit (model build, evaluations and checkpoints included), and the load average is
recorded at both ends of every run. A killed benchmark resumes: finished runs (a `ttq.json` in
their run directory) are reused, unfinished ones continue from their newest checkpoint (their
wall-clock is then the trainer's `elapsed_s`, and the row says `resumed`).

Run:
    python bench/time_to_quality.py --data runs/default/data \\
        --candidate new="" --out bench/results/time_to_quality.json
(`new=""` is the current default recipe; `--candidate muon="--train.optimizer muon"` any other.)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS, loadavg, write_result  # noqa: E402

# The default pretraining recipe before issue 13 (tinylm 0.1.0 at c6ab2dc): AdamW, the 1m preset,
# 2000 steps of 8192 tokens (32 x 256), cosine to 0.1 x lr after 100 warmup steps.
BASELINE = ("--preset 1m --train.optimizer adamw --train.lr 3e-3 --train.schedule cosine --train.warmup_steps 100 "
            "--train.min_lr_frac 0.1 --train.batch_size 32 --train.total_batch_tokens 8192 --train.max_steps 2000 "
            "--train.weight_decay 0.1 --train.compile false")
# the same bookkeeping for every recipe, so that neither pays for more evaluations or samples
BOOKKEEPING = "--train.eval_every 250 --train.eval_batches 10 --train.sample_every 0 --train.save_every 250"


def run_recipe(name: str, flags: str, args) -> dict:
    """Train one recipe to its end (or reuse a finished run); returns its timing row."""
    run_dir = Path(args.run_root) / name
    marker = run_dir / "ttq.json"
    full_flags = f"{flags} {BOOKKEEPING} --train.seed {args.seed} --train.threads {args.threads}"
    if marker.exists():
        row = json.loads(marker.read_text())
        if row.get("flags") == full_flags and row.get("data") == args.data:
            print(f"[{name}] finished earlier: reused ({row['wall_s']:.0f} s)", flush=True)
            return row
    adopted = _finished_run(run_dir, full_flags, args)
    if adopted:
        print(f"[{name}] finished outside this script: adopted ({adopted['train_elapsed_s']:.0f} s)", flush=True)
        return adopted
    resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    cmd = [sys.executable, "-m", "tinylm", "pretrain", "--train.run_dir", str(run_dir), "--train.data", args.data,
           *shlex.split(full_flags), *(["--resume"] if resume else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {'resuming' if resume else 'starting'}: {shlex.join(cmd[1:])}", flush=True)
    load0, t0 = loadavg(), time.perf_counter()
    with open(run_dir / "ttq.log", "a") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"error: recipe {name!r} failed (exit {rc}); see {run_dir / 'ttq.log'}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    row = _row(name, full_flags, args, rows, rows[-1]["elapsed_s"] if resume else wall, resume, load0)
    marker.write_text(json.dumps(row, indent=1) + "\n")
    print(f"[{name}] done: {row['steps']} steps, {row['tokens']:,} tokens, {row['wall_s']:.0f} s", flush=True)
    return row


def _row(name, flags, args, rows, wall, resumed, load0=None, note="") -> dict:
    last = rows[-1]
    return {"name": name, "flags": flags, "data": args.data, "resumed": resumed, "note": note,
            "wall_s": round(wall, 2), "train_elapsed_s": last["elapsed_s"],
            "steps": last["step"], "tokens": last["tokens"], "loadavg_start": load0, "loadavg_end": loadavg(),
            "loadavg_during": [r["loadavg"] for r in rows if "loadavg" in r][:: max(1, len(rows) // 20)],
            "curve": [{"step": r["step"], "tokens": r["tokens"], "elapsed_s": r["elapsed_s"], "val_bpb": r["val_bpb"]}
                      for r in rows if "val_bpb" in r]}


def _finished_run(run_dir: Path, full_flags: str, args) -> dict | None:
    """A run of this recipe that reached its last step without this script (started by hand beside
    the benchmark with the same flags): its row, timed by the trainer's own elapsed_s."""
    cfg_path, metrics = run_dir / "config.json", run_dir / "metrics.jsonl"
    if not (cfg_path.exists() and metrics.exists()):
        return None
    train = json.loads(cfg_path.read_text())["config"]["train"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    flags = shlex.split(full_flags)
    want = {flags[i][len("--train."):]: flags[i + 1] for i in range(len(flags) - 1) if flags[i].startswith("--train.")}
    same = all(str(train.get(k)).lower() == v.lower() or _num_eq(train.get(k), v) for k, v in want.items())
    if not same or train.get("data") != args.data or not rows or rows[-1]["step"] != train["max_steps"]:
        return None
    row = _row(run_dir.name, full_flags, args, rows, rows[-1]["elapsed_s"], False,
               note="started by hand with these flags beside the benchmark; wall_s is the trainer's elapsed_s")
    (run_dir / "ttq.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def _num_eq(a, b: str) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def final_val_bpb(run_dir, data: str, batch_size: int = 32) -> dict:
    """Bits per byte of a run's final checkpoint on every full window of the validation shard."""
    import torch

    from tinylm.bpb import batches_bpb
    from tinylm.data.loader import TokenLoader
    from tinylm.data.shards import load_prepared
    from tinylm.train.checkpoint import load_model

    model, tok, _ = load_model(run_dir)
    _, val_path, _ = load_prepared(data)
    T = model.cfg.seq_len
    val = TokenLoader([val_path], batch_size, T, shuffle=False, vocab_size=tok.vocab_size)
    batches = [val.next_batch() for _ in range(val.n_windows // batch_size)]
    bpb = batches_bpb(model, batches, torch.tensor(tok.token_bytes, dtype=torch.float32))
    return {"val_bpb": bpb, "val_tokens": len(batches) * batch_size * T}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a `tinylm prepare` directory (the same for every recipe)")
    ap.add_argument("--candidate", action="append", default=[], metavar='NAME="FLAGS"',
                    help='a recipe to compare with the baseline, as tinylm pretrain flags; repeatable; '
                         'default: new="" (the current defaults)')
    ap.add_argument("--run_root", default="runs/ttq", help="run directories go here (resumable)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out", default=str(RESULTS / "time_to_quality.json"))
    args = ap.parse_args(argv)
    candidates = {}
    for item in args.candidate or ['new=']:
        name, sep, flags = item.partition("=")
        if not sep or not name.isidentifier():
            ap.error(f"--candidate {item!r}: expected NAME=FLAGS")
        candidates[name] = flags
    if not (Path(args.data) / "prepare.json").is_file():
        ap.error(f"--data {args.data}: no prepare.json; pass a `tinylm prepare` directory")
    import torch

    torch.set_num_threads(2)
    load0 = loadavg()
    results: dict[str, dict] = {}

    queue, lock = list(candidates.items()), threading.Lock()

    def take_candidates():
        while True:
            with lock:
                if not queue:
                    return
                name, flags = queue.pop(0)
            results[name] = run_recipe(name, flags, args)

    def slot_a():  # the baseline, then (a reused baseline ends at once) candidates, so no core idles
        results["baseline"] = run_recipe("baseline", BASELINE, args)
        take_candidates()

    slots = [threading.Thread(target=slot_a), threading.Thread(target=take_candidates)]
    for t in slots:
        t.start()
    for t in slots:
        t.join()
    if any(name not in results for name in ["baseline", *candidates]):
        raise SystemExit("error: a recipe did not finish")
    for name, row in results.items():
        row.update(final_val_bpb(Path(args.run_root) / name, args.data))
    base = results["baseline"]
    print(f"\nbaseline: {base['steps']} steps, {base['wall_s']:.0f} s, final val bpb {base['val_bpb']:.4f} "
          f"(whole validation shard, {base['val_tokens']:,} tokens)")
    print(f"{'recipe':<16} {'train s':>8} {'ratio':>6} {'val bpb':>8} {'delta':>8}  reached")
    for name, row in results.items():
        # the trainer's elapsed_s: one clock for every recipe, adopted runs included (the
        # subprocess wall-clock adds the same few seconds of start-up to each)
        row["wall_ratio"] = round(row["train_elapsed_s"] / base["train_elapsed_s"], 3)
        row["delta_bpb"] = round(row["val_bpb"] - base["val_bpb"], 4)
        row["reached"] = row["val_bpb"] <= base["val_bpb"]
        print(f"{name:<16} {row['train_elapsed_s']:>8.0f} {row['wall_ratio']:>6.3f} {row['val_bpb']:>8.4f} "
              f"{row['delta_bpb']:>+8.4f}  {row['reached']}")
    write_result("time_to_quality", args.out, {
        "method": "baseline and candidates run side by side, one subprocess per slot; final checkpoints "
                  "scored on every full window of the validation shard",
        "data": args.data, "threads_per_run": args.threads, "baseline_flags": BASELINE, "bookkeeping": BOOKKEEPING,
        "loadavg_start": load0, "recipes": results,
        "target": "a candidate reaches the baseline's final val bpb in at most half its wall-clock"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

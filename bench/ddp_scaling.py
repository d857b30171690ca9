"""Data-parallel scaling on this CPU: 1 process vs 2 processes (DDP over gloo), same global batch.

The comparison a 2-core laptop user faces: one process using both cores (2 intra-op threads)
against two processes with one thread each, every optimizer step processing the same 32 x 256
tokens (16 sequences per rank with 2 processes). Also one process with one thread, the per-core
baseline. Reported honestly: on 2 cores, DDP can only win if one process cannot use both cores well.
FSDP (`--train.parallel fsdp`) on the same 2 processes shows what sharding costs in communication
when the model would fit anyway. The configurations alternate within each round, so a busy spell
on this shared machine hits all of them; every round is recorded with the load averages.

Run: python bench/ddp_scaling.py [--preset 1m] [--steps 20]
Writes bench/results/ddp_scaling.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

import torch
import torch.multiprocessing as mp

from common import RESULTS, RandomBatches, loadavg, write_result
from tinylm.config import TrainConfig, model_preset
from tinylm.model import GPT
from tinylm.runtime import Runtime
from tinylm.train.loop import Trainer

GLOBAL_BATCH = 32


def measure(rank: int, world: int, threads: int, preset: str, steps: int, port: int, queue, parallel: str) -> None:
    if world > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = model_preset(preset)
    B = GLOBAL_BATCH // world
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainConfig(run_dir=tmp, batch_size=B, total_batch_tokens=GLOBAL_BATCH * cfg.seq_len, device="cpu",
                         parallel=parallel)
        rt = Runtime.create("cpu", "bf16")
        trainer = Trainer(rt, tc, GPT(cfg), RandomBatches(B, cfg.seq_len, cfg.vocab_size, seed=rank))
        for _ in range(3):
            trainer.train_step(1e-3)
        if world > 1:
            torch.distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(1e-3)
        dt = time.perf_counter() - t0
        if world > 1:
            torch.distributed.destroy_process_group()
    if rank == 0:
        queue.put(GLOBAL_BATCH * cfg.seq_len * steps / dt)


def run(world: int, threads: int, preset: str, steps: int, parallel: str = "ddp") -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=measure, args=(r, world, threads, preset, steps, port, queue, parallel)) for r in range(world)]
    for p in procs:
        p.start()
    tps = queue.get()
    for p in procs:
        p.join()
    return tps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="1m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "ddp_scaling.json"))
    args = ap.parse_args()
    configs = [("1 process x 1 thread", 1, 1, "ddp"), ("1 process x 2 threads", 1, 2, "ddp"),
               ("2 processes (DDP, gloo) x 1 thread", 2, 1, "ddp"), ("2 processes (FSDP, gloo) x 1 thread", 2, 1, "fsdp")]
    load_start = loadavg()
    seen: dict[str, list] = {name: [] for name, *_ in configs}
    for r in range(args.rounds):
        for name, world, threads, parallel in configs:
            tps = run(world, threads, args.preset, args.steps, parallel)
            seen[name].append({"tok_per_s": round(tps, 1), "loadavg": loadavg()})
            print(f"round {r}: {name:<38} {tps:>9,.0f} tok/s (load {seen[name][-1]['loadavg'][0]})", flush=True)
    rows = []
    for name, world, threads, parallel in configs:
        tps = max(x["tok_per_s"] for x in seen[name])
        rows.append({"config": name, "processes": world, "threads_per_process": threads, "parallel": parallel,
                     "tok_per_s": tps, "rounds": seen[name]})
    base = rows[0]["tok_per_s"]
    for r in rows:
        r["vs_one_core"] = round(r["tok_per_s"] / base, 2)
    ddp, single, fsdp = rows[2]["tok_per_s"], rows[1]["tok_per_s"], rows[3]["tok_per_s"]
    print(f"DDP on 2 processes vs 1 process on both cores: {ddp / single:.2f}x; scaling efficiency vs 1 core: "
          f"{ddp / (2 * base):.0%}; FSDP vs DDP: {fsdp / ddp:.2f}x")
    write_result("ddp_scaling", args.out, {"preset": args.preset, "global_batch": GLOBAL_BATCH, "steps": args.steps,
                                          "loadavg_start": load_start, "rows": rows,
                                          "ddp_vs_single_process": round(ddp / single, 2),
                                          "ddp_scaling_efficiency_vs_one_core": round(ddp / (2 * base), 3),
                                          "fsdp_vs_ddp": round(fsdp / ddp, 2)})


if __name__ == "__main__":
    main()

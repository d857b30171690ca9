"""Data-parallel scaling on this CPU: 1 process vs 2 processes (DDP over gloo), same global batch.

The comparison a 2-core laptop user faces: one process using both cores (2 intra-op threads)
against two processes with one thread each, every optimizer step processing the same 32 x 256
tokens (16 sequences per rank with 2 processes). Also one process with one thread, the per-core
baseline. Reported honestly: on 2 cores, DDP can only win if one process cannot use both cores well.

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

from common import RESULTS, RandomBatches, write_result
from tinylm.config import TrainConfig, model_preset
from tinylm.model import GPT
from tinylm.runtime import Runtime
from tinylm.train.loop import Trainer

GLOBAL_BATCH = 32


def measure(rank: int, world: int, threads: int, preset: str, steps: int, port: int, queue) -> None:
    if world > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = model_preset(preset)
    B = GLOBAL_BATCH // world
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainConfig(run_dir=tmp, batch_size=B, total_batch_tokens=GLOBAL_BATCH * cfg.seq_len, device="cpu")
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


def run(world: int, threads: int, preset: str, steps: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=measure, args=(r, world, threads, preset, steps, port, queue)) for r in range(world)]
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
    configs = [("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2), ("2 processes (DDP, gloo) x 1 thread", 2, 1)]
    rows = []
    for name, world, threads in configs:
        tps = max(run(world, threads, args.preset, args.steps) for _ in range(args.rounds))
        rows.append({"config": name, "processes": world, "threads_per_process": threads, "tok_per_s": round(tps, 1)})
        print(f"{name:<38} {tps:>9,.0f} tok/s", flush=True)
    base = rows[0]["tok_per_s"]
    for r in rows:
        r["vs_one_core"] = round(r["tok_per_s"] / base, 2)
    ddp, single = rows[2]["tok_per_s"], rows[1]["tok_per_s"]
    print(f"DDP on 2 processes vs 1 process on both cores: {ddp / single:.2f}x; scaling efficiency vs 1 core: "
          f"{ddp / (2 * base):.0%}")
    write_result("ddp_scaling", args.out, {"preset": args.preset, "global_batch": GLOBAL_BATCH, "steps": args.steps,
                                          "rows": rows, "ddp_vs_single_process": round(ddp / single, 2),
                                          "ddp_scaling_efficiency_vs_one_core": round(ddp / (2 * base), 3)})


if __name__ == "__main__":
    main()

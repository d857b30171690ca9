"""What does each optimizer cost per training step? AdamW, torch.optim.Muon and tinylm's Muon.

One pretraining step of the 1m preset (batch 16 x 256, the default recipe's micro-batch) through
`Trainer.train_step`, with the optimizer swapped: AdamW everywhere; `torch.optim.Muon` on the block
matrices (its Newton-Schulz iteration always in bf16); tinylm's `Muon` with the iteration in fp32
and in bf16. Paired rounds (every variant once per round, in rotating order) so that a change in
machine load hits all of them; the median tokens/s per variant and its ratio to AdamW are printed.
On a CPU without native bf16 the bf16 iteration is emulated, which is why tinylm iterates in fp32
there (`tinylm.train.optim.build_optimizer`).

Run: python bench/optimizer_step.py [--threads 1] [--rounds 5] [--seconds 4]
Writes bench/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from common import RESULTS, RandomBatches, loadavg, steps_per_second, write_result
from tinylm.config import TrainConfig, model_preset
from tinylm.model import GPT
from tinylm.runtime import Runtime
from tinylm.train.loop import Trainer
from tinylm.train.optim import ChainedOptimizer, Muon, muon_split, param_groups

VARIANTS = ("adamw", "torch Muon (bf16 NS)", "tinylm Muon (fp32 NS)", "tinylm Muon (bf16 NS)")


def make_step(variant: str, tmp: str, batch: int):
    torch.manual_seed(0)
    cfg = model_preset("1m")
    tc = TrainConfig(run_dir=tmp, batch_size=batch, total_batch_tokens=batch * cfg.seq_len, device="cpu", dtype="fp32")
    model = GPT(cfg)
    trainer = Trainer(Runtime.create("cpu", tc.dtype), tc, model, RandomBatches(batch, cfg.seq_len, cfg.vocab_size))
    adamw = lambda groups: torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.95), foreach=True)  # noqa: E731
    if variant == "adamw":
        trainer.optimizer = adamw(param_groups(model, tc.weight_decay))
    else:
        matrices, rest = muon_split(model)
        if variant.startswith("torch"):
            muon = torch.optim.Muon(matrices, lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
        else:
            muon = Muon(matrices, lr=0.02, ns_dtype=torch.float32 if "fp32" in variant else torch.bfloat16)
        trainer.optimizer = ChainedOptimizer([muon, adamw([{"params": rest, "weight_decay": 0.0}])])
    return lambda: trainer.train_step(1e-3)




def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(RESULTS / "optimizer_step.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = loadavg()
    tokens = args.batch * 256
    with tempfile.TemporaryDirectory() as tmp:
        steps = {v: make_step(v, tmp, args.batch) for v in VARIANTS}
        rounds = []
        for r in range(args.rounds):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]
            rounds.append({v: round(steps_per_second(steps[v], args.seconds, warmup=2) * tokens, 1) for v in order} | {"loadavg": loadavg()})
    med = {v: statistics.median(x[v] for x in rounds) for v in VARIANTS}
    print(f"1m preset, batch {args.batch} x 256, {args.threads} thread(s), fp32 autocast, median of {args.rounds} rounds")
    for v in VARIANTS:
        print(f"  {v:<24} {med[v]:>9,.0f} tok/s   {med[v] / med['adamw']:.3f} x AdamW")
    write_result("optimizer_step", args.out, {"preset": "1m", "batch": f"{args.batch} x 256", "threads": args.threads,
                                              "median_tok_per_s": med,
                                              "vs_adamw": {v: round(med[v] / med["adamw"], 3) for v in VARIANTS},
                                              "loadavg_start": load0, "rounds": rounds})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

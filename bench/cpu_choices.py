"""Which CPU training choices win? Each measured against tinylm's default step in the same run.

Default step (what `tinylm pretrain` runs on CPU): bf16 autocast, foreach AdamW, chunked
cross-entropy outside autocast, torch's default thread count, eager. Each row changes one choice:
fp32, torch.compile, single-tensor or fused AdamW, `F.cross_entropy` on fp32 logits, one thread.
Timed through `Trainer.train_step` on the 1m preset, batch 32 x 256; best of `--rounds`.

Run: python bench/cpu_choices.py [--preset 1m] [--seconds 6]
Writes bench/results/cpu_choices.json.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

from common import RESULTS, RandomBatches, steps_per_second, write_result
from tinylm.config import TrainConfig, model_preset
from tinylm.model import GPT
from tinylm.runtime import Runtime
from tinylm.train import objectives
from tinylm.train.loop import Trainer
from tinylm.train.optim import param_groups


def plain_cross_entropy(logits, targets):
    return F.cross_entropy(logits.float(), targets, ignore_index=objectives.IGNORE_INDEX, reduction="sum")


def make_step(preset, choice, tmp):
    torch.manual_seed(0)
    cfg = model_preset(preset)
    tc = TrainConfig(run_dir=tmp, batch_size=32, total_batch_tokens=32 * cfg.seq_len, device="cpu",
                     dtype="fp32" if choice == "fp32" else "bf16", compile=choice == "compile")
    model = GPT(cfg)
    trainer = Trainer(Runtime.create("cpu", tc.dtype), tc, model, RandomBatches(32, cfg.seq_len, cfg.vocab_size))
    if choice in ("adamw single-tensor", "adamw fused"):
        trainer.optimizer = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, 0.95),
                                              foreach=False, fused=choice == "adamw fused")
    return lambda: trainer.train_step(1e-3)




def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="1m")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "cpu_choices.json"))
    args = ap.parse_args()
    choices = ["default", "fp32", "compile", "adamw single-tensor", "adamw fused", "F.cross_entropy", "1 thread"]
    threads = torch.get_num_threads()
    best = {c: 0.0 for c in choices}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for c in choices:
                torch.set_num_threads(1 if c == "1 thread" else threads)
                saved = objectives.cross_entropy_sum
                if c == "F.cross_entropy":
                    objectives.cross_entropy_sum = plain_cross_entropy
                try:
                    steps_per_s = steps_per_second(make_step(args.preset, c, tmp), args.seconds)
                finally:
                    objectives.cross_entropy_sum = saved
                best[c] = max(best[c], steps_per_s)
                print(f"round {r} {c:<22} {steps_per_s * 32 * 256:>9,.0f} tok/s", flush=True)
    torch.set_num_threads(threads)
    rows = [{"choice": c, "tok_per_s": round(best[c] * 32 * 256, 1), "vs_default": round(best[c] / best["default"], 3)}
            for c in choices]
    for r in rows:
        print(f"{r['choice']:<22} {r['tok_per_s']:>9,.0f} tok/s  {r['vs_default']:.2f}x default")
    write_result("cpu_choices", args.out, {"preset": args.preset, "batch": "32 x 256", "threads_default": threads,
                                          "rows": rows})


if __name__ == "__main__":
    main()

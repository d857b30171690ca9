"""Stage: a reward model (InstructGPT, Ouyang et al. 2022, §3.5): the SFT model plus a scalar head,
trained on preference pairs with the Bradley-Terry loss -log sigma(r(x, y_c) - r(x, y_r)).

Pairs: hh-rlhf (Anthropic HH-RLHF, parsed into the chat template; only its test splits are local,
so they are split by prompt into RM-train and held-out), on-policy (constraint pairs: the SFT
model's best vs worst of K answers under the checker) or pairs:PATH. The reward of an answer is the
head's output at its last token. Pairwise accuracy on held-out pairs (chance 0.5) is logged at each
evaluation and written with its 95% interval to summary.json, for the training source and for each
`also_eval` source.

Run: tinylm rm --checkpoint runs/default/sft --pairs hh-rlhf --train.run_dir runs/default/rm
"""

from __future__ import annotations

import math
import time
import zlib
from pathlib import Path

import torch

from tinylm.config import RMConfig, save_json, to_dict
from tinylm.data.preference import PairLoader, load_pairs
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks import get_task
from tinylm.train.align import last_token_index, load_policy, write_summary
from tinylm.train.loop import Trainer
from tinylm.train.rollout import cached_samples, onpolicy_pairs, training_prompts


def split_pairs(pairs, percent: float):
    """(train, held-out) by a hash of the prompt: one prompt's pairs never straddle the split."""
    test = [p for p in pairs if zlib.crc32(repr(p.prompt).encode()) % 10_000 < percent * 100]
    train = [p for p in pairs if zlib.crc32(repr(p.prompt).encode()) % 10_000 >= percent * 100]
    return train, test


@torch.no_grad()
def pairwise_accuracy(model, loader: PairLoader, autocast) -> dict:
    """Fraction of pairs with r(chosen) > r(rejected), with its 95% (normal) interval; chance 0.5."""
    wins = []
    device = next(model.parameters()).device
    for _, (x, y, _) in loader.all_batches(16):
        with autocast():
            scores = model(x.to(device), heads="score")
        r = scores[torch.arange(x.size(0)), last_token_index(y.to(device))]
        B = x.size(0) // 2
        wins += (r[:B] > r[B:]).float().tolist()
    n = len(wins)
    acc = sum(wins) / max(n, 1)
    se = math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    return {"accuracy": acc, "ci95": 1.96 * se, "n": n, "chance": 0.5}


def get_pairs(spec: str, cfg: RMConfig, policy, tok, run_dir: Path, seed: int):
    if spec == "on-policy":
        task = get_task(cfg.task, cfg.data_seed)
        s = cfg.sampling
        examples, _ = training_prompts(tok, task, s.kinds, s.prompts, policy.cfg.seq_len, cfg.data_seed)
        scored = cached_samples(run_dir / "onpolicy_samples.json", policy, tok, task, examples, s, seed=seed)
        pairs, stats = onpolicy_pairs(examples, scored)
        return pairs, stats
    pairs, skipped = load_pairs(spec)
    return pairs, {"malformed_skipped": skipped}


def build(cfg: RMConfig) -> tuple[Trainer, dict, list]:
    tc = cfg.train
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    model, tok, ckpt = load_policy(cfg.checkpoint, rt.device, value_head=True)
    run_dir = Path(tc.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    T = model.cfg.seq_len
    pairs, stats = get_pairs(cfg.pairs, cfg, model, tok, run_dir, tc.seed)
    train, test = split_pairs(pairs, cfg.heldout_percent)
    loader = PairLoader(tok, train, tc.batch_size, T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size)
    heldout = [(cfg.pairs, PairLoader(tok, test, 1, T, shuffle=False))]
    for spec in [s.strip() for s in cfg.also_eval.split(",") if s.strip()]:
        other, _ = get_pairs(spec, cfg, model, tok, run_dir, tc.seed)
        heldout.append((spec, PairLoader(tok, split_pairs(other, cfg.heldout_percent)[1], 1, T, shuffle=False)))
    data = {"pairs_source": cfg.pairs, **stats, "train_pairs": len(loader.rows), "train_skipped": loader.skipped,
            "heldout_pairs": {name: len(ld.rows) for name, ld in heldout}}

    def evaluate(m):
        return {f"heldout_accuracy/{heldout[0][0]}": pairwise_accuracy(m, heldout[0][1], rt.autocast)["accuracy"]}

    run_config = {"stage": "rm", "config": {"model": to_dict(model.cfg), "train": to_dict(tc), "rm": to_dict(cfg)}}
    if rt.is_main:
        save_json({**run_config, "data": data, "base_checkpoint": str(ckpt)}, run_dir / "config.json")
        print(f"rm: from {ckpt}; {len(loader.rows):,} training pairs from {cfg.pairs} (skipped {loader.skipped}), "
              f"held out {data['heldout_pairs']}")
    from tinylm.train.align import rm_objective

    trainer = Trainer(rt, tc, model, loader, objective=rm_objective, evaluate=evaluate, run_config=run_config,
                      tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data, heldout


def run(cfg: RMConfig, resume: bool = False) -> dict:
    t0 = time.time()
    trainer, data, heldout = build(cfg)
    summary = trainer.fit(resume=resume)
    trainer.model.eval()
    acc = {name: pairwise_accuracy(trainer.model, ld, trainer.rt.autocast) for name, ld in heldout}
    summary["heldout_accuracy"] = acc
    if trainer.rt.is_main:
        hyper = {"lr": cfg.train.lr, "steps": cfg.train.max_steps, "batch_pairs": cfg.train.batch_size}
        summary = write_summary(cfg.train.run_dir, "rm", summary, data, hyper, t0)
        for name, a in acc.items():
            print(f"rm: held-out pairwise accuracy on {name}: {a['accuracy']:.3f} ± {a['ci95']:.3f} (n={a['n']}, chance 0.5)")
    return summary

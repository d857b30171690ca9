"""Stage: direct preference optimisation (Rafailov et al. 2023) of an SFT model.

Pairs come from the user (pairs:PATH), Anthropic HH-RLHF (hh-rlhf), or, by default, from the SFT
model itself: K answers sampled for each training instruction, scored by the constraint checker,
best vs worst kept, ties dropped and counted (onpolicy_pairs.jsonl). The frozen reference is the
SFT model; its log-probabilities are either precomputed once (`ref_logprobs=precompute`: one pass,
then no reference model in memory during training) or computed on every batch (`online`). Both
give the same loss; tinylm's measurement of the two is in README.md.

Logged per step: rewards_chosen/rejected (beta * log pi/ref), reward_accuracy, reward_margin; at
each evaluation, the held-out greedy score and the log-ratio to the reference of those answers.

Run: tinylm dpo --checkpoint runs/default/sft --train.run_dir runs/default/dpo
"""

from __future__ import annotations

import time
from pathlib import Path

from tinylm.config import DPOConfig, save_json, to_dict
from tinylm.data.preference import PairLoader, load_pairs, write_pairs
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks import get_task
from tinylm.train.align import (heldout_prompts, load_frozen, load_policy, make_dpo_objective, make_eval_hook,
                                precompute_reference, write_summary)
from tinylm.train.loop import Trainer
from tinylm.train.rollout import cached_samples, onpolicy_pairs, training_prompts


def build(cfg: DPOConfig) -> tuple[Trainer, dict]:
    tc = cfg.train
    if cfg.ref_logprobs not in ("precompute", "online"):
        raise ValueError(f"ref_logprobs must be precompute or online, got {cfg.ref_logprobs!r}")
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    model, tok, ckpt = load_policy(cfg.checkpoint, rt.device)
    ref = load_frozen(cfg.reference or ckpt, model.cfg, tok, rt.device)
    task = get_task(cfg.task, cfg.data_seed)
    run_dir = Path(tc.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    T = model.cfg.seq_len
    data: dict = {"pairs_source": cfg.pairs}
    if cfg.pairs == "on-policy":
        s = cfg.sampling
        examples, dropped = training_prompts(tok, task, s.kinds, s.prompts, T, cfg.data_seed)
        scored = cached_samples(run_dir / "onpolicy_samples.json", ref, tok, task, examples, s, seed=tc.seed, guard=cfg.guard)
        pairs, stats = onpolicy_pairs(examples, scored)
        write_pairs(run_dir / "onpolicy_pairs.jsonl", pairs)
        data.update(stats, prompts_dropped_too_long=dropped, samples_per_prompt=s.samples)
    else:
        pairs, skipped = load_pairs(cfg.pairs)
        data["malformed_skipped"] = skipped
    loader = PairLoader(tok, pairs, tc.batch_size, T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size)
    data.update(train_pairs=len(loader.rows), skipped=loader.skipped)
    t0 = time.time()
    if cfg.ref_logprobs == "precompute":
        loader.set_reference(precompute_reference(ref, loader, rt.autocast))
        data["reference_precompute_s"] = round(time.time() - t0, 2)
    evaluate = make_eval_hook(task, tok, heldout_prompts(task, cfg.data_seed, cfg.eval_prompts), ref, cfg.sampling.max_new_tokens)
    run_config = {"stage": "dpo", "config": {"model": to_dict(model.cfg), "train": to_dict(tc), "dpo": to_dict(cfg)}}
    if rt.is_main:
        save_json({**run_config, "data": data, "base_checkpoint": str(ckpt)}, run_dir / "config.json")
        print(f"dpo: from {ckpt}; {len(loader.rows):,} pairs (skipped {loader.skipped}); beta {cfg.beta}; "
              f"reference log-probs {cfg.ref_logprobs}")
    objective = make_dpo_objective(cfg.beta, ref if cfg.ref_logprobs == "online" else None, cfg.nll_weight)
    trainer = Trainer(rt, tc, model, loader, objective=objective, evaluate=evaluate if cfg.eval_prompts > 0 else None,
                      run_config=run_config, tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data


def run(cfg: DPOConfig, resume: bool = False) -> dict:
    t0 = time.time()
    trainer, data = build(cfg)
    summary = trainer.fit(resume=resume)
    if trainer.rt.is_main:
        hyper = {"beta": cfg.beta, "nll_weight": cfg.nll_weight, "ref_logprobs": cfg.ref_logprobs, "lr": cfg.train.lr, "steps": cfg.train.max_steps,
                 "batch_pairs": cfg.train.batch_size, **{f"sampling.{k}": v for k, v in to_dict(cfg.sampling).items()}}
        summary = write_summary(cfg.train.run_dir, "dpo", summary, data, hyper, t0)
        print(f"dpo: done at step {summary['step']}; held-out score {summary.get('heldout_score', float('nan')):.3f}")
    return summary

"""Stage: GRPO (Shao et al. 2024) with verifiable rewards from the constraint checker.

For each of `rollout.prompts` training instructions the SFT policy samples G = `rollout.group_size`
answers (KV-cache generator); each answer's reward is its checker score (0 when the reward-hacking
guard finds it degenerate); advantages are normalised within the group; the loss is the clipped
ratio plus beta * k3 KL to the frozen SFT reference (tinylm/train/preference.py: grpo_loss). The
rollouts are a batch source for the one Trainer (exact resume, metrics.jsonl, checkpoints, DDP).

A group whose G rewards are all equal gives no gradient. Before training, answers sampled from the
SFT model estimate the fraction of such dead groups per instruction kind for the chosen G
(dead_groups.json); the run warns above 50% and refuses above `max_dead_fraction`. The fraction
actually seen is logged at every step (`dead_group_frac`).

Run: tinylm grpo --checkpoint runs/default/sft --train.run_dir runs/default/grpo --train.max_steps 100
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tinylm.config import GRPOConfig, SamplingConfig, save_json, to_dict
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks import get_task
from tinylm.train.align import heldout_prompts, load_frozen, load_policy, make_eval_hook, make_grpo_objective, write_summary
from tinylm.train.loop import Trainer
from tinylm.train.rollout import RolloutSource, cached_samples, estimate_dead_groups, training_prompts


def dead_group_check(cfg: GRPOConfig, model, tok, task, run_dir: Path, seq_len: int, verbose: bool) -> dict | None:
    if cfg.dead_estimate_prompts <= 0:
        return None
    r = cfg.rollout
    examples, _ = training_prompts(tok, task, r.kinds, cfg.dead_estimate_prompts, seq_len, seed=-1)
    sampling = SamplingConfig(prompts=len(examples), samples=4, temperature=r.temperature, top_k=r.top_k,
                              max_new_tokens=r.max_new_tokens, compile=r.compile)
    scored = cached_samples(run_dir / "dead_groups_samples.json", model, tok, task, examples, sampling, seed=-1, guard=cfg.guard)
    est = estimate_dead_groups(scored, examples, r.group_size)
    save_json(est, run_dir / "dead_groups.json")
    frac = est["estimated_dead_fraction"]
    if verbose:
        kinds = ", ".join(f"{k} {v['dead']:.2f}" for k, v in sorted(est["per_kind"].items()))
        print(f"grpo: estimated dead groups (all {r.group_size} rewards equal) {frac:.1%} ({kinds})")
    if frac > cfg.max_dead_fraction:
        raise ValueError(f"GRPO would waste {frac:.0%} of its groups (all {r.group_size} answers get the same reward; "
                         f"per kind in {run_dir / 'dead_groups.json'}): raise rollout.group_size or rollout.temperature, "
                         f"restrict rollout.kinds, or set max_dead_fraction above {frac:.2f} to run anyway")
    if frac > 0.5 and verbose:
        print(f"grpo: warning: most groups ({frac:.0%}) are expected to carry no signal")
    return est


def build(cfg: GRPOConfig) -> tuple[Trainer, dict]:
    tc = cfg.train
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    model, tok, ckpt = load_policy(cfg.checkpoint, rt.device)
    ref = load_frozen(cfg.reference or ckpt, model.cfg, tok, rt.device)
    task = get_task(cfg.task, cfg.data_seed)
    if not task.checkable:
        raise ValueError(f"task {cfg.task!r} has no checker to reward with")
    T = model.cfg.seq_len
    examples, dropped = training_prompts(tok, task, cfg.rollout.kinds, 0, T, tc.seed)
    mb = cfg.rollout.prompts * cfg.rollout.group_size // max(cfg.rollout.minibatches, 1)
    tc = dataclasses.replace(tc, batch_size=mb, total_batch_tokens=mb * T)
    run_dir = Path(tc.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    est = dead_group_check(cfg, model, tok, task, run_dir, T, rt.is_main)
    source = RolloutSource(model, ref, tok, task, examples, cfg.rollout, seed=tc.seed, method="grpo", guard=cfg.guard,
                           rank=rt.rank, world_size=rt.world_size, autocast=rt.autocast)
    evaluate = make_eval_hook(task, tok, heldout_prompts(task, cfg.data_seed, cfg.eval_prompts), ref, cfg.rollout.max_new_tokens)
    data = {"train_prompts": len(examples), "prompts_dropped_too_long": dropped, "dead_group_estimate": est,
            "answers_per_step": mb, "answers_per_rollout": cfg.rollout.prompts * cfg.rollout.group_size}
    run_config = {"stage": "grpo", "config": {"model": to_dict(model.cfg), "train": to_dict(tc), "grpo": to_dict(cfg)}}
    if rt.is_main:
        save_json({**run_config, "data": data, "base_checkpoint": str(ckpt)}, run_dir / "config.json")
        print(f"grpo: from {ckpt}; {len(examples):,} training prompts, {cfg.rollout.prompts} x {cfg.rollout.group_size} "
              f"answers per rollout, {source.steps_per_rollout} steps per rollout")
    trainer = Trainer(rt, tc, model, source, objective=make_grpo_objective(cfg.clip, cfg.beta),
                      evaluate=evaluate if cfg.eval_prompts > 0 else None, run_config=run_config,
                      tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data


def run(cfg: GRPOConfig, resume: bool = False) -> dict:
    t0 = time.time()
    trainer, data = build(cfg)
    summary = trainer.fit(resume=resume)
    if trainer.rt.is_main:
        hyper = {"beta": cfg.beta, "clip": cfg.clip, "lr": cfg.train.lr, "steps": cfg.train.max_steps,
                 **{f"rollout.{k}": v for k, v in to_dict(cfg.rollout).items()}, "guard": cfg.guard}
        summary = write_summary(cfg.train.run_dir, "grpo", summary, data, hyper, t0)
        print(f"grpo: done at step {summary['step']}; held-out score {summary.get('heldout_score', float('nan')):.3f}")
    return summary

"""Stage: PPO in the InstructGPT recipe (Ouyang et al. 2022; Stiennon et al. 2020; Schulman et al. 2017).

Rollouts: the policy (the SFT model with a value head, initialised at zero) answers training
instructions with tinylm's KV-cache generator. Reward: the constraint checker's score (guarded
against degenerate answers), a reward model's score (`tinylm rm`), or their sum; minus
`no_end_penalty` for an answer that never emits <|end|>. Per-token rewards carry the KL penalty
-kl_coef * (log pi_old - log ref) to the frozen SFT model, with the final reward on the last token;
advantages by GAE from the value head; clipped policy and value losses (tinylm/train/preference.py).
Logged: approx_kl, clip_frac, entropy, value_loss, reward, and the held-out score at evaluations.

Run: tinylm ppo --checkpoint runs/default/sft --train.run_dir runs/default/ppo [--reward rm --reward_model runs/default/rm]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tinylm.config import PPOConfig, save_json, to_dict
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks import get_task
from tinylm.train.align import heldout_prompts, load_frozen, load_policy, make_eval_hook, make_ppo_objective, write_summary
from tinylm.train.loop import Trainer
from tinylm.train.rollout import RolloutSource, training_prompts


def build(cfg: PPOConfig) -> tuple[Trainer, dict]:
    tc = cfg.train
    if cfg.reward not in ("checker", "rm", "checker+rm"):
        raise ValueError(f"reward must be checker, rm or checker+rm, got {cfg.reward!r}")
    if cfg.reward != "checker" and not cfg.reward_model:
        raise ValueError(f"reward {cfg.reward!r} needs --reward_model (a `tinylm rm` run)")
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    model, tok, ckpt = load_policy(cfg.checkpoint, rt.device, value_head=True)
    ref = load_frozen(cfg.reference or ckpt, model.cfg, tok, rt.device)
    rm = load_frozen(cfg.reward_model, model.cfg, tok, rt.device, head=True, what="reward model") if cfg.reward != "checker" else None
    task = get_task(cfg.task, cfg.data_seed)
    T = model.cfg.seq_len
    examples, dropped = training_prompts(tok, task, cfg.rollout.kinds, 0, T, tc.seed)
    mb = cfg.rollout.prompts * cfg.rollout.group_size // max(cfg.rollout.minibatches, 1)
    tc = dataclasses.replace(tc, batch_size=mb, total_batch_tokens=mb * T)
    run_dir = Path(tc.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    source = RolloutSource(model, ref, tok, task, examples, cfg.rollout, seed=tc.seed, method="ppo", guard=cfg.guard,
                           reward_model=rm, reward_mix=cfg.reward, kl_coef=cfg.kl_coef, gamma=cfg.gamma, lam=cfg.lam,
                           no_end_penalty=cfg.no_end_penalty, rank=rt.rank, world_size=rt.world_size, autocast=rt.autocast)
    evaluate = make_eval_hook(task, tok, heldout_prompts(task, cfg.data_seed, cfg.eval_prompts), ref, cfg.rollout.max_new_tokens)
    data = {"train_prompts": len(examples), "prompts_dropped_too_long": dropped, "answers_per_step": mb,
            "answers_per_rollout": cfg.rollout.prompts * cfg.rollout.group_size, "reward": cfg.reward}
    run_config = {"stage": "ppo", "config": {"model": to_dict(model.cfg), "train": to_dict(tc), "ppo": to_dict(cfg)}}
    if rt.is_main:
        save_json({**run_config, "data": data, "base_checkpoint": str(ckpt)}, run_dir / "config.json")
        print(f"ppo: from {ckpt}; reward {cfg.reward}; {cfg.rollout.prompts} x {cfg.rollout.group_size} answers per rollout, "
              f"{source.steps_per_rollout} steps per rollout; kl_coef {cfg.kl_coef}")
    trainer = Trainer(rt, tc, model, source, objective=make_ppo_objective(cfg.clip, cfg.value_clip, cfg.vf_coef),
                      evaluate=evaluate if cfg.eval_prompts > 0 else None, run_config=run_config,
                      tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data


def run(cfg: PPOConfig, resume: bool = False) -> dict:
    t0 = time.time()
    trainer, data = build(cfg)
    summary = trainer.fit(resume=resume)
    if trainer.rt.is_main:
        hyper = {k: getattr(cfg, k) for k in ("reward", "kl_coef", "clip", "value_clip", "vf_coef", "gamma", "lam", "no_end_penalty", "guard")}
        hyper.update({"lr": cfg.train.lr, "steps": cfg.train.max_steps, **{f"rollout.{k}": v for k, v in to_dict(cfg.rollout).items()}})
        summary = write_summary(cfg.train.run_dir, "ppo", summary, data, hyper, t0)
        print(f"ppo: done at step {summary['step']}; held-out score {summary.get('heldout_score', float('nan')):.3f}")
    return summary

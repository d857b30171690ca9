"""Stage: best-of-n rejection-sampling fine-tuning (Llama 2, Touvron et al. 2023, §3.2.3).

The simplest alignment baseline: sample n answers from the SFT model for each training
instruction, score them with the constraint checker, keep each prompt's best answer when it ended
with <|end|>, is not degenerate and scores at least `min_score`, and fine-tune on those answers
with the SFT objective (loss on the assistant tokens only). Same Trainer, same batches as SFT.

Run: tinylm rft --checkpoint runs/default/sft --train.run_dir runs/default/rft
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tinylm.config import RFTConfig, save_json, to_dict
from tinylm.data.sft_loader import ConversationLoader
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks import get_task
from tinylm.train.align import heldout_prompts, load_policy, make_eval_hook, write_summary
from tinylm.train.loop import Trainer
from tinylm.train.rollout import best_of_n, cached_samples, reward, training_prompts


def build(cfg: RFTConfig) -> tuple[Trainer, dict]:
    tc = cfg.train
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    model, tok, ckpt = load_policy(cfg.checkpoint, rt.device)
    task = get_task(cfg.task, cfg.data_seed)
    run_dir = Path(tc.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    T = model.cfg.seq_len
    s = cfg.sampling
    examples, dropped = training_prompts(tok, task, s.kinds, s.prompts, T, cfg.data_seed)
    scored = cached_samples(run_dir / "onpolicy_samples.json", model, tok, task, examples, s, seed=tc.seed, guard=cfg.guard)

    def fix(ex, text):  # an edited answer must pass the same checker and guard as a sampled one
        text = task.repair(ex, text)
        if text is None:
            return None
        r, _, why = reward(task, ex, text, cfg.guard)
        return text if why is None and r >= cfg.min_score else None

    kept, stats = best_of_n(examples, scored, cfg.min_score, cfg.min_gain, fix if cfg.repair else None)
    loader = ConversationLoader(tok, kept, tc.batch_size, T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size,
                                device=rt.device)
    data = {**stats, "prompts_dropped_too_long": dropped, "samples_per_prompt": s.samples,
            "mean_sampled_score": sum(a["score"] for r in scored for a in r["answers"]) / max(sum(len(r["answers"]) for r in scored), 1)}
    evaluate = make_eval_hook(task, tok, heldout_prompts(task, cfg.data_seed, cfg.eval_prompts), None, s.max_new_tokens)
    tc = dataclasses.replace(tc, total_batch_tokens=tc.batch_size * T) if tc.total_batch_tokens % (tc.batch_size * T) else tc
    run_config = {"stage": "rft", "config": {"model": to_dict(model.cfg), "train": to_dict(tc), "rft": to_dict(cfg)}}
    if rt.is_main:
        save_json({**run_config, "data": data, "base_checkpoint": str(ckpt)}, run_dir / "config.json")
        print(f"rft: kept {stats['kept']}/{stats['prompts']} prompts' best of {s.samples} answers "
              f"(score >= {cfg.min_score}" + (f", or {cfg.min_gain} above its prompt's mean: {stats['kept_below_min_score']}"
                                                if cfg.min_gain > 0 else "") + f"); by kind {stats['kept_by_kind']}"
              + (f"; {stats['repaired']} of them repaired (edited to pass): {stats['repaired_by_kind']}" if cfg.repair else ""))
    trainer = Trainer(rt, tc, model, loader, evaluate=evaluate if cfg.eval_prompts > 0 else None, run_config=run_config,
                      tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data


def run(cfg: RFTConfig, resume: bool = False) -> dict:
    t0 = time.time()
    trainer, data = build(cfg)
    summary = trainer.fit(resume=resume)
    if trainer.rt.is_main:
        hyper = {"min_score": cfg.min_score, "min_gain": cfg.min_gain, "repair": cfg.repair, "lr": cfg.train.lr, "steps": cfg.train.max_steps,
                 **{f"sampling.{k}": v for k, v in to_dict(cfg.sampling).items()}}
        summary = write_summary(cfg.train.run_dir, "rft", summary, data, hyper, t0)
        print(f"rft: done at step {summary['step']}; held-out score {summary.get('heldout_score', float('nan')):.3f}")
    return summary

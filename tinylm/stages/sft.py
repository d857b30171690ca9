"""Stage 4: supervised instruction tuning (SFT) of a pretrained checkpoint.

Same loop and objective as pretraining (next-token prediction); what changes is the batches:
conversations rendered with the chat template, with the loss only on the assistant's tokens
(including the <|end|> that closes each answer). The model config and tokenizer come from the
pretrained checkpoint; `--model_overrides` may change fields (each change is printed).

Run: tinylm sft --checkpoint runs/default --mixture alpaca:1,instructions:1 --train.run_dir runs/default/sft
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tinylm.chat import ChatFormatError, respond
from tinylm.config import ModelConfig, SFTConfig, apply_overrides, from_dict, save_json, to_dict
from tinylm.data.sft_loader import ConversationLoader
from tinylm.model import GPT, describe
from tinylm.runtime import Runtime, seed_everything
from tinylm.tasks.mixture import mixture_examples
from tinylm.tokenizer import Tokenizer
from tinylm.train.checkpoint import check_tokenizer, find_checkpoint, read_meta
from tinylm.train.loop import Trainer
from tinylm.train.objectives import mean_loss


def model_config_from(ckpt, overrides: str, verbose: bool = True) -> ModelConfig:
    cfg = from_dict(ModelConfig, read_meta(ckpt)["config"]["model"])
    pairs = dict(kv.split("=", 1) for kv in overrides.split(",") if kv.strip()) if overrides else {}
    if pairs:
        new = apply_overrides(cfg, {k.strip(): v.strip() for k, v in pairs.items()})
        for k in pairs:
            if verbose:
                print(f"model override: {k.strip()} = {getattr(cfg, k.strip())!r} -> {getattr(new, k.strip())!r}")
        cfg = new
    return cfg


def build(cfg: SFTConfig) -> tuple[Trainer, dict]:
    tc = cfg.train
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    ckpt = find_checkpoint(cfg.checkpoint)
    model_cfg = model_config_from(ckpt, cfg.model_overrides, verbose=rt.is_main)
    tok = Tokenizer.load(ckpt / "tokenizer.json")
    check_tokenizer(tok, read_meta(ckpt), ckpt / "meta.json", model_cfg.vocab_size)
    if not tok.has_chat_tokens():
        raise ChatFormatError(f"{ckpt}: its tokenizer lacks the chat tokens (<|user|>, <|assistant|>, <|end|>); "
                              "SFT needs a base model trained with a tokenizer from `tinylm tokenizer`")
    model = GPT(model_cfg).to(rt.device)
    T = model_cfg.seq_len
    train_ex = mixture_examples(cfg.mixture, "train", cfg.data_seed, heldout_percent=cfg.heldout_percent)
    val_ex = mixture_examples(cfg.mixture, "test", cfg.data_seed, size=cfg.val_examples,
                              heldout_percent=cfg.heldout_percent)
    loader = ConversationLoader(tok, train_ex, tc.batch_size, T, seed=tc.seed, rank=rt.rank,
                                world_size=rt.world_size, device=rt.device)
    val = ConversationLoader(tok, val_ex, tc.batch_size, T, shuffle=False, device=rt.device)
    val_batches = val.batches(tc.eval_batches)
    data_info = {"mixture": cfg.mixture, "train_conversations": len(loader.rows),
                 "train_dropped_too_long": loader.dropped_too_long, "val_conversations": len(val.rows),
                 "val_dropped_too_long": val.dropped_too_long}
    if rt.is_main:
        info = describe(model_cfg)
        print(f"sft: from {ckpt} ({info['params']:,} parameters); {data_info['train_conversations']:,} train / "
              f"{data_info['val_conversations']} held-out conversations ({loader.dropped_too_long:,} longer than "
              f"{T + 1} tokens dropped)")

    def evaluate(m):
        return {"val_loss": mean_loss(m, val_batches, rt.autocast)}

    prompts = [ex.prompt for ex in val_ex[:3]]

    def sample(m, step):
        return [{"prompt": p[-1]["content"], "text": respond(m, tok, p, tc.sample_tokens, temperature=0.0)} for p in prompts]

    init = tc.init_from or str(ckpt)
    tc = dataclasses.replace(tc, init_from=init)
    run_config = {"stage": "sft", "config": {"model": to_dict(model_cfg), "train": to_dict(tc), "sft": to_dict(cfg)}}
    if rt.is_main:
        Path(tc.run_dir).mkdir(parents=True, exist_ok=True)
        save_json({**run_config, "data": data_info, "base_checkpoint": str(ckpt)}, Path(tc.run_dir) / "config.json")
    trainer = Trainer(rt, tc, model, loader, evaluate=evaluate if val_batches else None,
                      sample=sample if tc.sample_every > 0 else None, run_config=run_config,
                      tokenizer_path=tok.path, tokenizer_sha256=tok.sha256)
    return trainer, data_info


def run(cfg: SFTConfig, resume: bool = False) -> dict:
    trainer, data_info = build(cfg)
    summary = trainer.fit(resume=resume)
    pad = trainer.train_data.padding_stats()
    summary.update(data=data_info, padding=pad)
    path = Path(cfg.train.run_dir) / "summary.json"
    if trainer.rt.is_main and trainer.steps_run == 0 and path.exists():
        # a finished run resumed again (a second `make run`) trained nothing: keep the summary of the run that did
        print(f"sft: already at step {summary['step']}; {path} kept")
        return summary
    if trainer.rt.is_main:
        save_json(summary, path)
        print(f"sft: done at step {summary['step']}; held-out assistant-token loss {summary.get('val_loss', float('nan')):.4f}; "
              f"padding {pad['padding_fraction']:.1%} of computed positions")
    return summary

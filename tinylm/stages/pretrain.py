"""Stage 3: pretrain the GPT on prepared token shards with next-token prediction.

Run: tinylm pretrain --preset 1m --train.data runs/default/data --train.run_dir runs/default
     tinylm pretrain --train.run_dir runs/default --resume     # continue after a crash or kill
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tinylm.bpb import batches_bpb
from tinylm.config import PretrainConfig, save_json, to_dict
from tinylm.data.loader import TokenLoader
from tinylm.data.shards import check_tokenizer, load_prepared
from tinylm.model import GPT, describe
from tinylm.runtime import Runtime, seed_everything
from tinylm.sample import generate
from tinylm.tokenizer import Tokenizer
from tinylm.train.loop import Trainer

SAMPLE_PROMPTS = ("", "Once upon a time", "The little girl looked at")


def build(cfg: PretrainConfig) -> Trainer:
    tc = cfg.train
    rt = Runtime.create(tc.device, tc.dtype, tc.threads)
    seed_everything(tc.seed)
    train_paths, val_path, prep = load_prepared(tc.data)
    tok = Tokenizer.load(Path(tc.data) / "tokenizer.json")
    check_tokenizer(tc.data, prep, tok)
    if cfg.model.vocab_size != tok.vocab_size:
        if rt.is_main:
            print(f"model.vocab_size: {cfg.model.vocab_size} -> {tok.vocab_size} (from the tokenizer)")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=tok.vocab_size))
    model = GPT(cfg.model).to(rt.device)
    info = describe(cfg.model)
    if rt.is_main:
        print(f"model: {info['params']:,} parameters ({info['params_non_embedding']:,} non-embedding), "
              f"{info['flops_per_token'] / 1e6:.2f} MFLOP/token; device {rt.device}, autocast {rt.dtype}")
    T = cfg.model.seq_len
    loader = TokenLoader(train_paths, tc.batch_size, T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size,
                         device=rt.device, vocab_size=tok.vocab_size, repeat_frac=cfg.repeat_frac)

    val_batches = []
    if val_path is not None and tc.eval_every > 0:
        val = TokenLoader([val_path], tc.batch_size, T, shuffle=False, device=rt.device, vocab_size=tok.vocab_size)
        n = min(tc.eval_batches, val.n_windows // tc.batch_size)
        val_batches = [val.next_batch() for _ in range(n)]  # fixed: the same windows at every evaluation
    token_bytes = torch.tensor(tok.token_bytes, dtype=torch.float32)

    def evaluate(m):
        return {"val_bpb": batches_bpb(m, val_batches, token_bytes, rt.autocast)}

    def sample(m, step):
        rows = []
        for i, prompt in enumerate(SAMPLE_PROMPTS):
            ids = [tok.eot_id] + tok.encode(prompt)
            out = list(generate(m, ids, tc.sample_tokens, temperature=0.8, top_k=50, seed=tc.seed + i,
                                stop_ids=(tok.eot_id,)))
            rows.append({"prompt": prompt, "text": prompt + tok.decode([t for t in out if t != tok.eot_id])})
        return rows

    run_config = {"stage": "pretrain", "config": to_dict(cfg)}
    if rt.is_main:
        Path(tc.run_dir).mkdir(parents=True, exist_ok=True)
        save_json({**run_config, "model_info": info, "data": {"dir": tc.data, "source": prep["source"]}},
                  Path(tc.run_dir) / "config.json")
    return Trainer(rt, tc, model, loader, evaluate=evaluate if val_batches else None, sample=sample if tc.sample_every > 0 else None,
                   run_config=run_config, tokenizer_path=tok.path, tokenizer_sha256=tok.sha256,
                   flops_per_token=info["flops_per_token"])


def run(cfg: PretrainConfig, resume: bool = False) -> dict:
    trainer = build(cfg)
    summary = trainer.fit(resume=resume)
    if trainer.rt.is_main:
        print(f"pretrain: done at step {summary['step']}, {summary['tokens']:,} tokens, {summary['elapsed_s']:.0f}s"
              + (f", val bpb {summary['val_bpb']:.4f}" if "val_bpb" in summary else ""))
    return summary

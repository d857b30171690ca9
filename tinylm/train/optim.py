"""AdamW with the usual parameter groups, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch

from tinylm.config import TrainConfig


def param_groups(model, weight_decay: float) -> list[dict]:
    """Decay only the matmul weights. Norm gains (1-D) and the token embedding are not decayed:
    shrinking a norm gain or a rarely-seen token's embedding towards zero is not regularisation,
    just damage. The tied output head shares the embedding's tensor, so it is not decayed either."""
    embed = {id(p) for name, p in model.named_parameters() if name.endswith("wte.weight")}
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embed else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # fused kernels on GPU; on CPU the foreach (multi-tensor) path measured fastest
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
        fused=fused, foreach=None if fused else True,
    )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based).

    cosine: linear warmup, then cosine decay to min_lr_frac * lr at max_steps (Loshchilov & Hutter 2017).
    wsd:    linear warmup, constant, then linear decay to min_lr_frac * lr over the last
            decay_frac of the steps (warmup-stable-decay, Hu et al. 2024, "MiniCPM").
    """
    lr_min = cfg.lr * cfg.min_lr_frac
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
        return lr_min + 0.5 * (cfg.lr - lr_min) * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "wsd":
        decay_start = int(cfg.max_steps * (1 - cfg.decay_frac))
        if step < decay_start:
            return cfg.lr
        progress = (step - decay_start) / max(cfg.max_steps - decay_start, 1)
        return cfg.lr - (cfg.lr - lr_min) * min(progress, 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose cosine or wsd")

"""Optimizers with the usual parameter groups, and the learning-rate schedules.

adamw: AdamW everywhere (no decay on norms and embeddings).
muon:  Muon (Jordan et al. 2024: momentum orthogonalised by Newton-Schulz) on the 2-D weight
       matrices of the transformer blocks, AdamW on the embeddings, the output head and the norm
       gains, as the modded-nanogpt speedrun recipes do. `Muon` below is `torch.optim.Muon`'s
       algorithm with one difference: the Newton-Schulz iteration runs in a dtype we choose.
       torch always iterates in bf16, which a CPU without native bf16 emulates: there it doubled
       the step time of the 1m model (AMD EPYC Zen 3, AVX2), so we iterate in fp32 on such CPUs.
"""

from __future__ import annotations

import math

import torch

from tinylm.config import TrainConfig
from tinylm.runtime import resolve_dtype


def param_groups(model, weight_decay: float) -> list[dict]:
    """Decay only the matmul weights. Norm gains (1-D) and the token embedding are not decayed:
    shrinking a norm gain or a rarely-seen token's embedding towards zero is not regularisation,
    just damage. The tied output head shares the embedding's tensor, so it is not decayed either."""
    embed = {id(p) for name, p in model.named_parameters() if name.endswith(("wte.weight", "wpe.weight"))}
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


def muon_split(model) -> tuple[list, list]:
    """(block matrices for Muon, everything else for AdamW), each tensor once."""
    layers = getattr(model, "layers", None)
    matrices = {id(p) for p in layers.parameters() if p.dim() == 2} if layers is not None else set()
    muon, rest, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (muon if id(p) in matrices else rest).append(p)
    return muon, rest


MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan et al. (torch's defaults)


def newton_schulz(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16,
                  coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS, eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with G's singular vectors: U S' V^T with S' roughly in
    [0.7, 1.2] where G = U S V^T (the quintic iteration of Jordan et al. 2024, "Muon").

    G: (m, n) float tensor. Returns (m, n) in `dtype` (bf16 as in torch.optim.Muon; fp32 where bf16
    is emulated). Each step is X <- aX + (bX X^T + c(X X^T)^2) X, on the wide orientation."""
    a, b, c = coefficients
    X = G.to(dtype)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz (Jordan et al. 2024; Liu et al. 2025 for the
    decoupled weight decay), for 2-D matrices. Per parameter W with gradient G and buffer M:

        M <- mu M + (1 - mu) G;   U = NS((1 - mu) G + mu M)  (Nesterov; U = NS(M) without);
        W <- (1 - lr wd) W - lr sqrt(max(1, rows/cols)) U

    the update rule and state ("momentum_buffer") of `torch.optim.Muon` with its "original" lr
    adjustment, so the two are interchangeable (tests/test_optim.py checks equality with
    ns_dtype=bf16). `ns_dtype` sets the Newton-Schulz precision.

    Raises ValueError for a parameter that is not a matrix."""

    def __init__(self, params, lr: float = 0.02, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps))
        self.ns_dtype = ns_dtype
        for g in self.param_groups:
            for p in g["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D matrices only; got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            lr, wd, mu = g["lr"], g["weight_decay"], g["momentum"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if g["nesterov"] else buf
                update = newton_schulz(update, g["ns_steps"], self.ns_dtype)
                p.mul_(1 - lr * wd)
                p.add_(update.to(p.dtype), alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))
        return loss


class ChainedOptimizer:
    """Several optimizers over disjoint parameters behaving as one: `param_groups` lists all their
    groups (the loop sets each group's lr), and `state_dict()` is one torch-style dict whose
    parameter indices run on from one optimizer to the next, so checkpoints store it unchanged."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            sd = o.state_dict()
            n = sum(len(g["params"]) for g in sd["param_groups"])
            state.update({offset + i: v for i, v in sd["state"].items()})
            groups += [dict(g, params=[offset + i for i in g["params"]]) for g in sd["param_groups"]]
            offset += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups, offset = list(sd["param_groups"]), 0
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(groups)} parameter groups, this optimizer {len(self.param_groups)}")
        for o in self.optimizers:
            mine, groups = groups[: len(o.param_groups)], groups[len(o.param_groups):]
            n = sum(len(g["params"]) for g in mine)
            state = {int(i) - offset: v for i, v in sd["state"].items() if offset <= int(i) < offset + n}
            o.load_state_dict({"state": state,
                               "param_groups": [dict(g, params=[i - offset for i in g["params"]]) for g in mine]})
            offset += n


def build_optimizer(model, cfg: TrainConfig, device: torch.device):
    # fused kernels on GPU; on CPU the foreach (multi-tensor) path measured fastest
    fused = device.type == "cuda"

    def adamw(groups):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 fused=fused, foreach=None if fused else True)

    if cfg.optimizer == "adamw":
        return adamw(param_groups(model, cfg.weight_decay))
    if cfg.optimizer == "muon":
        matrices, rest = muon_split(model)
        if not matrices:
            raise ValueError("train.optimizer=muon: the model has no block weight matrices")
        if any(type(p).__name__ == "DTensor" for p in matrices):
            # Newton-Schulz on a shard is not the shard of Newton-Schulz on the matrix
            raise ValueError("train.optimizer=muon orthogonalises whole matrices, which FSDP shards: use "
                             "--train.parallel ddp, or --train.optimizer adamw with fsdp")
        # Muon's update has unit spectral norm per matrix, scaled by sqrt(max(1, rows/cols)) (torch's
        # "original" adjustment); decay is decoupled, as in AdamW. The lr_scale keeps the ratio of
        # its lr to AdamW's fixed while the schedule moves both.
        ns_dtype = torch.bfloat16 if resolve_dtype(cfg.dtype, device) in ("bf16", "fp16") else torch.float32
        muon = Muon([{"params": matrices, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr,
                    weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum, nesterov=True, ns_dtype=ns_dtype)
        return ChainedOptimizer([muon, adamw([{"params": rest, "weight_decay": 0.0}])])
    raise ValueError(f"unknown train.optimizer {cfg.optimizer!r}; choose adamw or muon")


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

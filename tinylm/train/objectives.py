"""Training objectives: pure functions of logits and targets.

Every training stage differs from pretraining only in its batches and its objective; the loop in
tinylm/train/loop.py calls `objective(model, batch) -> (loss, n_tokens)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1  # targets equal to this contribute no loss (prompt tokens in SFT, padding)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy that never materialises fp32 logits for the whole batch.

    On CPU, `F.cross_entropy(logits.float(), ...)` spends more time than the output matmul: it
    copies the (N, V) logits to fp32, writes log-probabilities, zero-fills an (N, V) gradient and
    scatters into it. Here logsumexp is taken chunk by chunk in fp32 and the backward writes
    softmax - onehot straight into a gradient of the logits' dtype, equal to fp32 rounding. With
    `F.cross_entropy` instead, the whole 1m training step runs at 0.87x (bench/cpu_choices.py).
    """

    CHUNK = 64  # rows per chunk: keeps the fp32 temporaries in cache

    @staticmethod
    def forward(ctx, logits, targets):
        n = logits.size(0)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for i in range(0, n, _ChunkedCrossEntropy.CHUNK):
            lse[i : i + _ChunkedCrossEntropy.CHUNK] = torch.logsumexp(logits[i : i + _ChunkedCrossEntropy.CHUNK].float(), -1)
        valid = targets != IGNORE_INDEX
        safe = torch.where(valid, targets, 0)
        target_logit = logits.gather(1, safe[:, None]).squeeze(1).float()
        ctx.save_for_backward(logits, safe, valid, lse)
        return torch.where(valid, lse - target_logit, 0.0).sum()

    @staticmethod
    def backward(ctx, grad_out):
        logits, safe, valid, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        c = _ChunkedCrossEntropy.CHUNK
        for i in range(0, logits.size(0), c):
            p = torch.exp(logits[i : i + c].float() - lse[i : i + c, None])  # softmax
            rows = torch.arange(p.size(0), device=p.device)
            p[rows, safe[i : i + c]] -= 1.0
            p *= valid[i : i + c, None] * grad_out
            grad[i : i + c] = p
        return grad, None


def cross_entropy_sum(logits, targets):
    """Sum of -log p(target) over positions whose target is not IGNORE_INDEX.
    logits: (N, V) any float dtype; targets: (N,) int64. Returns a float32 scalar."""
    if logits.device.type == "cpu" and logits.requires_grad and not torch.compiler.is_compiling():
        with torch.autocast("cpu", enabled=False):  # its fp32 math is explicit; autocast would only add casts
            return _ChunkedCrossEntropy.apply(logits, targets)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def next_token_loss(model, batch):
    """Language-modelling objective: mean cross-entropy of next-token prediction.

    batch: (x, y), both (B, T); y holds the next token of x, or IGNORE_INDEX where no loss is wanted.
    Returns (mean loss over counted tokens, number of counted tokens). A batch in which every target
    is ignored yields loss 0 (with zero gradient), never NaN: the denominator is clamped to 1.
    """
    x, y = batch
    logits = model(x)  # (B, T, V)
    y = y.reshape(-1)
    total = cross_entropy_sum(logits.reshape(-1, logits.size(-1)), y)
    n = (y != IGNORE_INDEX).sum()
    return total / n.clamp(min=1), n


@torch.no_grad()
def mean_loss(model, batches, autocast=None) -> float:
    """Mean cross-entropy over every counted target of a list of (x, y) batches (validation)."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    total, count = 0.0, 0
    for x, y in batches:
        with autocast():
            logits = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX,
                                 reduction="sum").item()
        count += int((y != IGNORE_INDEX).sum())
    return total / max(count, 1)

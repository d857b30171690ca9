"""A Llama-style decoder-only transformer in one readable module.

The choices follow Llama (Touvron et al. 2023) and are the ones every small open model now makes:
- pre-norm RMSNorm (Zhang & Sennrich 2019): cheaper than LayerNorm, no mean, no bias;
- rotary position embeddings, RoPE (Su et al. 2021): relative positions, nothing to learn;
- SwiGLU feed-forward (Shazeer 2020) with hidden size 8/3 * d to match a 4d MLP's parameters;
- optional grouped-query attention (Ainslie et al. 2023): n_kv_head < n_head shrinks the KV cache;
- tied input/output embeddings (Press & Wolf 2017): at ~1M parameters the embedding is half the model;
- no biases anywhere, attention through F.scaled_dot_product_attention (flash kernels on GPU).

The alternatives these choices replaced are config fields of this same file, so ablations (tinylm/
experiments) train them with everything else equal: learned absolute positions (`pos_emb`), a GELU
MLP with matched parameters (`mlp`), LayerNorm (`norm`), post-norm (`norm_position`) and untied
embeddings (`tie_embeddings`). Export to other formats accepts the Llama choices only.

The forward pass returns logits; losses live with the training objectives (tinylm/train/objectives.py).
A KVCache turns the same forward into incremental decoding (tinylm/sample.py); `decode_step` is
the one-token step with position-independent shapes that compiled decoding uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinylm.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


class LayerNorm(nn.Module):
    """LayerNorm with gain and bias (Ba et al. 2016), as GPT-2 uses: subtracts the mean, then RMS-normalises."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, (x.size(-1),), self.weight, self.bias, self.eps)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return (RMSNorm if cfg.norm == "rmsnorm" else LayerNorm)(cfg.n_embd, cfg.norm_eps)


def rope_cache(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (seq_len, head_dim // 2), computed in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) — the "half" layout of HF Llama, so exported
    weights need no permutation. x: (B, H, T, D); cos/sin: (T, D/2)."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class KVCache:
    """Preallocated keys/values, one (B, n_kv_head, max_len, head_dim) tensor per layer (separate
    tensors, so a compiled decoding step updates each in place instead of copying one big buffer)."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device, dtype):
        shape = (batch_size, cfg.n_kv_head, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pos = 0  # number of positions already stored
        self.max_len = max_len

    def update(self, layer: int, k, v):
        """Store k/v (B, Hkv, T, D) at the current position; return all keys/values so far."""
        t = k.size(2)
        self.k[layer][:, :, self.pos : self.pos + t] = k
        self.v[layer][:, :, self.pos : self.pos + t] = v
        return self.k[layer][:, :, : self.pos + t], self.v[layer][:, :, : self.pos + t]

    def rows(self, start: int, stop: int) -> "KVCache":
        """A cache over rows start:stop of this one, sharing its storage (position 0): a server
        prefills one new sequence straight into its row of the batch cache."""
        view = KVCache.__new__(KVCache)
        view.k, view.v = [k[start:stop] for k in self.k], [v[start:stop] for v in self.v]
        view.pos, view.max_len = 0, self.max_len
        return view


class DecodeSlot(NamedTuple):
    """Where one static-shape decoding step (GPT.decode_step) writes and what it may attend to."""

    k: list[torch.Tensor]  # KVCache.k: per layer (B, Hkv, max_len, D), written in place
    v: list[torch.Tensor]
    pos: torch.Tensor  # (P,) long, P = 1 or B: the position of each sequence's token being decoded
    mask: torch.Tensor  # (P, max_len) bool: positions <= pos


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.wq = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache: KVCache | DecodeSlot | None = None):
        B, T, C = x.size()
        q = self.wq(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.wk(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.wv(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if cos is not None:  # RoPE; with learned absolute positions the position is already in x
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        if isinstance(kv_cache, DecodeSlot):
            return self.wo(self._decode_attention(q, k, v, kv_cache))
        if kv_cache is None or kv_cache.pos == 0:
            mask, causal = None, True  # plain training / prefill: standard causal mask
        elif T == 1:
            mask, causal = None, False  # one new token attends to everything cached
        else:  # a chunk after a non-empty cache: causal within the chunk, full to the past
            past = kv_cache.pos
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        if isinstance(kv_cache, KVCache):
            k, v = kv_cache.update(self.layer_idx, k, v)
        if self.n_kv_head != self.n_head:  # GQA: share each kv head across n_head/n_kv_head queries
            rep = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.wo(y)

    def _decode_attention(self, q, k, v, slot: DecodeSlot):
        """One query per sequence against the whole cache, positions after slot.pos masked out.
        Written out rather than through SDPA so torch.compile fuses the mask and softmax, and
        grouped per kv head so the cache is never repeated for GQA. q (B, H, 1, D) -> (B, 1, C)."""
        B, rep = q.size(0), self.n_head // self.n_kv_head
        k_all, v_all = slot.k[self.layer_idx], slot.v[self.layer_idx]  # (B, Hkv, max_len, D)
        at = slot.pos.view(-1, 1, 1, 1).expand_as(k)  # each row writes at its own position
        k_all.scatter_(2, at, k)
        v_all.scatter_(2, at, v)
        q = q.view(B, self.n_kv_head, rep, self.head_dim)  # the query heads that share a kv head
        att = (q @ k_all.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, Hkv, rep, max_len)
        att = att.masked_fill(~slot.mask[:, None, None, :], float("-inf")).softmax(dim=-1)
        return (att @ v_all).view(B, 1, self.n_head * self.head_dim)  # (B, 1, C)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); or the GPT-2 MLP w2(gelu(w1 x)) with a 3/2 wider hidden layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.mlp == "swiglu"
        self.w1 = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=False)
        self.w3 = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=False) if self.gated else None
        self.w2 = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        if self.gated:
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg, layer_idx)
        self.ffn_norm = make_norm(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x, cos, sin, kv_cache=None):
        if self.pre:  # pre-norm: the residual stream itself is never normalised
            x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache)
            return x + self.ffn(self.ffn_norm(x))
        x = self.attn_norm(x + self.attn(x, cos, sin, kv_cache))  # post-norm (Vaswani et al. 2017)
        return self.ffn_norm(x + self.ffn(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.n_embd) if cfg.pos_emb == "learned" else None
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        # post-norm blocks already end in a norm; a final one would normalise twice
        self.norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        cos, sin = rope_cache(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    def init_weights(self):
        """GPT-2 style: N(0, 0.02) everywhere, residual output projections scaled by
        1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = 1 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("wo.weight", "w2.weight")) else 1
                nn.init.normal_(p, mean=0.0, std=std * scale)
            elif name.endswith("bias"):
                nn.init.zeros_(p)  # LayerNorm biases
            else:
                nn.init.ones_(p)  # norm gains

    def forward(self, idx, kv_cache: KVCache | None = None, return_hidden: bool = False):
        """idx: (B, T) token ids -> logits (B, T, vocab_size), or with return_hidden the final
        normed hidden states (B, T, C), so a caller that needs a few positions' logits (scoring
        a continuation) applies lm_head to those alone."""
        B, T = idx.size()
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.cfg.seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context length {self.cfg.seq_len}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))  # (B, T, C)
            cos = sin = None
        else:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        for block in self.layers:
            x = block(x, cos, sin, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += T
        x = self.norm(x)
        return x if return_hidden else self.lm_head(x)  # (B, T, V)

    def decode_step(self, idx, pos, k_cache, v_cache):
        """One new token per sequence with shapes that do not depend on the position, so
        torch.compile builds one graph for a whole generation (tinylm/sample.py). idx: (B, 1);
        pos: (1,) long tensor, the position of every row, or (B,), one per row (the server's batch,
        where sequences join and leave at different lengths); k_cache/v_cache: a KVCache's buffers,
        written at `pos` in place. Attention runs over the whole cache with the positions after
        `pos` masked out: the same result as forward(idx, kv_cache) for one token. Returns (B, V)."""
        mask = torch.arange(k_cache[0].size(2), device=idx.device)[None, :] <= pos[:, None]  # (P, max_len)
        slot = DecodeSlot(k_cache, v_cache, pos, mask)
        x = self.wte(idx)  # (B, 1, C)
        if self.wpe is not None:
            x, cos, sin = x + self.wpe(pos)[:, None, :], None, None  # (P, 1, C) against (B, 1, C)
        else:  # (P, 1, 1, D/2) against (B, H, 1, D/2)
            cos = self.rope_cos.index_select(0, pos)[:, None, None, :]
            sin = self.rope_sin.index_select(0, pos)[:, None, None, :]
        for block in self.layers:
            x = block(x, cos, sin, slot)
        return self.lm_head(self.norm(x))[:, -1]  # (B, V)

    # ------------------------------------------------------------------ accounting
    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameters (tied weights counted once). Non-embedding excludes the token and
        position embeddings (and the output head when it is untied), as in Kaplan et al. 2020."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe is not None else 0)
            if not self.cfg.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def num_matrix_params(self) -> int:
        """The weight matrices of the transformer blocks only (attention and MLP): no embeddings,
        output head, norms or biases. The count the Muon optimizer acts on."""
        return sum(p.numel() for p in self.layers.parameters() if p.dim() == 2)


class GPTWithHead(GPT):
    """The GPT plus a scalar head on the final normed hidden state: a reward model (InstructGPT
    §3.5: the SFT model with its unembedding kept and a scalar projection added) or, on a policy,
    PPO's value head. Its checkpoint is the GPT's weights plus `score_head.*`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.score_head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.score_head.weight)
        nn.init.zeros_(self.score_head.bias)

    def forward(self, idx, kv_cache: KVCache | None = None, return_hidden: bool = False, heads: str = "lm"):
        """heads="lm": as GPT.forward; "score": scalar per position (B, T) in fp32; "both": (logits
        (B, T, V), scores (B, T)) from one trunk pass. Called through forward so DDP sees it."""
        if heads == "lm":
            return super().forward(idx, kv_cache, return_hidden)
        h = super().forward(idx, kv_cache, return_hidden=True)  # (B, T, C)
        scores = self.score_head(h).squeeze(-1).float()
        return scores if heads == "score" else (self.lm_head(h), scores)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), PaLM appendix B convention:
    6 * (matmul parameters, including the output head) + 12 * n_layer * n_embd * seq_len for the
    attention scores and weighted sum. The embedding lookup costs no FLOPs."""
    T = seq_len or cfg.seq_len
    d, L = cfg.n_embd, cfg.n_layer
    kv = cfg.n_kv_head * cfg.head_dim
    mlp_matrices = 3 if cfg.mlp == "swiglu" else 2
    per_layer = d * d * 2 + d * kv * 2 + mlp_matrices * d * cfg.mlp_hidden  # wq, wo, wk, wv, w1, w2, (w3)
    matmul_params = L * per_layer + d * cfg.vocab_size
    return 6 * matmul_params + 12 * L * d * T


def describe(cfg: ModelConfig) -> dict:
    """Parameter counts under the three conventions scaling-law papers use (total, as Hoffmann et
    al. 2022; non-embedding, as Kaplan et al. 2020; block matrices only) and training FLOPs per
    token. Builds the model on the meta device: no memory."""
    with torch.device("meta"):
        m = GPT(cfg)
    return {
        "params": m.num_params(),
        "params_non_embedding": m.num_params(non_embedding=True),
        "params_matrices": m.num_matrix_params(),
        "flops_per_token": flops_per_token(cfg),
    }

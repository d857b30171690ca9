"""Text generation with a KV cache: temperature, top-k, top-p (nucleus), seeded.

The prompt is run once (prefill) to fill the cache; each new token is then one forward pass of
length 1 that attends to everything cached, instead of recomputing the whole sequence.
`use_cache=False` recomputes the full sequence every step: the reference the cache is tested
against (tests/test_sample.py).

`compile=True` decodes through `GPT.decode_step` compiled once with torch.compile: fixed shapes
(attention over the whole preallocated cache, masked), so one graph serves every position, and on
CPU Inductor's C++ wrapper launches the fused kernels without Python. A decoding step of a small
model is dominated by per-operator overhead, so this is 2.6x faster at 1M parameters on CPU (1.2x
at 10M, where reading the weights dominates; bench/results/generate_speed.json), after compiling
for 12-25 s per model shape and batch size (cached on disk by Inductor): it pays off for long or
many generations (ifeval, batch sampling), not for one short sample. Tokens are identical to the
eager path under greedy decoding (tested).

Run: tinylm sample --checkpoint runs/default --prompt "Once upon a time" --temperature 0.8
"""

from __future__ import annotations

import functools
from typing import Iterator

import torch

from tinylm.model import GPT, KVCache


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus; Holtzman et al. 2020) on logits (B, V) -> (B, V),
    removed tokens at -inf. Selects exactly the tokens that transformers' TemperatureLogitsWarper,
    TopKLogitsWarper and TopPLogitsWarper select, in that order (tests/test_sample.py): top-k keeps
    every token tied with the k-th; top-p keeps a token when the tokens ranked above it hold less
    than top_p of the mass (computed, as there, from the ascending cumulative sum), and always the
    most likely one."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1:] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick next tokens from logits (B, V) -> (B,). temperature 0 = greedy (argmax)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@functools.cache
def compiled_decode_step(device_type: str):
    """GPT.decode_step compiled with static shapes; one compiled graph per model shape and batch size."""
    # cpp_wrapper: the compiled graph's launcher is C++, removing the Python between the kernels
    options = {"cpp_wrapper": True} if device_type == "cpu" else {}
    return torch.compile(lambda model, idx, pos, k, v: model.decode_step(idx, pos, k, v),
                         dynamic=False, fullgraph=True, options=options)


class Decoder:
    """Feeds one token per sequence to a model with a KV cache: eager (model.forward with the
    cache) or compiled (GPT.decode_step). Keeps `cache.pos` up to date either way."""

    def __init__(self, model: GPT, cache: KVCache, compile: bool = False):
        self.model, self.cache = model, cache
        self.step = compiled_decode_step(cache.k[0].device.type) if compile else None
        self.pos = torch.zeros(1, dtype=torch.long, device=cache.k[0].device)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) -> logits (B, V) for the next position."""
        if self.step is None:
            return self.model(tokens[:, None], kv_cache=self.cache)[:, -1]
        if self.cache.pos >= self.cache.max_len:
            raise ValueError(f"KV cache of {self.cache.max_len} positions is full")
        self.pos.fill_(self.cache.pos)
        logits = self.step(self.model, tokens[:, None], self.pos, self.cache.k, self.cache.v)
        self.cache.pos += 1
        return logits


@torch.no_grad()
def generate(model: GPT, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None, stop_ids=(), use_cache: bool = True,
             cache: KVCache | None = None, compile: bool = False) -> Iterator[int]:
    """Yield new token ids one at a time (streaming). Stops after max_new_tokens, at a stop id
    (which is yielded), or when the context length is reached.

    With `cache`, generation continues a sequence already in that cache (a chat's earlier turns)
    and `prompt` holds only the new tokens. When it returns, the cache holds everything but the
    last yielded token, which the caller feeds first next time."""
    if not prompt:
        raise ValueError("generate() needs at least one prompt token (e.g. <|endoftext|>)")
    device = next(model.parameters()).device
    max_len = model.cfg.seq_len
    start = cache.pos if cache is not None else 0
    if start + len(prompt) >= max_len:
        raise ValueError(f"prompt of {len(prompt)} tokens (after {start} in context) leaves no room in a context of {max_len}")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    if use_cache and cache is None:
        cache = KVCache(model.cfg, 1, max_len, device, next(model.parameters()).dtype)
    elif not use_cache and cache is not None:
        raise ValueError("use_cache=False recomputes from the prompt; it cannot continue a cache")
    logits = model(ids, kv_cache=cache)[:, -1]  # prefill (eager: its length varies)
    decode = Decoder(model, cache, compile) if use_cache else None
    length = start + len(prompt)
    stop_ids = set(stop_ids)
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, gen)
        tok = int(nxt)
        yield tok
        length += 1
        if tok in stop_ids or length >= max_len or i + 1 == max_new_tokens:
            return
        if use_cache:
            logits = decode(nxt)
        else:
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            logits = model(ids)[:, -1]


@torch.no_grad()
def generate_batch(model: GPT, prompts: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                   top_k: int = 0, top_p: float = 1.0, seed: int | None = None, compile: bool = False) -> torch.Tensor:
    """Continue B prompts of equal length at once with one KV cache: (B, T) -> (B, max_new_tokens).
    No stop tokens (every row runs to max_new_tokens): for throughput and batched sampling."""
    B, T = prompts.shape
    if T + max_new_tokens > model.cfg.seq_len:
        raise ValueError(f"{T} + {max_new_tokens} tokens exceed the context length {model.cfg.seq_len}")
    p = next(model.parameters())
    gen = torch.Generator(device=p.device).manual_seed(seed) if seed is not None else None
    cache = KVCache(model.cfg, B, T + max_new_tokens, p.device, p.dtype)
    logits = model(prompts.to(p.device), kv_cache=cache)[:, -1]
    decode = Decoder(model, cache, compile)
    out = torch.empty(B, max_new_tokens, dtype=torch.long, device=p.device)
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, gen)
        out[:, i] = nxt
        if i + 1 < max_new_tokens:
            logits = decode(nxt)
    return out


@torch.no_grad()
def sample_group(model: GPT, prompt: list[int], n: int, max_new_tokens: int, stop_id: int, temperature: float = 1.0,
                 top_k: int = 0, generator: torch.Generator | None = None, compile: bool = False) -> list[list[int]]:
    """n answers to one prompt at once (RL rollouts, best-of-n): one prefill of the prompt, then
    batched decoding until every row has emitted `stop_id` or max_new_tokens. Returns each row's
    tokens up to and including its first stop id (absent when it never stopped). The cache spans
    the whole context whatever the prompt length, so compiled decoding keeps one graph per n."""
    max_new_tokens = min(max_new_tokens, model.cfg.seq_len - len(prompt))
    if max_new_tokens < 1:
        raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in a context of {model.cfg.seq_len}")
    p = next(model.parameters())
    cache = KVCache(model.cfg, n, model.cfg.seq_len, p.device, p.dtype)
    ids = torch.tensor([prompt] * n, dtype=torch.long, device=p.device)
    logits = model(ids, kv_cache=cache)[:, -1]
    decode = Decoder(model, cache, compile)
    out = torch.empty(n, max_new_tokens, dtype=torch.long, device=p.device)
    done = torch.zeros(n, dtype=torch.bool, device=p.device)
    steps = 0
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, generator=generator)
        out[:, i] = nxt
        steps = i + 1
        done |= nxt == stop_id
        if bool(done.all()) or i + 1 == max_new_tokens:
            break
        logits = decode(nxt)
    rows = []
    for row in out[:, :steps].tolist():
        rows.append(row[: row.index(stop_id) + 1] if stop_id in row else row)
    return rows


@torch.no_grad()
def sample_groups(model: GPT, prompts: list[list[int]], n: int, max_new_tokens: int, stop_id: int,
                  temperature: float = 1.0, top_k: int = 0, generators=None, compile: bool = False) -> list[list[list[int]]]:
    """n answers to each of several prompts in one batch of len(prompts) * n rows: each prompt is
    prefilled once into its n rows of a shared cache, then every row decodes at its own position
    with GPT.decode_step (the server's ragged batch), until every row has emitted `stop_id` or its
    max_new_tokens (capped by the context). On a CPU one step over 64 rows costs little more than
    one over 8, so best-of-n sampling and RL rollouts run several times faster than prompt by prompt.

    generators: one torch.Generator per prompt (or None, or a single generator shared by all):
    with one per prompt, a prompt's answers do not depend on which prompts share its batch.
    Returns, per prompt, n token lists up to and including the first stop id (absent when the
    answer never stopped). Raises ValueError when a prompt leaves no room in the context."""
    P, L = len(prompts), model.cfg.seq_len
    if P == 0:
        return []
    for pr in prompts:
        if len(pr) >= L:
            raise ValueError(f"prompt of {len(pr)} tokens leaves no room in a context of {L}")
    if generators is None or isinstance(generators, torch.Generator):
        generators = [generators] * P
    p = next(model.parameters())
    budget = torch.tensor([min(max_new_tokens, L - len(pr)) for pr in prompts], device=p.device).repeat_interleave(n)
    cache = KVCache(model.cfg, P * n, L, p.device, p.dtype)
    logits = torch.empty(P * n, model.cfg.vocab_size, device=p.device, dtype=torch.float32)
    for j, pr in enumerate(prompts):  # prefill: eager, one prompt (n identical rows) at a time
        ids = torch.tensor([pr] * n, dtype=torch.long, device=p.device)
        logits[j * n:(j + 1) * n] = model(ids, kv_cache=cache.rows(j * n, (j + 1) * n))[:, -1].float()
    pos = torch.tensor([len(pr) for pr in prompts], dtype=torch.long, device=p.device).repeat_interleave(n)
    step = compiled_decode_step(p.device.type) if compile else None
    steps = int(budget.max())
    out = torch.full((P * n, steps), -1, dtype=torch.long, device=p.device)
    done = torch.zeros(P * n, dtype=torch.bool, device=p.device)
    for i in range(steps):
        nxt = torch.cat([sample_next(logits[j * n:(j + 1) * n], temperature, top_k, generator=g)
                         for j, g in enumerate(generators)])
        out[:, i] = torch.where(done, -1, nxt)
        done |= (nxt == stop_id) | (i + 1 >= budget)
        if bool(done.all()):
            break
        if step is not None:
            logits = step(model, nxt[:, None], pos, cache.k, cache.v).float()
        else:
            logits = model.decode_step(nxt[:, None], pos, cache.k, cache.v).float()
        pos = torch.where(done, pos, pos + 1).clamp(max=L - 1)  # finished rows idle at their last position
    result = []
    for j in range(P):
        group = []
        for row in out[j * n:(j + 1) * n].tolist():
            row = [t for t in row if t >= 0]
            group.append(row[: row.index(stop_id) + 1] if stop_id in row else row)
        result.append(group)
    return result


class TextStream:
    """Turns a stream of token ids into printable text pieces. A UTF-8 character can span several
    byte-level tokens, so text is only released once it no longer ends in a partial character.

    `prefix` holds the ids the new tokens continue (the prompt): text is decoded together with
    them, because a token's text can depend on what precedes it. A SentencePiece decoder drops the
    leading space of the first token it decodes, so "Once upon a" + "▁time" decoded alone would
    print "Once upon atime"."""

    def __init__(self, tok, prefix=()):
        self.tok, self.prefix, self.ids = tok, list(prefix), []
        self.head = tok.decode(self.prefix) if self.prefix else ""
        self.shown = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.text()
        if text.endswith("\ufffd"):
            return ""
        new, self.shown = text[len(self.shown):], text
        return new

    def text(self) -> str:
        """Text of the new tokens only, as they read after the prefix."""
        whole = self.tok.decode(self.prefix + self.ids)
        return whole[len(self.head):] if whole.startswith(self.head) else self.tok.decode(self.ids)

    def rest(self) -> str:
        """What push() has not released yet (a trailing partial character)."""
        return self.text()[len(self.shown):]


def complete(model: GPT, tok, prompt: str, **kwargs) -> str:
    """Convenience: text in, text out. An empty prompt starts a new document (<|endoftext|>)."""
    prompt_ids = tok.encode(prompt)
    stream = TextStream(tok, prompt_ids)
    for t in generate(model, [tok.eot_id] + prompt_ids, stop_ids=(tok.eot_id,), **kwargs):
        if t == tok.eot_id:
            break
        stream.push(t)
    return prompt + stream.text()

"""Bits per byte: a tokenizer-independent measure of how well a model predicts text.

    bits/byte = (sum over tokens of -log p(token | context)) / ln 2 / (UTF-8 bytes of the text)

Dividing by bytes instead of tokens makes models with different tokenizers comparable (a
tokenizer with longer tokens has fewer, harder predictions; per byte it evens out).

Long documents are scored with the rolling windows of lm-evaluation-harness
(`get_rolling_token_windows`, used by its `wikitext` task): the document is prefixed with
<|endoftext|>, the first window predicts its first `seq_len` tokens, and every later window
predicts the next `seq_len - context_len + 1` tokens from a full window of input. With
`context_len=1` the windows are disjoint, exactly as the harness does it, and the first token of
each window sees almost no context. `tinylm bpb` defaults to `context_len = seq_len // 2`, so every
token after the first window is predicted from at least half a context of real text, at about
twice the cost; the choice is recorded in the output.

Run: tinylm bpb --checkpoint runs/default --text tinystories
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F



def rolling_windows(n_tokens: int, max_len: int, context_len: int):
    """Windows over s = [prefix] + tokens (length n_tokens + 1), as lm-evaluation-harness cuts them.

    Yields (a, b, n_pred): the model reads s[a:b] and the last n_pred of its next-token targets
    s[a+1:b+1] are scored. Every token of the document is scored exactly once."""
    if not 1 <= context_len <= max_len:
        raise ValueError(f"context_len must be in [1, {max_len}], got {context_len}")
    if n_tokens == 0:
        return
    pred_len = max_len - context_len + 1
    first = min(max_len, n_tokens)
    yield 0, first, first
    predicted = first
    while predicted < n_tokens:
        w = min(n_tokens - predicted, pred_len)
        end = predicted + w
        yield end - max_len, end, w
        predicted = end


@dataclass
class BpbResult:
    nll_nats: float  # summed negative log-likelihood
    tokens: int
    bytes: int
    words: int
    documents: int
    context_len: int
    seq_len: int

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / math.log(2) / max(self.bytes, 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            bits_per_byte=self.bits_per_byte,
            byte_perplexity=math.exp(self.nll_nats / max(self.bytes, 1)),
            token_perplexity=math.exp(self.nll_nats / max(self.tokens, 1)),
            word_perplexity=math.exp(self.nll_nats / max(self.words, 1)),
        )
        return d


def score_documents(model, tok, docs, context_len: int = 0, batch_size: int = 16) -> BpbResult:
    """Rolling-window log-likelihood of each document; see the module docstring. The windows are
    scored by the evaluation harness's engine (tinylm/eval/lm.py), the one home of that loop."""
    from tinylm.eval.lm import LanguageModel
    from tinylm.model import GPT

    L = model.cfg.seq_len
    context_len = context_len or max(L // 2, 1)
    docs = list(docs)
    lm = LanguageModel(forward=model, tok=tok, max_length=L, model=model if isinstance(model, GPT) else None,
                       device=str(next(model.parameters()).device), batch_tokens=batch_size * L)
    scored = lm.loglikelihood_rolling(docs, context_len)
    return BpbResult(-sum(ll for ll, _ in scored), sum(n for _, n in scored), sum(len(d.encode("utf-8")) for d in docs),
                     sum(len(d.split()) for d in docs), len(docs), context_len, L)


@torch.no_grad()
def batches_bpb(model, batches, token_bytes: torch.Tensor, autocast=None) -> float:
    """Validation bits per byte over (x, y) token batches, as logged during training.

    Targets whose token stands for no text (specials such as <|endoftext|>, byte length 0) count
    towards neither the loss nor the bytes, as in nanochat's evaluate_bpb."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    token_bytes = token_bytes.to(next(model.parameters()).device)
    nll = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    n_bytes = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    for x, y in batches:
        with autocast():
            logits = model(x)
        y = y.reshape(-1)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y, reduction="none")
        b = token_bytes[y]
        nll += (losses * (b > 0)).sum().double()
        n_bytes += b.sum().double()
    return (nll / math.log(2) / n_bytes.clamp(min=1)).item()

import math

import torch
import torch.nn.functional as F

from tinylm.bpb import batches_bpb, rolling_windows, score_documents
from tinylm.config import ModelConfig
from tinylm.model import GPT


def test_rolling_windows_match_lm_eval_harness_disjoint_protocol():
    # s = [prefix, t0..t9]; max_len 4, context_len 1 (lm-eval's loglikelihood_rolling):
    # window 1 reads [p t0 t1 t2] -> t0..t3; window 2 reads [t3..t6] -> t4..t7; window 3 reads [t5..t8] -> t8 t9
    assert list(rolling_windows(10, 4, 1)) == [(0, 4, 4), (4, 8, 4), (6, 10, 2)]
    # overlapping windows: each later window predicts max_len - context_len + 1 = 2 new tokens
    assert list(rolling_windows(7, 4, 3)) == [(0, 4, 4), (2, 6, 2), (3, 7, 1)]
    assert list(rolling_windows(3, 4, 1)) == [(0, 3, 3)]


def test_every_token_is_scored_exactly_once():
    for n in (1, 5, 17, 64, 65):
        for ctx in (1, 3, 8):
            scored = []
            for a, b, n_pred in rolling_windows(n, 8, ctx):
                assert 0 <= a < b <= n and b - a <= 8
                scored += list(range(b + 1 - n_pred, b + 1))  # target positions in s
            assert scored == list(range(1, n + 1))


class Uniform(torch.nn.Module):
    """Stub model: uniform distribution over V tokens at every position."""

    def __init__(self, V, seq_len):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=V, seq_len=seq_len, n_layer=1, n_head=1, n_kv_head=1, n_embd=2)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(*x.shape, self.cfg.vocab_size)


def test_bits_per_byte_equals_hand_computation_for_uniform_model(tokenizer):
    docs = ["Once upon a time, Lily found a ball.", "Tom smiled. \u00e9t\u00e9 \u2603"]
    res = score_documents(Uniform(tokenizer.vocab_size, 8), tokenizer, docs, context_len=1, batch_size=3)
    n_tok = sum(len(tokenizer.encode(d)) for d in docs)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert res.tokens == n_tok and res.bytes == n_bytes and res.documents == 2
    assert math.isclose(res.bits_per_byte, n_tok * math.log2(tokenizer.vocab_size) / n_bytes, rel_tol=1e-6)  # fp32 sums
    d = res.to_dict()
    assert math.isclose(d["byte_perplexity"], 2 ** res.bits_per_byte, rel_tol=1e-9)
    assert math.isclose(d["token_perplexity"], tokenizer.vocab_size, rel_tol=1e-5)


def test_rolling_score_equals_brute_force_full_context(tokenizer):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=8, n_layer=1, n_head=2, n_kv_head=2, n_embd=16)).eval()
    doc = "Once upon a time, Max found a kite in the park."
    s = [tokenizer.eot_id] + tokenizer.encode(doc)
    brute = 0.0
    with torch.no_grad():
        for j in range(1, len(s)):  # each token predicted from the previous (up to) 8 tokens
            ctx = torch.tensor([s[max(0, j - 8) : j]])
            brute -= F.log_softmax(model(ctx)[0, -1], -1)[s[j]].item()
    res = score_documents(model, tokenizer, [doc], context_len=8, batch_size=4)
    assert math.isclose(res.nll_nats, brute, rel_tol=1e-5)


def test_batches_bpb_ignores_zero_byte_tokens(tokenizer):
    V = tokenizer.vocab_size
    x = torch.zeros(1, 4, dtype=torch.long)
    y = torch.tensor([[tokenizer.eot_id, 100, 101, 102]])
    token_bytes = torch.tensor(tokenizer.token_bytes, dtype=torch.float32)
    bpb = batches_bpb(Uniform(V, 4), [(x, y)], token_bytes)
    n_bytes = sum(tokenizer.token_bytes[t] for t in (100, 101, 102))
    assert math.isclose(bpb, 3 * math.log2(V) / n_bytes, rel_tol=1e-6)

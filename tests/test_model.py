import pytest
import torch

from tinylm.config import MODEL_PRESETS, ModelConfig, model_preset
from tinylm.model import GPT, KVCache, describe, flops_per_token


def small_cfg(**kw):
    return ModelConfig(**{**dict(vocab_size=97, seq_len=24, n_layer=2, n_head=4, n_kv_head=4, n_embd=32), **kw})


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_changing_a_future_token_never_changes_earlier_logits(n_kv_head):
    model = GPT(small_cfg(n_kv_head=n_kv_head)).eval()
    x = torch.randint(0, 97, (2, 20))
    x2 = x.clone()
    x2[:, 12] = (x2[:, 12] + 1) % 97
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_param_counts_match_hand_formula():
    cfg = small_cfg(n_kv_head=2)
    m = GPT(cfg)
    d, V, L, hd = 32, 97, 2, cfg.hidden_dim
    per_layer = d * d * 2 + d * (2 * 8) * 2 + 3 * d * hd + 2 * d  # wq wo, wk wv (2 kv heads x 8), ffn, norms
    assert m.num_params() == V * d + L * per_layer + d  # tied head counted once, final norm
    assert m.num_params(non_embedding=True) == m.num_params() - V * d
    assert m.lm_head.weight is m.wte.weight


def test_untied_head_counts_as_embedding():
    m = GPT(small_cfg(tie_embeddings=False))
    assert m.num_params() - m.num_params(non_embedding=True) == 2 * 97 * 32


def test_flops_per_token_on_known_config():
    cfg = ModelConfig(vocab_size=4096, seq_len=256, n_layer=4, n_head=4, n_kv_head=4, n_embd=128)
    assert cfg.hidden_dim == 352  # 8/3 * 128 = 341.3 rounded up to a multiple of 32
    matmul = 4 * (4 * 128 * 128 + 3 * 128 * 352) + 128 * 4096
    assert flops_per_token(cfg) == 6 * matmul + 12 * 4 * 128 * 256


def test_presets_span_0_3m_to_30m_and_default_is_about_1m():
    sizes = {name: describe(model_preset(name))["params"] for name in MODEL_PRESETS}
    assert 0.25e6 < min(sizes.values()) < 0.5e6
    assert 20e6 < max(sizes.values()) < 40e6
    assert 0.8e6 < sizes["1m"] < 1.5e6


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(n_embd=130, n_head=4)
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="context length"):
        GPT(small_cfg())(torch.zeros(1, 25, dtype=torch.long))


def test_kv_cache_matches_full_forward():
    cfg = small_cfg(n_kv_head=2)
    model = GPT(cfg).eval()
    x = torch.randint(0, 97, (2, 18))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(cfg, 2, cfg.seq_len, "cpu", torch.float32)
        parts = [model(x[:, :7], kv_cache=cache)]  # prefill
        parts += [model(x[:, t : t + 1], kv_cache=cache) for t in range(7, 12)]  # one token at a time
        parts.append(model(x[:, 12:], kv_cache=cache))  # a chunk after a non-empty cache
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 18

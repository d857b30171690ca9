"""GGUF export: read back with llama.cpp's own `gguf` reader, every tensor and key checked
(f32 bitwise, f16 exactly the float16 rounding, q8_0 within half a quantization step), the RoPE
permutation, and clear refusals. The parity test in llama.cpp itself is tests/test_llamacpp.py."""

import json

import numpy as np
import pytest
import torch

from tinylm.chat import jinja_template
from tinylm.config import ExportConfig, ModelConfig
from tinylm.model import GPT, apply_rope
from tinylm.stages import convert
from tinylm.train.checkpoint import load_model, save_checkpoint

gguf = pytest.importorskip("gguf", reason="GGUF export needs the gguf package (pip install gguf)")
from tinylm.interop.gguf import (GGUFExportError, check_expressible, half_to_interleaved,  # noqa: E402
                                 pre_tokenizer_name, read_gguf, write_gguf)


def _model(tokenizer, tied=True, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**dict(vocab_size=tokenizer.vocab_size, seq_len=64, n_layer=2, n_head=4, n_kv_head=2,
                                n_embd=64, tie_embeddings=tied), **kw})
    model = GPT(cfg)
    with torch.no_grad():  # non-trivial norm gains, so a swapped norm would show
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def run_dir(request, tokenizer, tmp_path):
    model = _model(tokenizer, request.param)
    meta = {"stage": "pretrain", "config": {"model": model.cfg.__dict__}, "tokenizer_sha256": tokenizer.sha256,
            "tokens_seen": 0}
    save_checkpoint(tmp_path / "run", 5, model, None, meta, tokenizer_path=tokenizer.path)
    return tmp_path / "run"


def _fields(path) -> dict:
    r = gguf.GGUFReader(str(path))
    return {name: f.contents() for name, f in r.fields.items()}, {t.name: t for t in r.tensors}


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_gguf_round_trip_every_tensor_and_key(run_dir, tmp_path, outtype):
    out = tmp_path / "m.gguf"
    convert.export(ExportConfig(checkpoint=str(run_dir), format="gguf", out=str(out), outtype=outtype))
    model, tok, _ = load_model(run_dir)
    cfg = model.cfg
    kv, tensors = _fields(out)

    # every key, with its value
    end = tok.hf.token_to_id("<|end|>")
    expected = {
        "general.architecture": "llama", "general.type": "model", "general.name": "tinylm",
        "general.file_type": {"f32": 0, "f16": 1, "q8_0": 7}[outtype], "general.quantization_version": 2,
        "llama.vocab_size": cfg.vocab_size, "llama.context_length": 64, "llama.embedding_length": 64,
        "llama.block_count": 2, "llama.feed_forward_length": cfg.hidden_dim, "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16, "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": pytest.approx(1e-5),
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": tok.eot_id, "tokenizer.ggml.eos_token_id": end,
        "tokenizer.ggml.padding_token_id": tok.pad_id, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False, "tokenizer.chat_template": jinja_template(),
    }
    for k, v in expected.items():
        assert kv[k] == v, k
    vocab = tok.hf.get_vocab()
    assert kv["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    special = {tok.hf.token_to_id(t) for t in ("<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")}
    assert kv["tokenizer.ggml.token_type"] == [3 if i in special else 1 for i in range(cfg.vocab_size)]
    merges = json.loads(open(tok.path).read())["model"]["merges"]
    assert kv["tokenizer.ggml.merges"] == [" ".join(m) for m in merges]
    assert set(kv) == set(expected) | {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.description",
                                       "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}

    # every tensor: its name, llama.cpp's shape, type and values
    sd = model.state_dict()
    names = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}.weight" for i in range(2) for n in (
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(tensors) == names | (set() if cfg.tie_embeddings else {"output.weight"})
    ours = {"token_embd.weight": sd["wte.weight"], "output_norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        ours["output.weight"] = sd["lm_head.weight"]
    for i in range(2):
        p = f"layers.{i}."
        ours |= {f"blk.{i}.attn_norm.weight": sd[p + "attn_norm.weight"], f"blk.{i}.ffn_norm.weight": sd[p + "ffn_norm.weight"],
                 f"blk.{i}.attn_q.weight": half_to_interleaved(sd[p + "attn.wq.weight"], 4),
                 f"blk.{i}.attn_k.weight": half_to_interleaved(sd[p + "attn.wk.weight"], 2),
                 f"blk.{i}.attn_v.weight": sd[p + "attn.wv.weight"], f"blk.{i}.attn_output.weight": sd[p + "attn.wo.weight"],
                 f"blk.{i}.ffn_gate.weight": sd[p + "ffn.w1.weight"], f"blk.{i}.ffn_up.weight": sd[p + "ffn.w3.weight"],
                 f"blk.{i}.ffn_down.weight": sd[p + "ffn.w2.weight"]}
    T = gguf.GGMLQuantizationType
    for name, t in tensors.items():
        w = ours[name].numpy()
        assert tuple(int(x) for x in t.shape) == tuple(reversed(w.shape)), name  # ggml: innermost first
        if w.ndim == 1 or outtype == "f32":
            assert t.tensor_type == T.F32
            assert np.array_equal(t.data.reshape(w.shape), w), name  # bitwise
        elif outtype == "f16":
            assert t.tensor_type == T.F16
            assert np.array_equal(t.data.reshape(w.shape), w.astype(np.float16)), name  # round to nearest
            assert np.all(np.abs(t.data.reshape(w.shape).astype(np.float32) - w) <= np.abs(w) * 2.0**-11 + 2.0**-25)
        else:
            assert t.tensor_type == T.Q8_0
            back = gguf.quants.dequantize(t.data, T.Q8_0).reshape(w.shape)
            blocks = np.abs(w).reshape(-1, 32).max(axis=1, keepdims=True) / 127  # the block's step
            err = np.abs(back - w).reshape(-1, 32)
            assert np.all(err <= blocks * 0.5 + np.abs(w).reshape(-1, 32) * 2.0**-10 + 1e-12), name


def test_gguf_read_back_gives_tinylm_config_and_weights(run_dir, tmp_path):
    model, tok, meta = load_model(run_dir)
    write_gguf(model, tok, tmp_path / "m.gguf", "f32", meta)
    cfg, sd, _ = read_gguf(tmp_path / "m.gguf")
    assert cfg == model.cfg
    ref = model.state_dict()
    assert sd.keys() == {k for k in ref if not (cfg.tie_embeddings and k == "lm_head.weight")}
    assert all(torch.equal(sd[k], ref[k]) for k in sd)


def test_rope_permutation_maps_half_pairs_to_interleaved_pairs():
    """llama.cpp rotates (x0, x1), (x2, x3), ...; tinylm (x_i, x_{i+d/2}). Rotating q = W x in
    tinylm equals rotating the permuted rows' output in the interleaved layout, then un-permuting."""
    torch.manual_seed(0)
    n_head, d, c = 2, 8, 5
    W, x = torch.randn(n_head * d, c), torch.randn(c)
    pos = 3
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    cos, sin = (pos * inv_freq).cos()[None], (pos * inv_freq).sin()[None]
    ours = apply_rope((W @ x).view(1, n_head, 1, d), cos, sin).view(n_head, d)
    q = (half_to_interleaved(W, n_head) @ x).view(n_head, d // 2, 2)  # pairs (2i, 2i + 1)
    rot = torch.stack([q[..., 0] * cos - q[..., 1] * sin, q[..., 1] * cos + q[..., 0] * sin], dim=-1)
    # interleaved pair i holds (x_i, x_{i+d/2}): un-permute to compare
    assert torch.allclose(torch.cat([rot[..., 0], rot[..., 1]], dim=-1), ours, atol=1e-6)


def test_gguf_export_refuses_what_llama_cpp_cannot_represent(tokenizer, tmp_path):
    with pytest.raises(GGUFExportError, match=r"model\.n_embd = 48 .*multiple of 32"):
        check_expressible(ModelConfig(n_embd=48, n_head=4, n_kv_head=4), "q8_0")
    check_expressible(ModelConfig(n_embd=48, n_head=4, n_kv_head=4), "f16")  # f16 has no blocks
    with pytest.raises(GGUFExportError, match="outtype 'q4_k'"):
        check_expressible(ModelConfig(), "q4_k")
    # a setting outside Llama's (a field this check does not know) must keep its default
    import dataclasses

    Extra = dataclasses.make_dataclass("Extra", [("pos_emb", str, dataclasses.field(default="rope"))], bases=(ModelConfig,))
    with pytest.raises(GGUFExportError, match=r"model\.pos_emb='learned'"):
        check_expressible(Extra(pos_emb="learned"), "f32")


def test_unknown_pre_tokenizer_is_refused_by_name(tokenizer):
    tj = json.loads(open(tokenizer.path).read())
    assert pre_tokenizer_name(tj) == "gpt-2"
    tj["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    with pytest.raises(GGUFExportError, match="pre-tokenizer .*add_prefix_space.*not one llama.cpp knows"):
        pre_tokenizer_name(tj)
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581"}
    with pytest.raises(GGUFExportError, match="Metaspace"):
        pre_tokenizer_name(tj)
    tj["normalizer"] = {"type": "NFC"}
    with pytest.raises(GGUFExportError, match="normalizer 'NFC'"):
        pre_tokenizer_name(tj)


def test_sentencepiece_tokenizer_export_fails_with_one_line(tmp_path, shared_data):
    from tinylm.interop import read_model

    model, tok = read_model("llama2c", shared_data / "checkpoints/stories260K.bin", shared_data / "checkpoints/tok512.bin")
    tok.path = str(tmp_path / "tok.json")
    tok.hf.save(tok.path)
    with pytest.raises(GGUFExportError, match="SentencePiece-style BPE .* tinylm tokenizers only"):
        write_gguf(model, tok, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_gguf_export_writes_the_model_card_beside_the_file(run_dir, tmp_path):
    """An export directory gets README.md (the Hugging Face card with GGUF usage); a named file gets
    <name>.md and leaves a README.md already in its folder alone."""
    convert.export(ExportConfig(checkpoint=str(run_dir), format="gguf", out=str(tmp_path / "exp"), outtype="f32"))
    card = (tmp_path / "exp" / "README.md").read_text()
    assert (tmp_path / "exp" / "model-f32.gguf").exists()
    assert "llama-cli -m model.gguf" in card and "## Training" in card and "library_name: gguf" in card
    (tmp_path / "README.md").write_text("mine")
    convert.export(ExportConfig(checkpoint=str(run_dir), format="gguf", out=str(tmp_path / "named.gguf"), outtype="f32"))
    assert (tmp_path / "README.md").read_text() == "mine"
    assert (tmp_path / "named.md").read_text() == card

"""GGUF export: a tinylm checkpoint as one file that llama.cpp (and Ollama, LM Studio,
llama-cpp-python) loads as architecture `llama`, written with `gguf`, the package llama.cpp
maintains for exactly this (pip install 'tinylm[gguf]').

What goes in, in llama.cpp's terms (the names `convert_hf_to_gguf.py` writes for a Llama):
- hyperparameters `llama.*`: context, width, depth, SwiGLU width, heads, kv heads, RoPE base and
  dimension, RMSNorm epsilon, vocabulary size;
- tensors `token_embd`, `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
  ffn_gate, ffn_up, ffn_down}`, `output_norm` (and `output` when the embeddings are untied:
  llama.cpp reuses `token_embd` otherwise). llama.cpp's `llama` architecture rotates interleaved
  pairs (x0, x1), (x2, x3), ... (rope type NORM), tinylm the two halves of each head (as Hugging
  Face does), so the rows of attn_q and attn_k are permuted per head, the permutation
  convert_hf_to_gguf applies to every Hugging Face Llama;
- the tokenizer as `gpt2`-type BPE: the byte-level token strings, the merges, token types (the
  reserved tokens are CONTROL, so text that spells "<|user|>" stays text, as in tinylm), BOS =
  <|endoftext|> (every document starts with it; `add_bos_token` is on so a raw llama.cpp prompt
  starts a document as in training), EOS = end of turn <|end|>, PAD, and the chat template as the
  same Jinja string the Hugging Face export carries;
- `tokenizer.ggml.pre`: the pre-tokenizer llama.cpp must run before the merges. tinylm's is
  GPT-2's regex without a prefix space, which llama.cpp implements as `gpt-2`. That name also
  turns on llama.cpp's `clean_spaces` in `llama_detokenize` (" ." -> "." when a whole sequence is
  decoded at once); token ids, and streaming token-by-token decoding, are unaffected (README).

Weights: f32 (bitwise tinylm's), f16, or q8_0 (blocks of 32 values with one f16 scale, quantized
by gguf's own `quants` module); 1-D norm gains stay f32, as llama.cpp's converter keeps them.
Shapes or settings llama.cpp's `llama` cannot express are refused with the field named.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinylm.chat import jinja_template
from tinylm.config import ModelConfig

OUTTYPES = ("f32", "f16", "q8_0")
Q8_BLOCK = 32  # values per q8_0 block: every quantized row must be a whole number of blocks
_PAD_PIECE = "[PAD{}]"  # convert_hf_to_gguf's name for vocabulary rows the tokenizer does not use

# tinylm layer tensor -> GGUF tensor in block N
_LAYER_MAP = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.wq.weight": "attn_q.weight",
    "attn.wk.weight": "attn_k.weight",
    "attn.wv.weight": "attn_v.weight",
    "attn.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn.w1.weight": "ffn_gate.weight",
    "ffn.w3.weight": "ffn_up.weight",
    "ffn.w2.weight": "ffn_down.weight",
}
# ModelConfig fields with a llama.cpp `llama` equivalent (or only shaping tensors that carry it);
# any other field must keep its default, which is the Llama choice
_EXPRESSIBLE = {"vocab_size", "seq_len", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden",
                "multiple_of", "rope_theta", "norm_eps", "tie_embeddings"}


class GGUFExportError(ValueError):
    """A model or tokenizer that llama.cpp cannot represent; the message names the field."""


def _gguf():
    try:
        import gguf
    except ImportError as e:
        raise GGUFExportError("GGUF export needs the `gguf` package (llama.cpp's writer): "
                              "pip install gguf (or pip install 'tinylm[gguf]')") from e
    return gguf


# ---------------------------------------------------------------------------------------------
# Weights


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of wq/wk from the half RoPE layout (pairs i, i + d/2) to llama.cpp's interleaved one
    (pairs 2i, 2i + 1): row j + h*d/2 of each head moves to 2j + h. (n_heads*d, in) -> same."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `half_to_interleaved`."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def check_expressible(cfg: ModelConfig, outtype: str) -> None:
    """Raise GGUFExportError naming the first config field llama.cpp's `llama` cannot represent."""
    if outtype not in OUTTYPES:
        raise GGUFExportError(f"outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    defaults = type(cfg)()  # the Llama choices
    for f in dataclasses.fields(cfg):
        if f.name not in _EXPRESSIBLE and getattr(cfg, f.name) != getattr(defaults, f.name):
            raise GGUFExportError(
                f"model.{f.name}={getattr(cfg, f.name)!r}: llama.cpp's llama architecture has no equivalent "
                f"(it is {getattr(defaults, f.name)!r} there); this model cannot be exported to GGUF")
    if outtype == "q8_0":  # each row (a tensor's input dimension) is cut into blocks of 32
        for name, size in (("n_embd", cfg.n_embd), ("ffn_hidden (SwiGLU width)", cfg.hidden_dim),
                           ("n_head * head_dim", cfg.n_head * cfg.head_dim)):
            if size % Q8_BLOCK:
                raise GGUFExportError(
                    f"q8_0 quantizes rows in blocks of {Q8_BLOCK} values; model.{name} = {size} is not a multiple "
                    f"of {Q8_BLOCK}: export with --outtype f16 or f32")


def gguf_tensors(sd: dict[str, torch.Tensor], cfg: ModelConfig, vocab_rows: int | None = None) -> dict[str, np.ndarray]:
    """tinylm state dict -> {GGUF name: float32 array in llama.cpp's layout}, in file order.
    `vocab_rows` pads the embedding (and output) with zero rows up to that many tokens."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float32).cpu().contiguous().numpy()

    def vocab(t: torch.Tensor) -> np.ndarray:
        a = arr(t)
        if vocab_rows and vocab_rows > a.shape[0]:
            a = np.concatenate([a, np.zeros((vocab_rows - a.shape[0], a.shape[1]), np.float32)])
        return a

    out = {"token_embd.weight": vocab(sd["wte.weight"])}
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            w = sd[f"layers.{i}.{ours}"]
            if ours == "attn.wq.weight":
                w = half_to_interleaved(w, cfg.n_head)
            elif ours == "attn.wk.weight":
                w = half_to_interleaved(w, cfg.n_kv_head)
            out[f"blk.{i}.{theirs}"] = arr(w)
    out["output_norm.weight"] = arr(sd["norm.weight"])
    if not cfg.tie_embeddings:
        out["output.weight"] = vocab(sd["lm_head.weight"])
    return out


def _encode(gguf, a: np.ndarray, outtype: str) -> tuple[np.ndarray, object]:
    """(data, GGML type) of one tensor: 1-D tensors stay f32, matrices take the outtype."""
    T = gguf.GGMLQuantizationType
    if a.ndim == 1 or outtype == "f32":
        return a, T.F32
    if outtype == "f16":
        big = np.abs(a).max(initial=0.0)
        if big > np.finfo(np.float16).max:
            raise GGUFExportError(f"a weight of magnitude {big:.3g} overflows f16 (max 65504): export with --outtype f32")
        return a.astype(np.float16), T.F16
    return gguf.quants.quantize(a, T.Q8_0), T.Q8_0


# ---------------------------------------------------------------------------------------------
# Tokenizer


def pre_tokenizer_name(tok_json: dict, where: str = "tokenizer.json") -> str:
    """The `tokenizer.ggml.pre` llama.cpp knows for this Hugging Face tokenizer.json, or a
    GGUFExportError naming what has none. tinylm's tokenizer (byte-level BPE, GPT-2's regex, no
    prefix space, no normalizer) is llama.cpp's `gpt-2`."""
    model = tok_json.get("model") or {}
    if model.get("type") != "BPE":
        raise GGUFExportError(f"{where}: model type {model.get('type')!r}: GGUF export writes byte-level BPE "
                              "tokenizers (tinylm tokenizer) only")
    if model.get("byte_fallback") or model.get("ignore_merges"):
        raise GGUFExportError(f"{where}: a SentencePiece-style BPE (byte_fallback / ignore_merges) is not the "
                              "byte-level BPE that GGUF export writes (tokenizer.ggml.model gpt2); tinylm tokenizers only")
    if tok_json.get("normalizer") is not None:
        raise GGUFExportError(f"{where}: normalizer {tok_json['normalizer'].get('type')!r}: llama.cpp's BPE "
                              "tokenizers do not normalize text, so ids would differ")
    pre = tok_json.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", True):
        return "gpt-2"
    raise GGUFExportError(
        f"{where}: pre-tokenizer {json.dumps(pre, sort_keys=True)} is not one llama.cpp knows "
        "(tokenizer.ggml.pre); GGUF export supports tinylm's: ByteLevel with GPT-2's regex, add_prefix_space false")


def tokenizer_fields(tok, n_vocab: int) -> dict:
    """Everything llama.cpp's gpt2-type vocabulary needs, from a tinylm Tokenizer."""
    gguf = _gguf()
    path = Path(tok.path)
    tok_json = json.loads(path.read_text(encoding="utf-8"))
    pre = pre_tokenizer_name(tok_json, str(path))
    n_tok = tok.vocab_size
    if n_tok > n_vocab:
        raise GGUFExportError(f"model.vocab_size = {n_vocab} is smaller than the tokenizer's {n_tok} tokens")
    pieces = [_PAD_PIECE.format(i) for i in range(n_vocab)]
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    for piece, i in tok.hf.get_vocab(with_added_tokens=True).items():
        pieces[i], types[i] = piece, int(gguf.TokenType.NORMAL)
    for i, added in tok.hf.get_added_tokens_decoder().items():
        types[i] = int(gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"].get("merges", [])]
    chat = tok.has_chat_tokens()
    end = tok.hf.token_to_id("<|end|>") if chat else None
    return {"pre": pre, "tokens": pieces, "types": types, "merges": merges, "bos": tok.eot_id,
            "eos": end if end is not None else tok.eot_id, "pad": tok.pad_id,
            "chat_template": jinja_template() if chat else None}


# ---------------------------------------------------------------------------------------------
# Writing


def write_gguf(model, tok, path, outtype: str = "f32", meta: dict | None = None) -> Path:
    """Write `model` and `tok` as one GGUF file at `path` (atomically). Returns the path."""
    gguf = _gguf()
    cfg: ModelConfig = model.cfg
    check_expressible(cfg, outtype)
    vocab = tokenizer_fields(tok, cfg.vocab_size)
    tensors = gguf_tensors(model.state_dict(), cfg)
    meta = meta or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "llama")
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(meta.get("name", "tinylm"))
        w.add_description(f"tinylm {meta.get('stage', 'model')}, step {meta.get('step', 'n/a')}, "
                          f"{meta.get('tokens_seen', 'n/a')} tokens, code {meta.get('code_version', 'n/a')}")
        w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                         "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_vocab_size(cfg.vocab_size)
        w.add_context_length(cfg.seq_len)
        w.add_embedding_length(cfg.n_embd)
        w.add_block_count(cfg.n_layer)
        w.add_feed_forward_length(cfg.hidden_dim)
        w.add_head_count(cfg.n_head)
        w.add_head_count_kv(cfg.n_kv_head)
        w.add_rope_dimension_count(cfg.head_dim)  # RoPE over the whole head
        w.add_rope_freq_base(float(cfg.rope_theta))
        w.add_layer_norm_rms_eps(float(cfg.norm_eps))
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(vocab["pre"])
        w.add_token_list(vocab["tokens"])
        w.add_token_types(vocab["types"])
        w.add_token_merges(vocab["merges"])
        w.add_bos_token_id(vocab["bos"])
        w.add_eos_token_id(vocab["eos"])
        if vocab["pad"] is not None:
            w.add_pad_token_id(vocab["pad"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        if vocab["chat_template"]:
            w.add_chat_template(vocab["chat_template"])
        for name, a in tensors.items():
            data, qtype = _encode(gguf, a, outtype)
            w.add_tensor(name, data, raw_dtype=qtype)  # q8_0: bytes per row; gguf derives the shape
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------
# Reading back (tests, and tinylm-side logits of an f16 / q8_0 file)


def read_gguf(path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """(model config, tinylm state dict in float32, {key: value} metadata) of a GGUF file written
    by `write_gguf`: quantized tensors are dequantized, q/k rows permuted back to the half layout."""
    gguf = _gguf()
    r = gguf.GGUFReader(str(path))
    kv = {name: f.contents() for name, f in r.fields.items()}
    if kv.get("general.architecture") != "llama":
        raise ValueError(f"{path}: architecture {kv.get('general.architecture')!r}, expected llama")
    a = "llama."
    n_head, n_kv = kv[a + "attention.head_count"], kv[a + "attention.head_count_kv"]
    raw = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists dimensions innermost first
        data = gguf.quants.dequantize(t.data, t.tensor_type) if t.tensor_type not in (
            gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else t.data
        raw[t.name] = torch.from_numpy(np.array(data, dtype=np.float32).reshape(shape))
    tied = "output.weight" not in raw
    cfg = ModelConfig(vocab_size=kv[a + "vocab_size"], seq_len=kv[a + "context_length"], n_layer=kv[a + "block_count"],
                      n_head=n_head, n_kv_head=n_kv, n_embd=kv[a + "embedding_length"],
                      ffn_hidden=kv[a + "feed_forward_length"], rope_theta=float(f'{kv[a + "rope.freq_base"]:.7g}'),
                      # GGUF stores floats as f32: 1e-5 comes back as 9.9999997e-06; 7 digits restore it
                      norm_eps=float(f'{kv[a + "attention.layer_norm_rms_epsilon"]:.7g}'), tie_embeddings=tied)
    if dataclasses.replace(cfg, ffn_hidden=0).hidden_dim == cfg.ffn_hidden:
        cfg = dataclasses.replace(cfg, ffn_hidden=0)  # tinylm's default width, as tinylm writes configs
    sd = {"wte.weight": raw["token_embd.weight"], "norm.weight": raw["output_norm.weight"]}
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            w = raw[f"blk.{i}.{theirs}"]
            if ours == "attn.wq.weight":
                w = interleaved_to_half(w, n_head)
            elif ours == "attn.wk.weight":
                w = interleaved_to_half(w, n_kv)
            sd[f"layers.{i}.{ours}"] = w.contiguous()
    if not tied:
        sd["lm_head.weight"] = raw["output.weight"]
    return cfg, sd, kv

"""Hugging Face interop: a tinylm checkpoint as a `LlamaForCausalLM` directory, and back.

The model is a Llama: the same RMSNorm, SwiGLU, grouped-query attention and the same rotary
layout (the two halves of each head), so export is a renaming of tensors, with no permutation.
The tokenizer is already a Hugging Face `tokenizers` file and travels with one change, with the
chat template of tinylm/chat.py as a Jinja `chat_template`, so `apply_chat_template` renders
exactly what tinylm trained on. The directory loads offline with `AutoModelForCausalLM` and
`AutoTokenizer`; writing it needs no `transformers`.

The change: tinylm encodes text as text, so a message or document containing `<|end|>` or
`<|endoftext|>` can never become a control token. A Hugging Face tokenizer matches its special
tokens' names anywhere in a string, and `apply_chat_template` renders the conversation to one
string before encoding it, so the names must be something text does not contain. The export
prefixes every special token's name with MARK, the Unicode noncharacter U+FDD0 (reserved for a
program's internal use, never interchanged), the chat template writes the marked names and
deletes MARK from message content, and the decoder deletes MARK, so decoded text reads
`<|end|>` as before. Plain `encode` and `apply_chat_template` then give tinylm's ids for any text
(text containing U+FDD0 itself aside); `tinylm import` removes the marks again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinylm.chat import jinja_template, stop_ids
from tinylm.config import ModelConfig, to_dict
from tinylm.util import atomic_write_text

# tinylm name -> Hugging Face Llama name ({i} = layer)
_LAYER_MAP = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
}


def to_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"model.embed_tokens.weight": sd["wte.weight"], "model.norm.weight": sd["norm.weight"]}
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            out[f"model.layers.{i}.{theirs}"] = sd[f"layers.{i}.{ours}"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"wte.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            out[f"layers.{i}.{ours}"] = sd[f"model.layers.{i}.{theirs}"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def hf_config(cfg: ModelConfig, bos_id: int, eos_ids: list[int], pad_id: int | None) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim, "max_position_embeddings": cfg.seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": None, "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32",
        "bos_token_id": bos_id, "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids, "pad_token_id": pad_id,
    }


MARK = "\ufdd0"


def marked_tokenizer_json(tok) -> str:
    """tokenizer.json for the export: special tokens named MARK + name, MARK removed on decoding."""
    j = json.loads(tok.hf.to_str())
    vocab = j["model"]["vocab"]
    for t in j["added_tokens"]:
        if t["special"] and not t["content"].startswith(MARK):
            name = t["content"]
            t["content"] = MARK + name
            if isinstance(vocab, dict) and vocab.get(name) == t["id"]:
                vocab[MARK + name] = vocab.pop(name)
            elif isinstance(vocab, list) and t["id"] < len(vocab) and vocab[t["id"]][0] == name:  # Unigram
                vocab[t["id"]][0] = MARK + name
    strip = {"type": "Replace", "pattern": {"String": MARK}, "content": ""}
    dec = j.get("decoder")
    j["decoder"] = strip if dec is None else {"type": "Sequence", "decoders": [dec, strip]}
    return json.dumps(j, ensure_ascii=False)


def unmarked_tokenizer_json(text: str) -> str:
    """The inverse of marked_tokenizer_json (a tokenizer without marks comes back unchanged)."""
    j = json.loads(text)
    if not any(t["content"].startswith(MARK) for t in j.get("added_tokens", [])):
        return text
    vocab = j["model"]["vocab"]
    for t in j["added_tokens"]:
        if t["content"].startswith(MARK):
            name = t["content"][len(MARK):]
            if isinstance(vocab, dict) and vocab.get(t["content"]) == t["id"]:
                vocab[name] = vocab.pop(t["content"])
            elif isinstance(vocab, list) and t["id"] < len(vocab) and vocab[t["id"]][0] == t["content"]:
                vocab[t["id"]][0] = name
            t["content"] = name
    dec = j.get("decoder") or {}
    strip = {"type": "Replace", "pattern": {"String": MARK}, "content": ""}
    if dec == strip:
        j["decoder"] = None
    elif dec.get("type") == "Sequence" and dec["decoders"] and dec["decoders"][-1] == strip:
        rest = dec["decoders"][:-1]
        j["decoder"] = rest[0] if len(rest) == 1 else {"type": "Sequence", "decoders": rest}
    return json.dumps(j, ensure_ascii=False)


def export_hf(model, tok, meta: dict, out_dir, scores: dict | None = None, checkpoint=None) -> Path:
    """Write `out_dir` loadable by AutoModelForCausalLM / AutoTokenizer.from_pretrained, with the model
    card of `checkpoint` (tinylm.report.model_card, the card the report writes too) as its README.md."""
    cfg = model.cfg
    if not cfg.is_llama:
        raise ValueError(f"only the Llama architecture exports (this model: pos_emb={cfg.pos_emb}, mlp={cfg.mlp}, "
                         f"norm={cfg.norm}, norm_position={cfg.norm_position})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chat_ok = tok.has_chat_tokens()
    eos_ids = list(stop_ids(tok)) if chat_ok else [tok.eot_id]  # the ids `tinylm chat` stops at

    def name(i):  # a special token's name in the export
        return MARK + tok.hf.id_to_token(i)

    bos = name(tok.eot_id)
    save_file(to_hf_state_dict(model.state_dict(), cfg), str(out / "model.safetensors"), metadata={"format": "pt"})
    atomic_write_text(out / "config.json", json.dumps(hf_config(cfg, tok.eot_id, eos_ids, tok.pad_id), indent=2) + "\n")
    atomic_write_text(out / "generation_config.json", json.dumps(
        {"bos_token_id": tok.eot_id, "eos_token_id": eos_ids, "pad_token_id": tok.pad_id,
         "max_length": cfg.seq_len, "do_sample": True, "temperature": 0.8, "top_k": 50}, indent=2) + "\n")
    atomic_write_text(out / "tokenizer.json", marked_tokenizer_json(tok))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.seq_len,
        "bos_token": bos, "eos_token": name(eos_ids[0]),
        "pad_token": name(tok.pad_id) if tok.pad_id is not None else None,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
    }
    if chat_ok:
        tok_cfg["chat_template"] = jinja_template(MARK)
    atomic_write_text(out / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")
    atomic_write_text(out / "special_tokens_map.json", json.dumps(
        {k: tok_cfg[k] for k in ("bos_token", "eos_token", "pad_token") if tok_cfg[k]}, indent=2) + "\n")
    atomic_write_text(out / "tinylm.json", json.dumps({"config": to_dict(cfg), "source_meta": {
        k: meta.get(k) for k in ("stage", "step", "tokens_seen", "tokenizer_sha256", "code_version")}}, indent=2) + "\n")
    from tinylm.report.model_card import card_for_checkpoint, card_for_meta

    card = (card_for_checkpoint(checkpoint, meta, scores, fmt="hf") if checkpoint is not None
            else card_for_meta(meta, scores, fmt="hf", name=out.name))
    atomic_write_text(out / "README.md", card)
    return out


def rope_theta_of(c: dict, where) -> float:
    """RoPE base of a Llama config in either layout: transformers 5 writes `rope_parameters`
    ({"rope_type": "default", "rope_theta": ...}), earlier versions a top-level `rope_theta` with
    `rope_scaling`. tinylm's model has plain RoPE only, so any scaling (linear, dynamic, yarn,
    llama3, ...) is refused rather than silently dropped."""
    params = c.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{where}/config.json: rope_parameters is not an object")
    if "full_attention" in params and isinstance(params["full_attention"], dict):  # per-layer-type layout
        params = params["full_attention"]
    for block in (params, c.get("rope_scaling") or {}):
        kind = block.get("rope_type", block.get("type", "default"))
        if kind != "default":
            raise ValueError(f"{where}/config.json: RoPE scaling {kind!r} ({json.dumps(block)}) cannot be represented "
                             "by tinylm's model (plain RoPE only); import refused")
    thetas = {float(v) for v in (params.get("rope_theta"), c.get("rope_theta")) if v is not None}
    if len(thetas) > 1:
        raise ValueError(f"{where}/config.json: rope_parameters.rope_theta and rope_theta disagree ({sorted(thetas)})")
    return thetas.pop() if thetas else 10000.0


def import_hf(hf_dir) -> tuple[ModelConfig, dict[str, torch.Tensor], Path | None]:
    """(tinylm config, tinylm state dict, tokenizer.json path or None) of a Llama HF directory."""
    d = Path(hf_dir)
    try:
        c = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{d}/config.json: {e}") from e
    if c.get("model_type") != "llama":
        raise ValueError(f"{d}: model_type {c.get('model_type')!r}; only Llama-architecture models can be imported")
    if c.get("attention_bias") or c.get("mlp_bias"):
        raise ValueError(f"{d}/config.json: attention or MLP biases are not supported by tinylm's model")
    rope_theta = rope_theta_of(c, d)
    n_head = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // n_head
    if head_dim * n_head != c["hidden_size"]:
        raise ValueError(f"{d}: head_dim {head_dim} x {n_head} heads != hidden_size {c['hidden_size']}")
    cfg = ModelConfig(vocab_size=c["vocab_size"], seq_len=c["max_position_embeddings"], n_layer=c["num_hidden_layers"],
                      n_head=n_head, n_kv_head=c.get("num_key_value_heads", n_head), n_embd=c["hidden_size"],
                      ffn_hidden=c["intermediate_size"], rope_theta=rope_theta,
                      norm_eps=c.get("rms_norm_eps", 1e-6), tie_embeddings=c.get("tie_word_embeddings", False))
    if dataclasses.replace(cfg, ffn_hidden=0).hidden_dim == cfg.ffn_hidden:
        cfg = dataclasses.replace(cfg, ffn_hidden=0)  # tinylm's default size: keep the config as tinylm writes it
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{d}: no .safetensors weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    sd = {k: v.float() for k, v in sd.items()}
    if cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)
    tok = d / "tokenizer.json"
    return cfg, from_hf_state_dict(sd, cfg), tok if tok.exists() else None

"""llama2.c checkpoints and tokenizers (Karpathy's llama2.c `run.c` family).

Checkpoint, "legacy" version-0 layout: seven little-endian int32 (dim, hidden_dim, n_layers,
n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an untied classifier),
then float32 arrays: token embedding, attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3,
final norm, two RoPE tables (seq_len x head_size/2, unused here), and the classifier if untied.

RoPE: llama2.c rotates interleaved pairs (x0, x1), (x2, x3), ...; tinylm (like Hugging Face
Llama) rotates the two halves of each head. The rows of wq and wk are permuted on the way in and
out, so the same model computes the same function in both layouts.

Tokenizer (`tok512.bin`, `tokenizer.bin`): int32 max_token_length, then per token a float32
score, an int32 length and the piece's bytes. These are SentencePiece BPE vocabularies with byte
fallback (<0x00>..<0xFF> at ids 3..258, <s> = 1, </s> = 2, spaces kept as " "); `hf_tokenizer()`
rebuilds an equivalent Hugging Face `tokenizers` BPE (merges ranked by score, as
transformers' SentencePiece converter does), so the rest of tinylm needs no second tokenizer.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from tinylm.config import ModelConfig

_HEADER = struct.Struct("<7i")


def _interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Permute the rows of wq/wk from llama2.c's interleaved RoPE pairs to the half layout."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def _half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def read_checkpoint(path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(model config, tinylm state dict) of a legacy llama2.c checkpoint."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < _HEADER.size:
        raise ValueError(f"{path}: too short for a llama2.c header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = _HEADER.unpack_from(raw)
    if min(dim, hidden, n_layers, n_heads, n_kv, seq_len) <= 0 or dim % n_heads:
        raise ValueError(f"{path}: not a legacy llama2.c checkpoint (header {dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len})")
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = n_kv * hd
    data = np.frombuffer(raw, dtype="<f4", offset=_HEADER.size)
    sizes = [("wte", vocab * dim), ("attn_norm", n_layers * dim), ("wq", n_layers * dim * dim),
             ("wk", n_layers * kv_dim * dim), ("wv", n_layers * kv_dim * dim), ("wo", n_layers * dim * dim),
             ("ffn_norm", n_layers * dim), ("w1", n_layers * hidden * dim), ("w2", n_layers * dim * hidden),
             ("w3", n_layers * hidden * dim), ("norm", dim), ("rope", seq_len * hd)]
    if not shared:
        sizes.append(("wcls", vocab * dim))
    expected = sum(n for _, n in sizes)
    if data.size != expected:
        raise ValueError(f"{path}: {data.size} floats after the header, the header implies {expected}")
    arrays, off = {}, 0
    for name, n in sizes:
        arrays[name] = torch.from_numpy(data[off : off + n].copy())
        off += n
    cfg = ModelConfig(vocab_size=vocab, seq_len=seq_len, n_layer=n_layers, n_head=n_heads, n_kv_head=n_kv,
                      n_embd=dim, ffn_hidden=hidden, tie_embeddings=shared)
    L = n_layers
    sd = {"wte.weight": arrays["wte"].view(vocab, dim), "norm.weight": arrays["norm"]}
    per = {k: arrays[k].view(L, -1) for k in ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}
    for i in range(L):
        p = f"layers.{i}."
        sd[p + "attn_norm.weight"] = per["attn_norm"][i]
        sd[p + "ffn_norm.weight"] = per["ffn_norm"][i]
        sd[p + "attn.wq.weight"] = _interleaved_to_half(per["wq"][i].view(dim, dim), n_heads)
        sd[p + "attn.wk.weight"] = _interleaved_to_half(per["wk"][i].view(kv_dim, dim), n_kv)
        sd[p + "attn.wv.weight"] = per["wv"][i].view(kv_dim, dim)
        sd[p + "attn.wo.weight"] = per["wo"][i].view(dim, dim)
        sd[p + "ffn.w1.weight"] = per["w1"][i].view(hidden, dim)
        sd[p + "ffn.w2.weight"] = per["w2"][i].view(dim, hidden)
        sd[p + "ffn.w3.weight"] = per["w3"][i].view(hidden, dim)
    if not shared:
        sd["lm_head.weight"] = arrays["wcls"].view(vocab, dim)
    return cfg, {k: v.contiguous() for k, v in sd.items()}


def write_checkpoint(model, path) -> None:
    """Write a tinylm model as a legacy llama2.c checkpoint (float32)."""
    cfg = model.cfg
    if not cfg.is_llama:
        raise ValueError(f"only the Llama architecture exports to llama2.c (this model: pos_emb={cfg.pos_emb}, "
                         f"mlp={cfg.mlp}, norm={cfg.norm}, norm_position={cfg.norm_position})")
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    L, dim, hd = cfg.n_layer, cfg.n_embd, cfg.head_dim
    vocab = cfg.vocab_size if cfg.tie_embeddings else -cfg.vocab_size
    parts = [sd["wte.weight"]]

    def stack(name, fn=lambda w: w):
        return [fn(sd[f"layers.{i}.{name}"]) for i in range(L)]

    parts += stack("attn_norm.weight")
    parts += stack("attn.wq.weight", lambda w: _half_to_interleaved(w, cfg.n_head))
    parts += stack("attn.wk.weight", lambda w: _half_to_interleaved(w, cfg.n_kv_head))
    parts += stack("attn.wv.weight") + stack("attn.wo.weight") + stack("ffn_norm.weight")
    parts += stack("ffn.w1.weight") + stack("ffn.w2.weight") + stack("ffn.w3.weight")
    parts.append(sd["norm.weight"])
    # RoPE tables as llama2.c's export writes them (cos, sin of position * frequency)
    freqs = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd))
    angles = torch.outer(torch.arange(cfg.seq_len).float(), freqs)
    parts += [angles.cos(), angles.sin()]
    if not cfg.tie_embeddings:
        parts.append(sd["lm_head.weight"])
    with open(path, "wb") as f:
        f.write(_HEADER.pack(dim, cfg.hidden_dim, L, cfg.n_head, cfg.n_kv_head, vocab, cfg.seq_len))
        for t in parts:
            f.write(t.contiguous().numpy().astype("<f4").tobytes())


# ---------------------------------------------------------------------------------------------
# Tokenizer


def read_vocab(path) -> tuple[list[bytes], list[float], int]:
    """(pieces, scores, max_token_length) of a llama2.c tokenizer .bin."""
    raw = Path(path).read_bytes()
    (max_len,) = struct.unpack_from("<i", raw, 0)
    off, pieces, scores = 4, [], []
    while off < len(raw):
        if off + 8 > len(raw):
            raise ValueError(f"{path}: truncated entry {len(pieces)}")
        score, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off : off + n])
        scores.append(score)
        off += n
    return pieces, scores, max_len


def _varint(buf: bytes, off: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if off >= len(buf):
            raise ValueError("truncated varint")
        b = buf[off]
        off += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, off


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message: just enough to read SentencePiece."""
    off = 0
    while off < len(buf):
        key, off = _varint(buf, off)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, off = _varint(buf, off)
        elif wire == 1:
            value, off = buf[off : off + 8], off + 8
        elif wire == 2:
            n, off = _varint(buf, off)
            value, off = buf[off : off + n], off + n
        elif wire == 5:
            value, off = buf[off : off + 4], off + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def read_sentencepiece_model(path) -> tuple[list[bytes], list[float]]:
    """(pieces, scores) of a SentencePiece `.model` (ModelProto field 1: pieces with piece=1,
    score=2), written the way llama2.c's tokenizer.bin stores them ("\u2581" as a space)."""
    try:
        pieces, scores = [], []
        for field, wire, value in _proto_fields(Path(path).read_bytes()):
            if field == 1 and wire == 2:
                piece, score = b"", 0.0
                for f, w, v in _proto_fields(value):
                    if f == 1 and w == 2:
                        piece = v.decode("utf-8").replace("\u2581", " ").encode("utf-8")
                    elif f == 2 and w == 5:
                        (score,) = struct.unpack("<f", v)
                pieces.append(piece)
                scores.append(score)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{path}: not a SentencePiece model ({e})") from e
    if not pieces:
        raise ValueError(f"{path}: no pieces found; not a SentencePiece model")
    return pieces, scores


def write_vocab(path, pieces: list[bytes], scores: list[float]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for p, s in zip(pieces, scores):
            f.write(struct.pack("<fi", s, len(p)) + p)


def hf_tokenizer(path):
    """A Hugging Face `tokenizers.Tokenizer` equivalent to a llama2.c SentencePiece vocabulary,
    from llama2.c's tokenizer `.bin` or the SentencePiece `.model` it was exported from."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    if str(path).endswith(".model"):
        pieces, scores = read_sentencepiece_model(path)
    else:
        pieces, scores, _ = read_vocab(path)
    names = []
    for i, p in enumerate(pieces):
        if i == 1:
            names.append("<s>")
        elif i == 2:
            names.append("</s>")
        else:
            names.append(p.decode("utf-8", errors="replace").replace(" ", "▁"))
    vocab = {n: i for i, n in enumerate(names)}
    # merges: every split of a piece into two pieces of the vocabulary, most valuable merge first
    merges = []
    for piece, i in vocab.items():
        if i < 3 or piece.startswith("<0x"):
            continue
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                merges.append((-scores[i], vocab[a], vocab[b], a, b))
    merges.sort()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok


def export(model, tok, model_path, tokenizer_path) -> None:
    """Write a tinylm model and its tokenizer for llama2.c's run.c.

    run.c starts generation from token 1 and stops when token 1 comes back, so the document-start
    token is moved to id 1 (ids 0 and 1 swap places in the embedding and the vocabulary). run.c's
    prompt encoder assumes SentencePiece conventions (byte tokens at ids 3..258), so give it no
    prompt, or encode prompts with tinylm; decoding is exact."""
    import copy

    n = model.cfg.vocab_size
    perm = list(range(n))  # perm[new_id] = old_id: swap id 1 and the start token
    perm[1], perm[tok.eot_id] = perm[tok.eot_id], perm[1]
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.wte.weight.copy_(model.wte.weight[perm])
        if not model.cfg.tie_embeddings:
            m.lm_head.weight.copy_(model.lm_head.weight[perm])
    write_checkpoint(m, model_path)
    pieces = tok.piece_bytes()
    write_vocab(tokenizer_path, [pieces[i] for i in perm], [-float(i) for i in range(n)])

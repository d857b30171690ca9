"""Byte-level BPE tokenizer (Sennrich et al. 2016; GPT-2's byte-level variant), trained with
Hugging Face `tokenizers` and saved as one `tokenizer.json`.

Byte-level means every string round-trips exactly: any UTF-8 text is first mapped to bytes, so no
character is ever unknown. The special tokens are reserved up front so that later stages (chat
template, SFT, export) find them in every tokenizer tinylm trains:

    <|endoftext|>  document separator; also starts every document, so sampling from it begins a story
    <|pad|>        padding for batched inference and SFT
    <|system|> <|user|> <|assistant|> <|end|>   chat roles and end of turn (tinylm/chat template)

Run: tinylm tokenizer --corpus gutenberg-children --vocab_size 4096
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from tinylm.util import atomic_write_text, sha256_file

EOT = "<|endoftext|>"
PAD = "<|pad|>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (EOT, PAD, *CHAT_TOKENS)
DOC_START_TOKENS = (EOT, "<s>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by the ByteLevel pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    """Thin wrapper around a `tokenizers.Tokenizer` with the ids tinylm needs."""

    def __init__(self, hf: HFTokenizer, path: str | None = None, doc_start: str | None = None):
        self.hf = hf
        # Text is always text: a story that contains the string "<|user|>" or "<|endoftext|>" is
        # encoded byte by byte, never as a control token. Special tokens enter sequences by id only
        # (document separators in `prepare`, roles in the chat template), so data cannot inject them.
        self.hf.encode_special_tokens = True
        self.path = path
        # the token that opens a document: tinylm's <|endoftext|>, or <s> in SentencePiece
        # vocabularies (llama2.c and Llama models imported into tinylm)
        # (`doc_start` names it for tokenizers from elsewhere, e.g. a Hugging Face model's BOS)
        candidates = (doc_start,) if doc_start else DOC_START_TOKENS
        found = [i for i in (hf.token_to_id(t) for t in candidates) if i is not None]
        if not found:
            raise ValueError(f"tokenizer {path or ''} has no {EOT} (or <s>) token to start documents with")
        self.eot_id = found[0]
        self.pad_id = hf.token_to_id(PAD)  # None for tokenizers from elsewhere

    @classmethod
    def load(cls, path) -> "Tokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}; train one with `tinylm tokenizer`")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from e
        return cls(hf, str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @cached_property
    def sha256(self) -> str:
        """Hash of the saved tokenizer.json; checkpoints record it so a mismatch is caught."""
        if self.path is None:
            raise ValueError("tokenizer was not loaded from a file")
        return sha256_file(self.path)

    def has_chat_tokens(self) -> bool:
        return all(self.hf.token_to_id(t) is not None for t in CHAT_TOKENS)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Multi-threaded (Rust, one thread per core) encoding of many texts."""
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    @property
    def byte_level(self) -> bool:
        return "ByteLevel" in str(self.hf.decoder)

    def piece_bytes(self) -> list[bytes]:
        """What each token id is written as: its bytes for byte-level BPE, its piece text otherwise
        (SentencePiece "\u2581the", "<0x0A>", special tokens' own text), as llama2.c stores them."""
        inv = {c: b for b, c in _bytes_to_unicode().items()}
        out = [b""] * self.vocab_size
        for tok, i in self.hf.get_vocab().items():
            out[i] = bytes(inv[c] for c in tok) if self.byte_level and all(c in inv for c in tok) else tok.encode("utf-8")
        return out

    @cached_property
    def token_bytes(self) -> list[int]:
        """UTF-8 byte length of every token id; 0 for special tokens (they stand for no text).
        Bits-per-byte divides by these, which makes it comparable across tokenizers."""
        special_ids = {i for i, t in self.hf.get_added_tokens_decoder().items() if t.content}
        out = []
        for i, piece in enumerate(self.piece_bytes()):
            if i in special_ids:
                out.append(0)
            elif not self.byte_level and len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
                out.append(1)  # SentencePiece byte fallback
            elif not self.byte_level:
                out.append(len(piece.replace("\u2581".encode(), b" ")))  # "\u2581" stands for one space
            else:
                out.append(len(piece))
        return out


def train_tokenizer(texts, vocab_size: int, out_path) -> Tokenizer:
    """Train byte-level BPE on an iterator of strings and save it atomically as tokenizer.json."""
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte tokens plus {len(SPECIAL_TOKENS)} specials")
    hf = HFTokenizer(models.BPE())
    # GPT-2's regex splits words, numbers and punctuation before merging; no prefix space is added
    # so that encode(a + b) == encode(a) + encode(b) at document boundaries.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    out_path = Path(out_path)
    atomic_write_text(out_path, hf.to_str(pretty=False))
    return Tokenizer.load(out_path)


def bytes_per_token(tok: Tokenizer, texts) -> dict:
    """Compression on held-out text: UTF-8 bytes / tokens (higher = fewer tokens per story)."""
    n_bytes = n_tokens = 0
    for t in texts:
        n_bytes += len(t.encode("utf-8"))
        n_tokens += len(tok.encode(t))
    return {"bytes": n_bytes, "tokens": n_tokens, "bytes_per_token": n_bytes / max(n_tokens, 1)}


def save_meta(path, meta: dict) -> None:
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")

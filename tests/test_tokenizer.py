"""Byte-level BPE tokenizer: exact round trips, special tokens, byte accounting, loading errors."""

from __future__ import annotations

import hashlib
import re

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from conftest import make_stories
from tinylm.tokenizer import CHAT_TOKENS, EOT, PAD, SPECIAL_TOKENS, Tokenizer, bytes_per_token, train_tokenizer

ROUND_TRIP_TEXTS = {
    "ascii": "Once upon a time, Lily found a ball in the park. She said: \"Hi!\" 123 + 4 = 127.",
    "accented": "Café, naïve façade, Ångström, Müller, señor, œuvre.",
    "emoji": "Tom smiled 😀👍🏽 and the 🐈‍⬛ cat purred 🎉.",
    "cjk": "中文字符，日本語のテキスト、한국어 문장.",
    "whitespace": "line one\nline two\n\n\ttabbed\t\tcell\r\nwindows line   three spaces \n",
    "literal_specials": "The text says <|endoftext|> and then <|user|> hello<|assistant|>!",
    "only_special": "<|endoftext|>",
    "empty": "",
}


@pytest.mark.parametrize("text", list(ROUND_TRIP_TEXTS.values()), ids=list(ROUND_TRIP_TEXTS))
def test_decode_of_encode_returns_the_original_text(tokenizer, text):
    ids = tokenizer.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == text


def test_encode_batch_matches_encode(tokenizer):
    texts = list(ROUND_TRIP_TEXTS.values())
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]


def test_unseen_characters_fall_back_to_byte_tokens(tokenizer):
    # the training corpus is plain English; a CJK character is several byte tokens, never <unk>
    ids = tokenizer.encode("字")
    assert len(ids) == len("字".encode("utf-8")) == 3
    assert tokenizer.decode(ids) == "字"


def test_every_special_token_is_a_single_reserved_token(tokenizer):
    ids = []
    for tok in SPECIAL_TOKENS:
        i = tokenizer.hf.token_to_id(tok)  # special tokens enter sequences by id, never from text
        assert i is not None, tok
        assert tokenizer.decode([i]) == tok
        ids.append(i)
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert tokenizer.eot_id == tokenizer.hf.token_to_id(EOT)
    assert tokenizer.pad_id == tokenizer.hf.token_to_id(PAD)
    assert tokenizer.eot_id != tokenizer.pad_id
    assert tokenizer.has_chat_tokens()


def test_tokenizer_without_chat_tokens_reports_it(tmp_path):
    hf = HFTokenizer(models.BPE())
    hf.add_special_tokens([EOT])
    tok = Tokenizer(hf)
    assert tok.eot_id == hf.token_to_id(EOT)
    assert tok.pad_id is None
    assert not tok.has_chat_tokens()
    hf.add_special_tokens(list(CHAT_TOKENS))
    assert tok.has_chat_tokens()


def test_tokenizer_without_endoftext_is_rejected():
    hf = HFTokenizer(models.BPE())
    hf.add_special_tokens([PAD])
    with pytest.raises(ValueError, match=re.escape(EOT)):
        Tokenizer(hf)


@pytest.mark.parametrize("key", ["ascii", "accented", "emoji", "cjk", "whitespace"])
def test_token_bytes_of_encoding_sum_to_utf8_length(tokenizer, key):
    text = ROUND_TRIP_TEXTS[key]
    ids = tokenizer.encode(text)
    assert sum(tokenizer.token_bytes[i] for i in ids) == len(text.encode("utf-8"))


def test_token_bytes_covers_vocab_and_is_zero_only_for_special_tokens(tokenizer):
    tb = tokenizer.token_bytes
    assert len(tb) == tokenizer.vocab_size
    special_ids = {tokenizer.hf.token_to_id(t) for t in SPECIAL_TOKENS}
    for i in special_ids:
        assert tb[i] == 0
    assert all(tb[i] >= 1 for i in range(tokenizer.vocab_size) if i not in special_ids)
    # the 256 single-byte tokens are all present, so at least 256 tokens have exactly one byte
    assert sum(1 for b in tb if b == 1) >= 256
    # merged tokens are longer than one byte (training on stories with vocab 320 makes merges)
    assert max(tb) > 1


def test_token_bytes_agrees_with_decoding_each_token(tokenizer):
    text = ROUND_TRIP_TEXTS["ascii"] + ROUND_TRIP_TEXTS["accented"]
    for i in tokenizer.encode(text):
        piece = tokenizer.hf.id_to_token(i)
        assert tokenizer.token_bytes[i] == len(piece)  # byte-level pieces: one mapped character per byte
    merged = [i for i in tokenizer.encode("Once upon a time") if tokenizer.token_bytes[i] > 1]
    assert merged, "common words should be merged tokens"
    for i in merged:
        assert tokenizer.token_bytes[i] == len(tokenizer.decode([i]).encode("utf-8"))


@pytest.mark.parametrize("vocab_size", [0, 256, 256 + len(SPECIAL_TOKENS)])
def test_vocab_size_too_small_for_bytes_and_specials_raises(tmp_path, vocab_size):
    out = tmp_path / "tokenizer.json"
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(make_stories(10), vocab_size, out)
    assert not out.exists()


def test_smallest_allowed_vocab_trains(tmp_path):
    tok = train_tokenizer(make_stories(20), 256 + len(SPECIAL_TOKENS) + 1, tmp_path / "tokenizer.json")
    assert tok.vocab_size == 256 + len(SPECIAL_TOKENS) + 1
    assert tok.decode(tok.encode("Café 😀")) == "Café 😀"


def test_trained_tokenizer_has_requested_vocab_size_and_reloads_identically(tokenizer, tmp_path):
    assert tokenizer.vocab_size == 320
    again = Tokenizer.load(tokenizer.path)
    text = ROUND_TRIP_TEXTS["emoji"] + ROUND_TRIP_TEXTS["ascii"]
    assert again.encode(text) == tokenizer.encode(text)
    assert again.sha256 == tokenizer.sha256


def test_load_accepts_a_directory_holding_tokenizer_json(tokenizer, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes(open(tokenizer.path, "rb").read())
    tok = Tokenizer.load(tmp_path)
    assert tok.path == str(tmp_path / "tokenizer.json")
    assert tok.encode("Lily and Tom") == tokenizer.encode("Lily and Tom")


def test_load_missing_path_raises_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        Tokenizer.load(missing)


def test_load_directory_without_tokenizer_json_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "tokenizer.json"))):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("content", ["{not json", "", '{"version": "1.0"}'], ids=["bad_json", "empty", "wrong_schema"])
def test_load_corrupt_file_raises_value_error_naming_it(tmp_path, content):
    bad = tmp_path / "broken-tokenizer.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        Tokenizer.load(bad)


def test_bytes_per_token_reports_consistent_counts(tokenizer):
    texts = make_stories(5, seed=9) + [ROUND_TRIP_TEXTS["cjk"]]
    r = bytes_per_token(tokenizer, texts)
    assert r["bytes"] == sum(len(t.encode("utf-8")) for t in texts)
    assert r["tokens"] == sum(len(tokenizer.encode(t)) for t in texts)
    assert r["bytes_per_token"] == pytest.approx(r["bytes"] / r["tokens"])
    assert r["bytes_per_token"] > 1.0  # BPE trained on these stories compresses them


def test_bytes_per_token_of_no_text_does_not_divide_by_zero(tokenizer):
    assert bytes_per_token(tokenizer, []) == {"bytes": 0, "tokens": 0, "bytes_per_token": 0.0}


def test_sha256_is_the_file_hash_and_changes_with_a_different_tokenizer(tokenizer, tmp_path):
    with open(tokenizer.path, "rb") as f:
        assert tokenizer.sha256 == hashlib.sha256(f.read()).hexdigest()
    other = train_tokenizer(make_stories(50, seed=5), 300, tmp_path / "other.json")
    assert other.sha256 != tokenizer.sha256
    same = train_tokenizer(make_stories(50, seed=5), 300, tmp_path / "same.json")
    assert same.sha256 == other.sha256  # training is deterministic


def test_sha256_requires_a_file():
    hf = HFTokenizer(models.BPE())
    hf.add_special_tokens([EOT])
    with pytest.raises(ValueError):
        Tokenizer(hf).sha256


def test_special_token_strings_in_text_are_encoded_as_text_not_control_tokens(tokenizer):
    text = "a <|endoftext|> b <|user|>c"
    ids = tokenizer.encode(text)
    special_ids = {tokenizer.hf.token_to_id(t) for t in SPECIAL_TOKENS}
    assert not special_ids & set(ids)
    assert sum(tokenizer.token_bytes[i] for i in ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text

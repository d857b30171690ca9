"""Token shards: exact round trips, header validation, atomic writes, and `prepare()`."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest

from conftest import make_stories, write_corpus
from tinylm.data.shards import (
    HEADER_BYTES,
    MAGIC,
    ShardWriter,
    dtype_for_vocab,
    load_prepared,
    open_shard,
    prepare,
    read_header,
    write_shard,
)
from tinylm.data.sources import DataError, resolve


def _dir_names(d):
    return sorted(p.name for p in d.iterdir())


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize(
    "vocab_size,dtype",
    [(320, np.uint16), (65536, np.uint16), (65537, np.uint32), (70000, np.uint32)],
)
def test_round_trip_preserves_tokens_with_smallest_fitting_dtype(tmp_path, vocab_size, dtype):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, size=1000)
    tokens[:2] = [0, vocab_size - 1]  # both ends of the range survive
    path = write_shard(tmp_path / "s.bin", tokens, vocab_size)
    h = read_header(path)
    assert h == {"version": 1, "dtype": dtype, "count": 1000, "vocab_size": vocab_size}
    assert path.stat().st_size == HEADER_BYTES + 1000 * np.dtype(dtype).itemsize
    got = open_shard(path)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, dtype=np.int64), tokens)
    assert not got.flags.writeable


def test_dtype_for_vocab_boundaries():
    assert dtype_for_vocab(2**16) is np.uint16
    assert dtype_for_vocab(2**16 + 1) is np.uint32
    assert dtype_for_vocab(2**32) is np.uint32
    with pytest.raises(ValueError):
        dtype_for_vocab(2**32 + 1)


def test_writer_appends_multiple_writes_in_order(tmp_path):
    with ShardWriter(tmp_path / "s.bin", 100) as w:
        w.write([1, 2, 3])
        w.write(np.array([], dtype=np.int64))
        w.write(np.array([4, 5], dtype=np.int32))
    assert w.count == 5
    np.testing.assert_array_equal(open_shard(tmp_path / "s.bin"), [1, 2, 3, 4, 5])


def test_empty_shard_round_trips(tmp_path):
    path = write_shard(tmp_path / "empty.bin", [], 320)
    assert read_header(path)["count"] == 0
    assert path.stat().st_size == HEADER_BYTES
    assert len(open_shard(path)) == 0


def test_header_layout_is_as_documented(tmp_path):
    path = write_shard(tmp_path / "s.bin", [7, 8, 9], 70000)
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    assert struct.unpack_from("<IIQI", raw, 8) == (1, 4, 3, 70000)
    assert raw[28:64] == b"\0" * 36
    assert np.frombuffer(raw[64:], dtype="<u4").tolist() == [7, 8, 9]


# ---------------------------------------------------------------------------------------------
# header validation


@pytest.fixture
def good_shard(tmp_path):
    return write_shard(tmp_path / "train-000.bin", np.arange(100), 320)


def _assert_rejected(path, pattern):
    with pytest.raises(DataError, match=pattern) as e:
        read_header(path)
    assert str(path) in str(e.value)
    with pytest.raises(DataError):
        open_shard(path)


def test_shard_with_wrong_magic_is_rejected(good_shard):
    raw = bytearray(good_shard.read_bytes())
    raw[:8] = b"NOTASHRD"
    good_shard.write_bytes(bytes(raw))
    _assert_rejected(good_shard, "not a tinylm token shard")


def test_shard_with_wrong_version_is_rejected(good_shard):
    raw = bytearray(good_shard.read_bytes())
    struct.pack_into("<I", raw, 8, 2)
    good_shard.write_bytes(bytes(raw))
    _assert_rejected(good_shard, "version 2")


def test_shard_with_unsupported_token_size_is_rejected(good_shard):
    raw = bytearray(good_shard.read_bytes())
    struct.pack_into("<I", raw, 12, 3)
    good_shard.write_bytes(bytes(raw))
    _assert_rejected(good_shard, "token size")


def test_truncated_shard_is_rejected(good_shard):
    good_shard.write_bytes(good_shard.read_bytes()[:-3])
    _assert_rejected(good_shard, "truncated")


def test_shard_with_trailing_bytes_is_rejected(good_shard):
    good_shard.write_bytes(good_shard.read_bytes() + b"\0\0")
    _assert_rejected(good_shard, "trailing bytes")


@pytest.mark.parametrize("n", [0, 10, HEADER_BYTES - 1])
def test_file_shorter_than_header_is_rejected(tmp_path, n):
    path = tmp_path / "short.bin"
    path.write_bytes(MAGIC[:n] + b"\0" * max(0, n - len(MAGIC)))
    _assert_rejected(path, "truncated header")


def test_missing_shard_is_rejected(tmp_path):
    _assert_rejected(tmp_path / "absent.bin", "not found")


# ---------------------------------------------------------------------------------------------
# writer errors and atomicity


def test_forcing_uint16_for_a_70000_vocab_raises(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        ShardWriter(tmp_path / "s.bin", 70000, dtype=np.uint16)
    assert _dir_names(tmp_path) == []


@pytest.mark.parametrize("bad", [320, 1000, -1])
def test_writing_token_outside_vocab_raises_and_leaves_nothing(tmp_path, bad):
    with pytest.raises(ValueError, match="out of range"):
        write_shard(tmp_path / "s.bin", [1, 2, bad, 3], 320)
    assert _dir_names(tmp_path) == []


def test_exception_inside_writer_leaves_no_final_or_temp_file(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(tmp_path / "s.bin", 320) as w:
            w.write(np.arange(50))
            assert len(_dir_names(tmp_path)) == 1  # the temp file exists while writing
            assert not (tmp_path / "s.bin").exists()
            raise RuntimeError("boom")
    assert _dir_names(tmp_path) == []


def test_shard_appears_only_on_close(tmp_path):
    w = ShardWriter(tmp_path / "s.bin", 320)
    w.write([5, 6])
    assert not (tmp_path / "s.bin").exists()
    w.close()
    assert _dir_names(tmp_path) == ["s.bin"]
    np.testing.assert_array_equal(open_shard(tmp_path / "s.bin"), [5, 6])


def test_failed_rewrite_keeps_the_previous_shard(tmp_path):
    path = write_shard(tmp_path / "s.bin", [1, 2, 3], 320)
    with pytest.raises(ValueError):
        write_shard(path, [1, 999], 320)
    np.testing.assert_array_equal(open_shard(path), [1, 2, 3])
    assert _dir_names(tmp_path) == ["s.bin"]


# ---------------------------------------------------------------------------------------------
# prepare


@pytest.fixture
def small_corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    train_docs, valid_docs = make_stories(30, seed=11), make_stories(5, seed=12)
    write_corpus(d / "train.txt", train_docs)
    write_corpus(d / "valid.txt", valid_docs)
    return resolve(str(d / "train.txt"), valid=str(d / "valid.txt")), train_docs, valid_docs


def _concat(paths):
    return np.concatenate([np.asarray(open_shard(p), dtype=np.int64) for p in paths])


def _expected_stream(tok, docs):
    out = []
    for d in docs:
        out += [tok.eot_id] + tok.encode(d)
    return np.array(out, dtype=np.int64)


def test_prepare_writes_shards_tokenizer_and_metadata(small_corpus, tokenizer, tmp_path):
    source, train_docs, valid_docs = small_corpus
    out = tmp_path / "prepared"
    meta = prepare(source, tokenizer, out, config={"note": "test"})

    assert _dir_names(out) == ["prepare.json", "tokenizer.json", "train-000.bin", "val.bin"]
    assert (out / "tokenizer.json").read_bytes() == open(tokenizer.path, "rb").read()
    on_disk = json.loads((out / "prepare.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert on_disk["tokenizer_sha256"] == tokenizer.sha256
    assert on_disk["vocab_size"] == tokenizer.vocab_size == 320
    assert on_disk["dtype"] == "uint16"
    assert on_disk["config"] == {"note": "test"}

    train, val, loaded_meta = load_prepared(out)
    assert train == [out / "train-000.bin"] and val == out / "val.bin"
    assert loaded_meta == on_disk
    assert on_disk["train"]["tokens"] == sum(read_header(p)["count"] for p in train)
    assert on_disk["val"]["tokens"] == read_header(val)["count"]
    assert on_disk["train"]["documents"] == len(train_docs)
    assert on_disk["val"]["documents"] == len(valid_docs)
    assert on_disk["train"]["bytes"] == sum(len(d.encode("utf-8")) for d in train_docs)


def test_prepare_opens_every_document_with_endoftext(small_corpus, tokenizer, tmp_path):
    source, train_docs, valid_docs = small_corpus
    out = tmp_path / "prepared"
    prepare(source, tokenizer, out)
    train = np.asarray(open_shard(out / "train-000.bin"), dtype=np.int64)
    val = np.asarray(open_shard(out / "val.bin"), dtype=np.int64)
    assert train[0] == tokenizer.eot_id and val[0] == tokenizer.eot_id
    assert int((train == tokenizer.eot_id).sum()) == len(train_docs)
    assert int((val == tokenizer.eot_id).sum()) == len(valid_docs)
    np.testing.assert_array_equal(train, _expected_stream(tokenizer, train_docs))
    np.testing.assert_array_equal(val, _expected_stream(tokenizer, valid_docs))
    assert tokenizer.decode(train.tolist()) == "".join("<|endoftext|>" + d for d in train_docs)


def test_small_shard_tokens_split_train_into_shards_that_concatenate_to_one(small_corpus, tokenizer, tmp_path):
    source, train_docs, _ = small_corpus
    single = tmp_path / "single"
    prepare(source, tokenizer, single)
    multi = tmp_path / "multi"
    meta = prepare(source, tokenizer, multi, shard_tokens=200, batch_docs=4)

    train, val, _ = load_prepared(multi)
    assert len(train) >= 3
    assert [p.name for p in train] == [f"train-{i:03d}.bin" for i in range(len(train))]
    for p in train[:-1]:
        assert read_header(p)["count"] >= 200
    for p in train:  # shards end at document boundaries
        assert open_shard(p)[0] == tokenizer.eot_id
    np.testing.assert_array_equal(_concat(train), _concat([single / "train-000.bin"]))
    assert meta["train"]["tokens"] == sum(read_header(p)["count"] for p in train)
    assert meta["train"]["files"] == [p.name for p in train]
    np.testing.assert_array_equal(_concat([val]), _concat([single / "val.bin"]))


def test_rerunning_prepare_removes_stale_shards(small_corpus, tokenizer, tmp_path):
    source, train_docs, _ = small_corpus
    out = tmp_path / "prepared"
    prepare(source, tokenizer, out, shard_tokens=200)
    assert len(list(out.glob("train-*.bin"))) >= 3

    prepare(source, tokenizer, out)
    assert sorted(p.name for p in out.glob("*.bin")) == ["train-000.bin", "val.bin"]

    train_only = resolve(str(source.train_files[0]))
    meta = prepare(train_only, tokenizer, out)
    assert _dir_names(out) == ["prepare.json", "tokenizer.json", "train-000.bin"]
    assert "val" not in meta
    train, val, _ = load_prepared(out)
    assert val is None
    assert int((_concat(train) == tokenizer.eot_id).sum()) == len(train_docs)


def test_prepare_max_train_bytes_is_honoured_within_a_batch_and_a_document(small_corpus, tokenizer, tmp_path):
    """The budget is counted per document, not per batch of 64, and a document larger than what is
    left (a whole book) is cut at a character boundary."""
    source, train_docs, _ = small_corpus
    sizes = [len(d.encode("utf-8")) for d in train_docs]
    budget = sizes[0] + sizes[1] + 10
    meta = prepare(source, tokenizer, tmp_path / "p", max_train_bytes=budget, batch_docs=64)
    assert meta["train"]["documents"] == 3 and meta["train"]["bytes"] == budget
    train, _, _ = load_prepared(tmp_path / "p")
    cut = train_docs[2].encode("utf-8")[:10].decode("utf-8")
    np.testing.assert_array_equal(_concat(train), _expected_stream(tokenizer, [*train_docs[:2], cut]))


def test_prepare_of_an_empty_train_split_raises_and_writes_no_metadata(tmp_path, tokenizer):
    p = tmp_path / "train.txt"
    p.write_text("<|endoftext|>\n\n<|endoftext|>\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="empty"):
        prepare(resolve(str(p)), tokenizer, out)
    assert not (out / "prepare.json").exists()
    assert not any(out.glob("*.bin")) and not any(out.glob(".*.tmp"))


def test_load_prepared_without_prepare_json_raises(tmp_path):
    write_shard(tmp_path / "train-000.bin", [1, 2, 3], 320)
    with pytest.raises(DataError, match=re.escape(str(tmp_path)) + ".*prepare.json"):
        load_prepared(tmp_path)


def test_session_prepared_fixture_is_loadable(prepared, tokenizer):
    train, val, meta = load_prepared(prepared)
    assert meta["train"]["documents"] == 400 and meta["val"]["documents"] == 40
    assert all(open_shard(p)[0] == tokenizer.eot_id for p in train + [val])


def test_prepare_with_byte_budget_still_reports_replaced_utf8(tmp_path, tokenizer):
    p = tmp_path / "train.txt"
    p.write_bytes(b"bad \xff byte story\n<|endoftext|>\n" + b"clean story\n<|endoftext|>\n" * 20)
    meta = prepare(resolve(str(p)), tokenizer, tmp_path / "out", max_train_bytes=1, batch_docs=1)
    assert meta["train"]["documents"] == 1
    assert meta["train"]["replaced_utf8"] == 1


def test_failed_prepare_leaves_the_previous_data_directory_intact(small_corpus, tokenizer, tmp_path):
    import lzma

    source, _, _ = small_corpus
    out = tmp_path / "data"
    prepare(source, tokenizer, out, shard_tokens=200)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")
    bad = tmp_path / "bad.txt.xz"
    bad.write_bytes(lzma.compress(("a story\n<|endoftext|>\n" * 2000).encode())[:-200])  # truncated .xz
    with pytest.raises(DataError, match="cannot decompress"):
        prepare(resolve(str(bad)), tokenizer, out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == {**before, "notes.txt": b"mine"}
    assert load_prepared(out)[0]  # prepare.json and its shards still agree
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    prepare(source, tokenizer, out)  # a successful rerun replaces the set and keeps files it does not own
    assert _dir_names(out) == ["notes.txt", "prepare.json", "tokenizer.json", "train-000.bin", "val.bin"]


def test_prepared_files_get_the_umask_mode_not_mkstemps_0600(small_corpus, tokenizer, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = tmp_path / "data"
        prepare(small_corpus[0], tokenizer, out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    finally:
        os.umask(old)

"""Text sources: document splitting, compressed and JSONL files, UTF-8 damage, path and corpus resolution."""

from __future__ import annotations

import gzip
import json
import lzma
import re

import pytest

from tinylm.data import sources
from tinylm.data.sources import DATA_ENV, DataError, ReadStats, Source, iter_file_documents, resolve

SEP = "<|endoftext|>"

RAW_TEXT = (
    "First story, line one.\nFirst story, line two.\n"
    f"{SEP}\n"
    "\n"  # leading blank line is stripped
    "Second story.\n\nIt has an interior blank line.\n"
    f"{SEP}\n"
    f"{SEP}\n"  # empty document between two separators: skipped
    "   \n\n"
    f"{SEP}\n"  # whitespace-only document: skipped
    f"Third story mentions {SEP} inside a line, which is not a separator.\n"
    f"{SEP}\n"
    "Last story has no trailing separator."
)
EXPECTED_DOCS = [
    "First story, line one.\nFirst story, line two.",
    "Second story.\n\nIt has an interior blank line.",
    f"Third story mentions {SEP} inside a line, which is not a separator.",
    "Last story has no trailing separator.",
]


def test_text_file_is_split_at_separator_lines(tmp_path):
    p = tmp_path / "stories.txt"
    p.write_text(RAW_TEXT, encoding="utf-8")
    stats = ReadStats()
    docs = list(iter_file_documents(p, stats))
    assert docs == EXPECTED_DOCS
    assert stats.documents == 4
    assert stats.bytes == sum(len(d.encode("utf-8")) for d in EXPECTED_DOCS)
    assert stats.files == [str(p)]
    assert stats.replaced == 0 and stats.replaced_by_file == {}


def test_text_file_without_any_separator_is_one_document(tmp_path):
    p = tmp_path / "one.txt"
    p.write_text("just one\nstory here\n", encoding="utf-8")
    assert list(iter_file_documents(p)) == ["just one\nstory here"]


def test_leading_separator_and_trailing_separator_add_no_documents(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text(f"{SEP}\nalpha\n{SEP}\nbeta\n{SEP}\n", encoding="utf-8")
    assert list(iter_file_documents(p)) == ["alpha", "beta"]


@pytest.mark.parametrize("suffix,opener", [(".txt.xz", lzma.open), (".txt.gz", gzip.open)], ids=["xz", "gz"])
def test_compressed_text_gives_the_same_documents_as_plain_text(tmp_path, suffix, opener):
    plain = tmp_path / "stories.txt"
    plain.write_text(RAW_TEXT, encoding="utf-8")
    packed = tmp_path / f"stories{suffix}"
    with opener(packed, "wb") as f:
        f.write(RAW_TEXT.encode("utf-8"))
    assert packed.read_bytes() != plain.read_bytes()
    assert list(iter_file_documents(packed)) == list(iter_file_documents(plain)) == EXPECTED_DOCS


def test_corrupt_compressed_file_raises_data_error_naming_it(tmp_path):
    p = tmp_path / "broken.txt.xz"
    p.write_bytes(b"this is not xz data at all\n" * 4)
    with pytest.raises(DataError, match=re.escape(str(p))):
        list(iter_file_documents(p))


def test_jsonl_text_field_gives_one_document_per_row(tmp_path):
    p = tmp_path / "docs.jsonl"
    rows = [{"text": "alpha story\nwith two lines", "id": 1}, {"text": "beta ✓ 😀"}, {"text": "   "}, {"text": "gamma"}]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    stats = ReadStats()
    assert list(iter_file_documents(p, stats)) == ["alpha story\nwith two lines", "beta ✓ 😀", "gamma"]
    assert stats.documents == 3


def test_jsonl_custom_text_field(tmp_path):
    p = tmp_path / "docs.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"content": "one"}) + "\n" + json.dumps({"content": "two"}) + "\n")
    assert list(iter_file_documents(p, text_field="content")) == ["one", "two"]


def test_malformed_jsonl_line_raises_data_error_with_file_and_line_number(tmp_path):
    p = tmp_path / "broken.jsonl"
    # line 2 is blank (still counted), line 3 is malformed
    p.write_text('{"text": "fine"}\n\n{"text": "unterminated\n{"text": "never read"}\n', encoding="utf-8")
    it = iter_file_documents(p)
    assert next(it) == "fine"
    with pytest.raises(DataError, match=re.escape(f"{p}:3:")) as e:
        next(it)
    assert "invalid JSON" in str(e.value)


@pytest.mark.parametrize("row", ['{"body": "x"}', '["text"]', '"just a string"'], ids=["other_field", "list", "string"])
def test_jsonl_row_without_text_field_raises_data_error(tmp_path, row):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"text": "ok"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{p}:2:") + r".*'text'"):
        list(iter_file_documents(p))


def test_jsonl_non_string_text_raises_data_error(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"text": 42}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{p}:1:") + ".*not a string"):
        list(iter_file_documents(p))


def test_invalid_utf8_is_replaced_and_counted_exactly(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good start \xff\xfe bad middle\n" + f"{SEP}\n".encode() + b"second \xc3( doc\n")
    clean = tmp_path / "clean.txt"
    clean.write_text("clean doc\n", encoding="utf-8")
    src = Source("mixed", [bad, clean], [])
    stats = ReadStats()
    docs = list(src.documents("train", stats))
    assert docs == ["good start \ufffd\ufffd bad middle", "second \ufffd( doc", "clean doc"]
    assert stats.replaced == 3
    assert stats.replaced_by_file == {str(bad): 3}
    assert stats.files == [str(bad), str(clean)]
    assert stats.documents == 3


def test_truncated_multibyte_character_at_end_of_file_is_replaced_and_counted(tmp_path):
    p = tmp_path / "cut.txt"
    p.write_bytes("café".encode("utf-8")[:-1])  # last byte of é cut off, no trailing newline
    stats = ReadStats()
    assert list(iter_file_documents(p, stats)) == ["caf\ufffd"]
    assert stats.replaced == 1 and stats.replaced_by_file == {str(p): 1}


def test_valid_multibyte_text_is_not_counted_as_replaced(tmp_path):
    p = tmp_path / "ok.txt.gz"
    with gzip.open(p, "wb") as f:
        f.write("naïve 中文 😀\n".encode("utf-8") * 3)
    stats = ReadStats()
    assert list(iter_file_documents(p, stats)) == ["naïve 中文 😀\n" * 2 + "naïve 中文 😀"]
    assert stats.replaced == 0 and stats.replaced_by_file == {}


def test_missing_file_raises_data_error_naming_it(tmp_path):
    missing = tmp_path / "absent.txt"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        list(iter_file_documents(missing))
    with pytest.raises(DataError, match=re.escape(str(missing))):
        list(Source("x", [missing], []).documents())


def test_train_split_of_only_separators_is_reported_empty(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text(f"{SEP}\n\n   \n{SEP}\n\t\n{SEP}\n", encoding="utf-8")
    with pytest.raises(DataError, match="train split is empty") as e:
        list(resolve(str(p)).documents("train"))
    assert str(p) in str(e.value)


def test_path_source_without_valid_has_no_valid_split(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a story\n", encoding="utf-8")
    src = resolve(str(p))
    assert src.valid_files == []
    with pytest.raises(DataError, match="no valid files"):
        list(src.documents("valid"))


def test_resolve_with_valid_path_reads_both_splits(tmp_path):
    (tmp_path / "train.txt").write_text(f"t1\n{SEP}\nt2\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("v1\n", encoding="utf-8")
    src = resolve(str(tmp_path / "train.txt"), valid=str(tmp_path / "valid.txt"))
    assert list(src.documents("train")) == ["t1", "t2"]
    assert list(src.documents("valid")) == ["v1"]


def test_resolve_directory_picks_up_text_and_jsonl_files_recursively(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("from b\n", encoding="utf-8")
    (d / "a.jsonl").write_text(json.dumps({"text": "from a"}) + "\n", encoding="utf-8")
    with lzma.open(d / "sub" / "c.txt.xz", "wb") as f:
        f.write(b"from c\n")
    (d / "notes.md").write_text("not a corpus file\n")
    (d / "data.csv").write_text("x,y\n")
    src = resolve(str(d))
    assert src.train_files == [d / "a.jsonl", d / "b.txt", d / "sub" / "c.txt.xz"]
    assert list(src.documents()) == ["from a", "from b", "from c"]


def test_resolve_directory_without_corpus_files_raises(tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        resolve(str(tmp_path))


def test_resolve_glob_matches_only_matching_files_in_sorted_order(tmp_path):
    for name in ["part-2.txt", "part-1.txt", "other.txt"]:
        (tmp_path / name).write_text(f"{name}\n", encoding="utf-8")
    src = resolve(str(tmp_path / "part-*.txt"))
    assert src.train_files == [tmp_path / "part-1.txt", tmp_path / "part-2.txt"]
    assert list(src.documents()) == ["part-1.txt", "part-2.txt"]


def test_resolve_unknown_path_raises_data_error(tmp_path):
    missing = str(tmp_path / "no-such-corpus")
    with pytest.raises(DataError, match=re.escape(missing)):
        resolve(missing)
    with pytest.raises(DataError):
        resolve(str(tmp_path / "nothing-*.txt"))


def test_resolve_hub_source_parses_name_and_split():
    src = resolve("hf:someone/stories:train[:10]")
    assert (src.hub, src.hub_splits, src.train_files, src.valid_files) == ("someone/stories", ("train[:10]", "validation"), [], [])
    assert resolve("hf:someone/stories").hub_splits[0] == "train"


def _fake_data_dir(root, with_valid=True):
    (root / "tinystories").mkdir(parents=True)
    with lzma.open(root / "tinystories" / "train-00.txt.xz", "wb") as f:
        f.write(f"fake train one\n{SEP}\nfake train two\n{SEP}\n".encode())
    if with_valid:
        (root / "tinystories" / "valid-v1-head.txt").write_text(f"fake valid\n{SEP}\n", encoding="utf-8")
    return root


def test_named_corpus_resolves_under_tinylm_data_dir(tmp_path, monkeypatch):
    root = _fake_data_dir(tmp_path / "data")
    monkeypatch.setenv(DATA_ENV, str(root))
    assert sources.data_dir() == root
    src = resolve("tinystories")
    assert src.name == "tinystories" and src.hub == ""
    assert src.train_files == [root / "tinystories" / "train-00.txt.xz"]
    assert src.valid_files == [root / "tinystories" / "valid-v1-head.txt"]
    assert list(src.documents("train")) == ["fake train one", "fake train two"]
    assert list(src.documents("valid")) == ["fake valid"]


def test_named_corpus_with_missing_files_names_them(tmp_path, monkeypatch):
    root = _fake_data_dir(tmp_path / "data", with_valid=False)
    monkeypatch.setenv(DATA_ENV, str(root))
    with pytest.raises(DataError, match="valid-v1-head.txt") as e:
        resolve("tinystories")
    assert "train-00.txt.xz" not in str(e.value)
    with pytest.raises(DataError, match="gutenberg-children/train-00.txt.xz"):
        resolve("gutenberg-children")


def test_data_dir_env_pointing_nowhere_raises(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match=DATA_ENV):
        resolve("tinystories")


def test_without_data_dir_named_corpora_fall_back_to_hub_or_fail(monkeypatch):
    monkeypatch.setattr(sources, "data_dir", lambda: None)
    src = resolve("tinystories")
    assert src.hub == "roneneldan/TinyStories" and src.train_files == []
    with pytest.raises(DataError, match="no Hub mirror"):
        resolve("gutenberg-children")


def test_real_tinystories_first_document(shared_data, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    src = resolve("tinystories")
    docs = src.documents("train")
    try:
        first, second = next(docs), next(docs)
    finally:
        docs.close()
    assert first.startswith("One day, a little girl named Lily found a needle")
    assert SEP not in first and second and second != first


def test_crlf_line_endings_become_lf(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes(b"first\r\nline\r\n<|endoftext|>\r\nsecond\r\n")
    assert list(iter_file_documents(p)) == ["first\nline", "second"]


def test_hub_source_streams_rows_through_datasets(monkeypatch):
    import sys
    import types

    calls = []

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return iter([{"text": "First story."}, {"text": "  "}, {"text": "Second story."}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    stats = ReadStats()
    docs = list(resolve("hf:roneneldan/TinyStories").documents("valid", stats))
    assert docs == ["First story.", "Second story."]
    assert calls == [("roneneldan/TinyStories", "validation", True)]
    assert stats.documents == 2 and stats.files == ["hf:roneneldan/TinyStories:validation"]

"""ETA for long stages: totals known up front (decompressed sizes of local files, read without
decompressing), bars that reach 100%, and the stage's one summary line."""

import gzip
import lzma

from tinylm.config import PrepareConfig, TokenizerConfig
from tinylm.data.sources import resolve, uncompressed_size
from tinylm.progress import duration, summary
from tinylm.stages import prepare, tok_train

from conftest import make_stories, write_corpus


def test_uncompressed_size_is_exact_without_decompressing(tmp_path):
    text = "".join(s + "\n<|endoftext|>\n" for s in make_stories(300)).encode()
    (tmp_path / "a.txt").write_bytes(text)
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text))
    (tmp_path / "a.txt.xz").write_bytes(lzma.compress(text))
    # two xz streams (`cat a.xz b.xz`); stream padding after a stream
    (tmp_path / "b.txt.xz").write_bytes(lzma.compress(text) + lzma.compress(text[:1000]))
    (tmp_path / "c.txt.xz").write_bytes(lzma.compress(text) + b"\0" * 8)
    for name in ("a.txt", "a.txt.gz", "a.txt.xz"):
        assert uncompressed_size(tmp_path / name) == len(text), name
    assert uncompressed_size(tmp_path / "b.txt.xz") == len(text) + 1000 == len(lzma.decompress((tmp_path / "b.txt.xz").read_bytes()))
    assert uncompressed_size(tmp_path / "c.txt.xz") == len(text)
    (tmp_path / "bad.txt.xz").write_bytes(b"not xz at all")
    assert uncompressed_size(tmp_path / "bad.txt.xz") is None
    src = resolve(str(tmp_path / "a.txt.xz"))
    assert src.total_bytes("train") == len(text) and src.total_bytes("valid") is None


def test_tokenizer_and_prepare_bars_have_totals_and_finish(tmp_path, capsys):
    write_corpus(tmp_path / "train.txt", make_stories(300, seed=3))
    (tmp_path / "train.txt.xz").write_bytes(lzma.compress((tmp_path / "train.txt").read_bytes()))
    (tmp_path / "train.txt").unlink()
    tok_train.run(TokenizerConfig(corpus=str(tmp_path / "train.txt.xz"), vocab_size=300, out=str(tmp_path / "tok.json")))
    prepare.run(PrepareConfig(corpus=str(tmp_path / "train.txt.xz"), tokenizer=str(tmp_path / "tok.json"),
                              out=str(tmp_path / "data")))
    cap = capsys.readouterr()
    err = cap.err.replace("\r", "\n")
    assert "tokenizer: read sample: 100%|" in err  # a percentage needs a total; tqdm's ETA comes with it
    assert "tokenize train: 100%|" in err
    assert f"-> {tmp_path / 'data'}" in cap.out and f"-> {tmp_path / 'tok.json'}" in cap.out


def test_summary_line_says_what_how_long_and_where(capsys):
    assert duration(5.04) == "5.0s" and duration(65) == "1m05s" and duration(3725) == "1h02m"
    assert summary("ifeval", "300 responses to 300 prompts", 65, "runs/x.json") == \
        "ifeval: 300 responses to 300 prompts in 1m05s -> runs/x.json"
    assert capsys.readouterr().out.strip().endswith("-> runs/x.json")

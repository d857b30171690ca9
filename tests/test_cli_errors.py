"""Bad input through the `tinylm` command: every case ends in one clear line naming the flag or
file and the problem (exit status 1, or 2 with the subcommand's usage for a bad flag), never a
traceback. Driven in-process through `tinylm.cli.main`, so an exception that escapes fails the test."""

import json

import pytest

from tinylm.cli import main
from tinylm.config import PretrainConfig
from tinylm.stages import pretrain


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    return rc, err


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(prepared, tokenizer, tmp_path_factory):
    """A 2-step tiny pretraining run (one checkpoint)."""
    from tinylm.config import ModelConfig, TrainConfig

    run = tmp_path_factory.mktemp("cli-errors") / "run"
    model = ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=16)
    train = TrainConfig(run_dir=str(run), data=str(prepared), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=128, max_steps=2, warmup_steps=1, log_every=1, eval_every=0,
                        sample_every=0, save_every=0)
    pretrain.run(PretrainConfig(model, train))
    return run


USAGE_ERRORS = [
    (["pretrain", "--train.batch_size", "0"], "--train.batch_size must be >= 1, got 0"),
    (["pretrain", "--train.log_every", "0"], "--train.log_every must be >= 1"),
    (["pretrain", "--train.max_steps", "0"], "--train.max_steps must be >= 1"),
    (["pretrain", "--train.lr", "-1"], "--train.lr must be"),
    (["pretrain", "--repeat_frac", "1.5"], "--repeat_frac must be"),
    (["pipeline", "--repeat_frac", "-0.1"], "--repeat_frac must be"),
    (["pretrain", "--train.dtype", "fp8"], "--train.dtype must be one of auto, bf16, fp16, fp32"),
    (["pretrain", "--train.device", "gpu"], "--train.device must be one of auto | cpu"),
    (["pretrain", "--model.n_head", "0"], "model.n_head must be a positive integer"),
    (["pretrain", "--train.max_step", "3"], "did you mean --train.max_steps?"),
    (["pretrain", "--train.batch_size", "x"], "invalid literal"),
    (["eval", "--limit", "-5"], "--limit must be >= 0, got -5"),
    (["eval", "--batch_tokens", "0"], "--batch_tokens must be >= 1"),
    (["bpb", "--batch_size", "0"], "--batch_size must be >= 1"),
    (["sample", "--top_p", "0"], "--top_p must be in"),
    (["sample", "--num_samples", "0"], "--num_samples must be >= 1"),
    (["ifeval", "--samples", "0"], "--samples must be >= 1"),
    (["chat", "--max_new_tokens", "-1"], "--max_new_tokens must be >= 1"),
    (["tokenizer", "--vocab_size", "10"], "--vocab_size must be >= 263"),
    (["prepare", "--batch_docs", "0"], "--batch_docs must be >= 1"),
    (["export", "--format", "onnx"], "--format must be one of hf, llama2c"),
    (["pipeline", "--preset", "2m"], "--preset must be one of 300k, 1m, 3m, 10m, 30m"),
    (["pipeline", "--sft_steps", "-1"], "--sft_steps must be >= 0"),
    (["sft", "--heldout_percent", "100"], "--heldout_percent must be in"),
    (["dpo", "--nll_weight", "-1"], "--nll_weight must be >= 0.0, got -1.0"),
    (["rft", "--min_gain", "-0.5"], "--min_gain must be in [0.0, 1.0], got -0.5"),
    (["rft", "--repair", "maybe"], "expected a boolean, got 'maybe'"),
    (["generate"], "generate needs --prompt"),
    (["sample", "--promt", "x"], "did you mean --prompt?"),
]


@pytest.mark.parametrize("argv,expected", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_bad_flag_values_are_usage_errors_of_the_subcommand(argv, expected, capsys):
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    line = one_error_line(err)
    assert expected in line and line.startswith(f"tinylm {argv[0]}: error:"), err
    assert err.startswith(f"usage: tinylm {argv[0]}")  # the subcommand's usage, not the top level's


def test_abbreviated_flags_are_not_accepted(capsys):
    rc, err = run_cli(["pretrain", "--train.max_st", "3", "--print_config"], capsys)
    assert rc == 2 and "unrecognized" in err


def test_every_flag_of_every_subcommand_has_help():
    from tinylm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            text = (action.help or "").split("(default:")[0].strip()
            if action.option_strings and not text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_pipeline_checks_its_whole_config_before_the_first_stage(tmp_path, corpus_dir, capsys):
    corpus = ["--corpus", corpus_dir / "train.txt"]
    for argv, expected in [
        ([*corpus, "--sft_mixture", "alpacca:1"], "unknown task 'alpacca'"),
        ([*corpus, "--sft_mixture", f"jsonl:{tmp_path}/none.jsonl"], "none.jsonl: file not found"),
        ([*corpus, "--eval_tasks", "wikitxt"], "unknown evaluation task 'wikitxt'"),
        (["--corpus", "tinystorie"], "did you mean tinystories?"),
    ]:
        rc, err = run_cli(["pipeline", "--run_dir", tmp_path / "run", *argv], capsys)
        assert rc == 1 and expected in one_error_line(err), err
        assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_misspelled_corpus_lists_the_named_ones(tmp_path, tokenizer, capsys):
    rc, err = run_cli(["prepare", "--corpus", "gutenberg-childrn", "--tokenizer", tokenizer.path,
                       "--out", tmp_path / "d"], capsys)
    line = one_error_line(err)
    assert rc == 1 and "did you mean gutenberg-children" in line and "tinystories" in line


def test_runtime_errors_are_one_line(tmp_path, tiny_run, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    cases = [
        (["pretrain", "--config", bad_json], "bad.json"),
        (["sample", "--checkpoint", tmp_path / "nope"], "no checkpoint found"),
        (["compare", tmp_path / "nope"], "nope"),
        (["report", tmp_path / "nope", "--no_pdf"], "not a directory"),
        (["import", "--path", ""], "import needs --path"),
        (["sft", "--checkpoint", tiny_run, "--mixture", f"jsonl:{tmp_path}/none.jsonl",
          "--train.run_dir", tmp_path / "sft"], "none.jsonl: file not found"),
    ]
    for argv, expected in cases:
        rc, err = run_cli(argv, capsys)
        assert rc in (1, 2) and expected in one_error_line(err), (argv, err)


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["sample", "--checkpoint", str(tmp_path / "nope")])


def test_unexpected_exceptions_are_one_line_too(monkeypatch, capsys):
    import tinylm.cli as cli

    def boom():
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "cmd_info", boom)
    rc, err = run_cli(["info"], capsys)
    assert rc == 1 and "unexpected KeyError" in one_error_line(err) and "TINYLM_DEBUG=1" in err


# ------------------------------------------------------------------ data and checkpoints that do not fit

def tiny_pretrain(data, run_dir) -> list:
    return ["pretrain", "--train.data", data, "--train.run_dir", run_dir, "--train.device", "cpu",
            "--train.dtype", "fp32", "--train.batch_size", "4", "--train.total_batch_tokens", "128",
            "--train.max_steps", "2", "--train.eval_every", "0", "--train.sample_every", "0",
            "--model.n_layer", "1", "--model.n_embd", "16", "--model.n_head", "2", "--model.n_kv_head", "2",
            "--model.seq_len", "32"]


@pytest.fixture
def data_copy(prepared, tmp_path):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(prepared, d)
    return d


@pytest.fixture(scope="module")
def other_tokenizers(corpus_dir, tmp_path_factory):
    """A foreign tokenizer with the same vocabulary size (320) and a smaller one (300)."""
    from tinylm.data.sources import resolve
    from tinylm.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("other-tok")
    docs = lambda: resolve(str(corpus_dir / "valid.txt")).documents()  # noqa: E731
    return train_tokenizer(docs(), 320, d / "same.json"), train_tokenizer(docs(), 300, d / "small.json")


def test_foreign_tokenizer_of_the_same_size_in_the_data_dir_is_refused(data_copy, other_tokenizers, tmp_path, capsys):
    import shutil

    same, small = other_tokenizers
    for tok in (same, small):
        shutil.copyfile(tok.path, data_copy / "tokenizer.json")
        rc, err = run_cli(tiny_pretrain(data_copy, tmp_path / "run"), capsys)
        line = one_error_line(err)
        assert rc == 1 and f"{data_copy}/tokenizer.json" in line and f"{data_copy}/prepare.json" in line, err
        assert f"{tok.vocab_size} tokens" in line and "320 tokens" in line
        assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained, nothing shipped


def test_out_of_range_token_id_in_a_shard_is_caught_when_it_is_opened(data_copy, tmp_path, capsys):
    import numpy as np

    from tinylm.data.shards import HEADER_BYTES

    shard = data_copy / "train-000.bin"
    arr = np.memmap(shard, dtype=np.uint16, mode="r+", offset=HEADER_BYTES)
    arr[1000] = 60000
    arr.flush()
    del arr
    rc, err = run_cli(tiny_pretrain(data_copy, tmp_path / "run"), capsys)
    line = one_error_line(err)
    assert rc == 1 and str(shard) in line and "token id 60000" in line and "token 1,000" in line


def test_shard_header_vocabulary_must_match_the_tokenizer(prepared, tokenizer):
    from tinylm.data.shards import open_shard
    from tinylm.data.sources import DataError

    with pytest.raises(DataError, match="written for a vocabulary of 320 tokens, but the tokenizer has 300 \\(smaller\\)"):
        open_shard(prepared / "val.bin", vocab_size=300)


def test_malformed_prepare_json_names_the_file(data_copy, tmp_path, capsys):
    (data_copy / "prepare.json").write_text('{"train": {"files": ["train-000.bin"] "x": 1}}')
    rc, err = run_cli(tiny_pretrain(data_copy, tmp_path / "run"), capsys)
    line = one_error_line(err)
    assert rc == 1 and f"{data_copy}/prepare.json: damaged" in line and "delimiter" in line


def test_damaged_checkpoint_files_are_named_in_every_reader(tiny_run, tmp_path, corpus_dir, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt = run / "checkpoints" / "step_000002"
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    for argv in (["sample", "--checkpoint", run, "--max_new_tokens", "2"],
                 ["bpb", "--checkpoint", run, "--text", corpus_dir / "valid.txt"],
                 ["export", "--checkpoint", run, "--out", tmp_path / "hf"]):
        rc, err = run_cli(argv, capsys)
        assert rc == 1 and f"{weights}: damaged checkpoint file" in one_error_line(err), (argv, err)


def test_checkpoint_with_a_foreign_tokenizer_is_refused_when_sampling(tiny_run, other_tokenizers, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt = run / "checkpoints" / "step_000002"
    shutil.copyfile(other_tokenizers[0].path, ckpt / "tokenizer.json")
    rc, err = run_cli(["sample", "--checkpoint", run, "--max_new_tokens", "2"], capsys)
    line = one_error_line(err)
    assert rc == 1 and f"{ckpt}/tokenizer.json" in line and f"{ckpt}/meta.json" in line


def test_export_onto_an_existing_file_is_refused(tiny_run, tmp_path, capsys):
    target = tmp_path / "model.bin"
    target.write_text("keep me")
    rc, err = run_cli(["export", "--checkpoint", tiny_run, "--out", target], capsys)
    assert rc == 1 and f"--out {target}: an existing file" in one_error_line(err)
    assert target.read_text() == "keep me"


# ------------------------------------------------------------------ metrics over nothing, empty results

def test_bits_per_byte_of_an_empty_text_is_an_error(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    rc, err = run_cli(["bpb", "--checkpoint", tiny_run, "--text", empty, "--out", tmp_path / "b.json"], capsys)
    assert rc == 1 and "no text to score" in one_error_line(err)
    assert not (tmp_path / "b.json").exists()


def test_eval_of_an_empty_text_is_an_error_and_keeps_the_previous_result(tiny_run, corpus_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    rc, _ = run_cli(["eval", "--model", tiny_run, "--tasks", f"bpb:{corpus_dir / 'valid.txt'}", "--out", out,
                     "--device", "cpu"], capsys)
    assert rc == 0
    good = json.loads((out / "eval.json").read_text())["tasks"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    rc, err = run_cli(["eval", "--model", tiny_run, "--tasks", f"bpb:{empty}", "--out", out, "--device", "cpu"], capsys)
    assert rc == 1 and "nothing to score" in one_error_line(err)
    doc = json.loads((out / "eval.json").read_text())
    assert doc["tasks"] == good and f"bpb:{empty}" not in doc["tasks"]


def test_tokenizer_stage_reports_replaced_invalid_utf8(tmp_path, capsys):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"".join(b"story %d with a bad \xff byte\n<|endoftext|>\n" % i for i in range(50)))
    rc = main(["tokenizer", "--corpus", str(corpus), "--vocab_size", "300", "--out", str(tmp_path / "tok.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "50 invalid UTF-8 byte sequence(s) replaced" in out


def test_atomic_writes_keep_the_umask_mode(tmp_path):
    import os
    import stat

    from tinylm.util import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "eval.json", "{}")
        assert stat.S_IMODE((tmp_path / "eval.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)


# ------------------------------------------------------------------ one list of pipeline stages

def test_pipeline_stage_lists_agree_with_what_runs(tmp_path, corpus_dir, monkeypatch, capsys):
    """The Makefile comment, README, `tinylm --help` and `tinylm pipeline --help` quote the stage list
    that run_pipeline actually follows."""
    from pathlib import Path

    import tinylm.cli as cli
    import tinylm.pipeline as pipeline
    from tinylm.stages import bpb, chat, dpo, eval as eval_stage, ifeval, prepare, pretrain as pre, report, sample, sft, tok_train

    ran = []
    run = tmp_path / "run"
    for mod, name in ((tok_train, "tokenizer"), (prepare, "prepare"), (pre, "pretrain"), (bpb, "bpb"),
                      (sample, "sample"), (sft, "sft"), (dpo, "align (+ ifeval)"), (report, "report")):
        monkeypatch.setattr(mod, "run", lambda *a, _n=name, **k: ran.append(_n))
    monkeypatch.setattr(eval_stage, "run", lambda cfg: ran.append("eval (sft)" if cfg.model.endswith("sft") else "eval (base)"))
    monkeypatch.setattr(ifeval, "run", lambda cfg: None if cfg.checkpoint.endswith("dpo") else ran.append("ifeval (base, sft)"))
    monkeypatch.setattr(chat, "generate_once", lambda cfg: ran.append("chat"))
    pipeline.run_pipeline(cli.C.PipelineConfig(run_dir=str(run), corpus=str(corpus_dir / "train.txt")))
    stages = [s for i, s in enumerate(ran) if i == 0 or ran[i - 1] != s]  # bpb, ifeval and chat run twice
    assert tuple(stages) == pipeline.PIPELINE_STAGES

    root = Path(__file__).resolve().parent.parent
    flat = lambda text: " ".join(text.replace("#", " ").split())  # noqa: E731
    assert cli.PIPELINE_ORDER in flat((root / "Makefile").read_text())
    assert cli.PIPELINE_ORDER in flat((root / "README.md").read_text())
    for argv in (["--help"], ["pipeline", "--help"]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(argv)
        assert cli.PIPELINE_ORDER in flat(capsys.readouterr().out), argv


def test_make_test_installs_every_optional_extra():
    """CI runs `make test`: it must install every extra in pyproject.toml, so behaviour that only
    appears with an extra installed (datasets present without a network) is tested."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    extras = set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    make = (root / "Makefile").read_text()
    installed = set(re.search(r"^EXTRAS := (.+)$", make, re.M).group(1).split(","))
    excused = set(re.search(r"^NOT_IN_CI := (.+)$", make, re.M).group(1).split(","))  # each with its reason
    assert extras <= installed | excused and not installed & excused
    assert re.search(r"^test: \$\(VENV\)/\.installed-all", make, re.M)


def test_alignment_comparison_entry_point_errors_are_one_line(tmp_path, capsys):
    """python -m tinylm.eval.alignment keeps tinylm's error contract: a missing checkpoint is one line, status 1;
    a malformed --models entry is a usage error."""
    from tinylm.eval.alignment import main as alignment_main

    rc = alignment_main(["--sft", str(tmp_path / "nope"), "--out", str(tmp_path / "a.json"), "--reuse"])
    err = capsys.readouterr().err
    assert rc == 1 and one_error_line(err).startswith("error:") and "nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        alignment_main(["--sft", str(tmp_path), "--out", str(tmp_path / "a.json"), "--models", "rpo"])
    assert e.value.code == 2 and "--models takes NAME=RUN pairs, got rpo" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_pipeline_goes_on_to_the_report_when_alignment_finds_no_preference_pairs(tmp_path, corpus_dir, monkeypatch, capsys):
    """A model whose sampled answers all tie gives DPO nothing to prefer: the pipeline says so in one line
    and still writes the report and chats with the SFT model."""
    import tinylm.cli as cli
    import tinylm.pipeline as pipeline
    from tinylm.data.preference import TooFewPairsError
    from tinylm.stages import bpb, chat, dpo, eval as eval_stage, ifeval, prepare, pretrain as pre, report, sample, sft, tok_train

    ran = []
    for mod, name in ((tok_train, "tokenizer"), (prepare, "prepare"), (pre, "pretrain"), (bpb, "bpb"),
                      (sample, "sample"), (sft, "sft"), (report, "report"), (ifeval, "ifeval")):
        monkeypatch.setattr(mod, "run", lambda *a, _n=name, **k: ran.append(_n))
    monkeypatch.setattr(eval_stage, "run", lambda cfg: ran.append("eval"))

    def no_pairs(*a, **k):
        raise TooFewPairsError("0 usable preference pairs (skipped: {}), fewer than 1 batch(es) of 16")

    monkeypatch.setattr(dpo, "run", no_pairs)
    chats = []
    monkeypatch.setattr(chat, "generate_once", lambda cfg: chats.append(cfg.checkpoint))
    pipeline.run_pipeline(cli.C.PipelineConfig(run_dir=str(tmp_path / "run"), corpus=str(corpus_dir / "train.txt")))
    out = capsys.readouterr().out
    assert "align (dpo): skipped, 0 usable preference pairs" in out and "report" in ran
    assert chats and all(c.endswith("sft") for c in chats)

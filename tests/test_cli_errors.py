"""Bad input through the `tinylm` command: every case ends in one clear line naming the flag or
file and the problem (exit status 1, or 2 with the subcommand's usage for a bad flag), never a
traceback. Driven in-process through `tinylm.cli.main`, so an exception that escapes fails the test."""

import dataclasses
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
    (["pretrain", "--train.dtype", "fp8"], "--train.dtype must be one of bf16, fp16, fp32"),
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

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinylm.cli import build_parser, main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("info", "tokenizer", "prepare", "pretrain", "sample", "bpb", "pipeline"):
        assert cmd in out


def test_subcommand_help_shows_field_comments(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    assert "--train.total_batch_tokens" in out and "grad accumulation is derived" in out
    assert "--model.n_kv_head" in out and "grouped-query attention" in out


def test_overrides_apply_on_top_of_preset(capsys):
    assert main(["pretrain", "--preset", "10m", "--model.n_layer", "3", "--train.lr", "1e-3",
                 "--train.compile", "true", "--print_config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["n_embd"] == 320 and cfg["model"]["n_layer"] == 3
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["compile"] is True


def test_bad_override_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--train.compile", "maybe", "--print_config"])
    assert e.value.code == 2 and "boolean" in capsys.readouterr().err


def test_saved_config_round_trips(tmp_path, capsys):
    main(["pretrain", "--preset", "3m", "--train.max_steps", "7", "--print_config"])
    path = tmp_path / "cfg.json"
    path.write_text(capsys.readouterr().out)
    main(["pretrain", "--config", str(path), "--print_config"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["n_embd"] == 192 and cfg["train"]["max_steps"] == 7


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "--train.data", str(tmp_path / "nope"), "--train.run_dir", str(tmp_path / "r")]) == 1
    assert "run `tinylm prepare` first" in capsys.readouterr().err
    assert main(["prepare", "--corpus", str(tmp_path / "missing.txt"), "--tokenizer", "x.json"]) == 1


def test_parser_builds_for_every_stage():
    p = build_parser()
    for cmd in ("tokenizer", "prepare", "sample", "bpb", "pipeline"):
        assert p.parse_args([cmd]).command == cmd


def _cli(*args, cwd=None):
    return [sys.executable, "-m", "tinylm", *args]


@pytest.mark.slow
def test_pipeline_end_to_end_and_sigkill_resume(corpus_dir, tmp_path):
    """The CLI from raw text to samples; then a real SIGKILL mid-run and a resume that reproduces
    the uninterrupted run's losses exactly."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    corpus = str(corpus_dir / "train.txt")
    run = tmp_path / "run"
    common = ["--model.n_layer", "2", "--model.n_embd", "32", "--model.n_head", "2", "--model.n_kv_head", "2",
              "--model.seq_len", "32", "--train.batch_size", "4", "--train.total_batch_tokens", "128",
              "--train.dtype", "fp32", "--train.log_every", "1", "--train.eval_every", "0",
              "--train.sample_every", "0", "--train.warmup_steps", "2"]
    subprocess.run(_cli("tokenizer", "--corpus", corpus, "--vocab_size", "300", "--out", str(run / "tok.json"),
                        cwd=tmp_path), check=True, env=env, cwd=tmp_path)
    subprocess.run(_cli("prepare", "--corpus", corpus, "--tokenizer", str(run / "tok.json"), "--out",
                        str(run / "data"), cwd=tmp_path), check=True, env=env, cwd=tmp_path)
    data = ["--train.data", str(run / "data")]
    subprocess.run(_cli("pretrain", *common, *data, "--train.run_dir", str(tmp_path / "full"),
                        "--train.max_steps", "300", "--train.save_every", "100", cwd=tmp_path),
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    killed = tmp_path / "killed"
    args = _cli("pretrain", *common, *data, "--train.run_dir", str(killed), "--train.max_steps", "300",
                "--train.save_every", "100", cwd=tmp_path)
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step_000100").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(args + ["--resume"], check=True, env=env, cwd=tmp_path, capture_output=True)

    def losses(d):
        return [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]

    assert len(losses(tmp_path / "full")) == 300
    # the default recipe (bench/results/time_to_quality.json): Muon and warmup-stable-decay, and the
    # kill/resume above is exact with Muon's momentum buffers in the checkpoint
    train = json.loads((tmp_path / "full" / "config.json").read_text())["config"]["train"]
    assert (train["optimizer"], train["schedule"]) == ("muon", "wsd")
    assert losses(killed) == losses(tmp_path / "full")
    out = subprocess.run(_cli("sample", "--checkpoint", str(killed), "--prompt", "Once upon", "--max_new_tokens",
                              "20", "--temperature", "0", cwd=tmp_path), check=True, env=env, cwd=tmp_path,
                         capture_output=True, text=True).stdout
    assert out.startswith("Once upon") and len(out) > len("Once upon")
    res = subprocess.run(_cli("bpb", "--checkpoint", str(killed), "--text", str(corpus_dir / "valid.txt"),
                              "--out", str(tmp_path / "bpb.json"), cwd=tmp_path), env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    bpb = json.loads((tmp_path / "bpb.json").read_text())
    assert 0 < bpb["bits_per_byte"] < 8 and bpb["documents"] == 40, res.stdout


def test_hardware_info_tells_cpus_of_one_name_apart(tmp_path, monkeypatch):
    """Cloud CPUs report just "AMD EPYC": the family/model and the widest vector ISA go into every result
    file, so timings from an AVX2 machine and an AVX512-BF16 one are never mistaken for each other."""
    from tinylm import util

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
                       "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nmodel\t\t: 99\n")
    real_path = util.Path
    monkeypatch.setattr(util, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert util.cpu_details() == {"cpu_id": "family 25 model 17", "cpu_isa": "avx512_bf16"}
    cpuinfo.write_text("cpu family\t: 23\nmodel\t\t: 49\nflags\t\t: fpu avx2\n")
    assert util.cpu_details()["cpu_isa"] == "avx2"
    info = util.hardware_info()
    assert {"cpu", "cpu_id", "cpu_isa"} <= set(info)

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from resume_helpers import kill_and_resume

from tinylm.config import PretrainConfig
from tinylm.data.shards import prepare
from tinylm.data.sources import resolve
from tinylm.model import GPT
from tinylm.stages import pretrain
from tinylm.tokenizer import train_tokenizer
from tinylm.train import checkpoint as ckpt_mod
from tinylm.train.checkpoint import list_checkpoints, load_model
from tinylm.train.loop import NonFiniteLossError, ResumeMismatchError, grad_accum_steps
from tinylm.train.optim import lr_at, param_groups


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_loss_decreases_on_tiny_corpus(tiny_model_cfg, tiny_train_cfg):
    cfg = PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=40, save_every=0))
    pretrain.run(cfg)
    ls = losses(Path(tiny_train_cfg.run_dir))
    assert len(ls) == 40
    assert sum(ls[-5:]) / 5 < 0.75 * sum(ls[:5]) / 5  # 5.7 -> 3.9 nats in 40 steps of 128 tokens


def test_resume_is_bitwise_identical_after_a_simulated_kill(tiny_model_cfg, tiny_train_cfg, tmp_path):
    full = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "full"))
    pretrain.run(PretrainConfig(tiny_model_cfg, full))

    cut = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "cut"))
    trainer = pretrain.build(PretrainConfig(tiny_model_cfg, cut))

    def die(step):
        if step == 7:  # after the checkpoint at step 4, before the one at step 8
            raise KeyboardInterrupt

    trainer.on_step = die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert len(losses(tmp_path / "cut")) == 7  # steps 5-7 will be dropped and redone
    resumed = pretrain.build(PretrainConfig(tiny_model_cfg, cut))
    resumed.fit(resume=True)
    assert resumed.step == 12
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")  # bitwise: floats compared exactly
    a, b = load_model(tmp_path / "full")[0], load_model(tmp_path / "cut")[0]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_compiled_training_resumes_to_rounding_and_saves_plain_weights(tiny_model_cfg, tiny_train_cfg, tmp_path):
    """`--train.compile`: a killed compiled run resumes to the uninterrupted compiled run's losses and
    weights to fp32 rounding (measured: a loss differed by 1e-6 at the first step after the resume; eager
    training resumes bit for bit, test above), and its checkpoints load into a plain (eager) GPT: no
    `_orig_mod.` keys."""
    compiled = dataclasses.replace(tiny_train_cfg, compile=True, max_steps=8)
    full = dataclasses.replace(compiled, run_dir=str(tmp_path / "full"))
    pretrain.run(PretrainConfig(tiny_model_cfg, full))
    cut = dataclasses.replace(compiled, run_dir=str(tmp_path / "cut"))
    resumed = kill_and_resume(tiny_model_cfg, cut, die_at=6)  # after the checkpoint at step 4
    assert resumed.step == 8 and losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "full"), rel=1e-5)
    a, b = load_model(tmp_path / "full")[0], load_model(tmp_path / "cut")[0]
    assert not any(k.startswith("_orig_mod") for k in a.state_dict())
    diff = max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert diff < 1e-4, f"weights differ by up to {diff:.3g}"


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tiny_model_cfg, tiny_train_cfg):
    trainer = pretrain.build(PretrainConfig(tiny_model_cfg, tiny_train_cfg))
    base = trainer.objective

    def poisoned(model, batch):
        loss, n = base(model, batch)
        return (loss * float("nan") if trainer.step == 5 else loss), n  # 0-based step 5 = step 6

    trainer.objective = poisoned
    with pytest.raises(NonFiniteLossError, match="at step 6.*step_000004"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tiny_train_cfg.run_dir)] == ["step_000004"]
    model = load_model(tiny_train_cfg.run_dir)[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_crash_during_checkpoint_write_leaves_previous_checkpoint_intact(tiny_model_cfg, tiny_train_cfg, monkeypatch):
    real_save = ckpt_mod.save_file
    calls = {"n": 0}

    def flaky_save(tensors, path):
        calls["n"] += 1
        if calls["n"] == 3:  # second checkpoint (step 8): die after writing half a file
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError("disk full (simulated)")
        real_save(tensors, path)

    monkeypatch.setattr(ckpt_mod, "save_file", flaky_save)
    with pytest.raises(OSError, match="simulated"):
        pretrain.run(PretrainConfig(tiny_model_cfg, tiny_train_cfg))
    run = Path(tiny_train_cfg.run_dir)
    assert [p.name for p in list_checkpoints(run)] == ["step_000004"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000004"]  # no temp dir left behind
    monkeypatch.setattr(ckpt_mod, "save_file", real_save)
    trainer = pretrain.build(PretrainConfig(tiny_model_cfg, tiny_train_cfg))
    trainer.fit(resume=True)
    assert trainer.step == 12


def test_resume_with_different_model_config_is_refused(tiny_model_cfg, tiny_train_cfg):
    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=4)))
    other = dataclasses.replace(tiny_model_cfg, n_layer=3)
    with pytest.raises(ResumeMismatchError, match="n_layer: 2 -> 3"):
        pretrain.build(PretrainConfig(other, tiny_train_cfg)).fit(resume=True)


def test_resume_with_different_tokenizer_is_refused(tiny_model_cfg, tiny_train_cfg, corpus_dir, tmp_path):
    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=4)))
    tok2 = train_tokenizer(resolve(str(corpus_dir / "valid.txt")).documents(), 320, tmp_path / "tok2.json")
    prepare(resolve(str(corpus_dir / "train.txt"), valid=str(corpus_dir / "valid.txt")), tok2, tmp_path / "data2")
    cfg = dataclasses.replace(tiny_train_cfg, data=str(tmp_path / "data2"))
    with pytest.raises(ResumeMismatchError, match="tokenizer"):
        pretrain.build(PretrainConfig(tiny_model_cfg, cfg)).fit(resume=True)


def test_gradient_accumulation_equals_one_big_batch(tiny_model_cfg, tiny_train_cfg, tmp_path):
    base = dict(total_batch_tokens=8 * 32, max_steps=5, save_every=0)
    big = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "big"), batch_size=8, **base)
    small = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "small"), batch_size=4, **base)
    assert grad_accum_steps(small, 32) == 2
    pretrain.run(PretrainConfig(tiny_model_cfg, big))
    pretrain.run(PretrainConfig(tiny_model_cfg, small))
    for a, b in zip(losses(tmp_path / "big"), losses(tmp_path / "small")):
        assert math.isclose(a, b, rel_tol=1e-5)


def test_batch_size_must_divide_token_budget(tiny_train_cfg):
    with pytest.raises(ValueError, match="multiple"):
        grad_accum_steps(dataclasses.replace(tiny_train_cfg, total_batch_tokens=100), 32)


def test_no_weight_decay_on_norms_and_embeddings(tiny_model_cfg):
    model = GPT(tiny_model_cfg)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in no_decay["params"]} == {n for n in names.values() if "norm" in n or n == "wte.weight"}
    assert all(p.dim() == 2 and names[id(p)] != "wte.weight" for p in decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_lr_schedules(tiny_train_cfg):
    cfg = dataclasses.replace(tiny_train_cfg, lr=1.0, min_lr_frac=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # cosine midpoint
    assert lr_at(110, cfg) == pytest.approx(0.1)
    wsd = dataclasses.replace(cfg, schedule="wsd", decay_frac=0.2)  # decay over steps 88..110
    assert lr_at(50, wsd) == 1.0 and lr_at(88, wsd) == 1.0
    assert lr_at(99, wsd) == pytest.approx(0.55) and lr_at(110, wsd) == pytest.approx(0.1)


def test_keep_last_checkpoints_and_meta_contents(tiny_model_cfg, tiny_train_cfg):
    cfg = dataclasses.replace(tiny_train_cfg, save_every=2, keep_last=2)
    pretrain.run(PretrainConfig(tiny_model_cfg, cfg))
    ckpts = list_checkpoints(cfg.run_dir)
    assert [p.name for p in ckpts] == ["step_000010", "step_000012"]
    meta = json.loads((ckpts[-1] / "meta.json").read_text())
    for key in ("config", "tokenizer_sha256", "code_version", "hardware", "data_state", "tokens_seen"):
        assert key in meta
    assert meta["config"]["model"]["n_layer"] == 2 and meta["tokens_seen"] == 12 * 128


def test_gpu_peak_comes_from_the_datasheet_table_not_a_hardcoded_h100(monkeypatch):
    from tinylm import runtime

    runtime.peak_flops.cache_clear()
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    assert runtime.peak_flops(torch.device("cuda"), torch.bfloat16) == (312e12, "datasheet bf16 dense peak of NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    assert runtime.peak_flops(torch.device("cuda", 1), torch.bfloat16)[0] == 989e12
    runtime.peak_flops.cache_clear()


def test_mfu_in_metrics_is_tokens_per_second_times_flops_over_peak(tiny_model_cfg, tiny_train_cfg, monkeypatch):
    from tinylm.model import flops_per_token
    from tinylm.train import loop

    monkeypatch.setattr(loop, "peak_flops", lambda device, dtype: (1e12, "test peak"))
    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=3, save_every=0)))
    rows = [json.loads(x) for x in (Path(tiny_train_cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    fpt = flops_per_token(tiny_model_cfg)
    for r in rows:
        assert r["mfu"] == pytest.approx(r["tok_per_s"] * fpt / 1e12, rel=1e-3, abs=1e-4)
        # every timing carries the load it was measured under (the report flags a busy machine)
        assert len(r["loadavg"]) == 3 and all(x >= 0 for x in r["loadavg"])


def test_report_flags_a_training_time_measured_under_load():
    from tinylm.report.artifacts import FileLog, Run
    from tinylm.report.sections_setup import load_note

    def run(loads):
        r = Run(dir=Path("x"), name="x", log=FileLog(), meta={"hardware": {"torch_threads": 2}})
        r.metrics = [{"step": i, "loss": 1.0, "loadavg": [x, x, x]} for i, x in enumerate(loads)]
        return r

    assert "UNDER LOAD" in load_note(run([1.0, 5.5])) and "5.5" in load_note(run([1.0, 5.5]))
    assert "UNDER LOAD" not in load_note(run([0.5, 1.9])) and "1.9" in load_note(run([0.5, 1.9]))
    assert "not recorded" in load_note(run([]))


def test_save_every_zero_still_ends_with_the_final_checkpoint(tiny_model_cfg, tiny_train_cfg):
    cfg = dataclasses.replace(tiny_train_cfg, max_steps=3, save_every=0)
    pretrain.run(PretrainConfig(tiny_model_cfg, cfg))
    assert [p.name for p in list_checkpoints(cfg.run_dir)] == ["step_000003"]


def test_max_steps_zero_is_refused_before_any_work():
    from tinylm.config import TrainConfig, validate

    with pytest.raises(ValueError, match="--train.max_steps must be >= 1"):
        validate(PretrainConfig(train=TrainConfig(max_steps=0)))


def test_an_impossible_mfu_remeasures_the_peak_once_and_is_never_logged(tiny_model_cfg, tiny_train_cfg, monkeypatch):
    from tinylm.train import loop

    calls = []
    monkeypatch.setattr(loop, "peak_flops", lambda device, dtype: (1e3, "measured while busy"))
    monkeypatch.setattr(loop, "remeasure_peak", lambda device, dtype, old: calls.append(old) or (2e3, "measured again"))
    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=3, save_every=0)))
    rows = [json.loads(x) for x in (Path(tiny_train_cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert calls == [1e3] and all(r["mfu"] is None for r in rows)


def test_matmul_peak_measurement_does_not_move_the_global_rng():
    from tinylm.runtime import measure_matmul_peak

    torch.manual_seed(3)
    before = torch.get_rng_state()
    assert measure_matmul_peak(torch.device("cpu"), torch.float32, n=64, seconds=0.01) > 0
    assert torch.equal(torch.get_rng_state(), before)


def _checkpoint_files(ckpt: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(ckpt.iterdir())}
    meta = json.loads(files.pop("meta.json"))
    meta.pop("elapsed_s")  # wall-clock seconds: the one field that cannot repeat
    meta["config"]["train"].pop("run_dir")  # the two runs live in different directories
    files["meta.json"] = json.dumps(meta, sort_keys=True).encode()
    return files


def test_resumed_checkpoints_are_byte_identical_to_the_uninterrupted_run(tiny_model_cfg, tiny_train_cfg, tmp_path):
    """Weights, AdamW moments, every RNG state and the data position: the files of a run killed and
    resumed equal the uninterrupted run's byte for byte (each run measures its matmul peak afresh,
    as a new process would)."""
    from tinylm import runtime

    cfg = dataclasses.replace(tiny_train_cfg, sample_every=3, sample_tokens=4, keep_last=0)
    runtime.peak_flops.cache_clear()
    full = dataclasses.replace(cfg, run_dir=str(tmp_path / "full"))
    pretrain.run(PretrainConfig(tiny_model_cfg, full))

    cut = dataclasses.replace(cfg, run_dir=str(tmp_path / "cut"))
    runtime.peak_flops.cache_clear()
    trainer = pretrain.build(PretrainConfig(tiny_model_cfg, cut))

    def die(step):
        if step == 7:  # after the sample at step 6, before the checkpoint at step 8
            raise KeyboardInterrupt

    trainer.on_step = die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    runtime.peak_flops.cache_clear()
    pretrain.build(PretrainConfig(tiny_model_cfg, cut)).fit(resume=True)
    names = [p.name for p in list_checkpoints(full.run_dir)]
    assert names == [p.name for p in list_checkpoints(cut.run_dir)] == ["step_000004", "step_000008", "step_000012"]
    for name in names:
        a = _checkpoint_files(tmp_path / "full" / "checkpoints" / name)
        b = _checkpoint_files(tmp_path / "cut" / "checkpoints" / name)
        assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == [], name
    # samples.jsonl is trimmed on resume like metrics.jsonl: the sample at step 6 appears once
    assert (tmp_path / "cut" / "samples.jsonl").read_text() == (tmp_path / "full" / "samples.jsonl").read_text()


def test_stale_checkpoint_temp_dirs_are_removed_on_start(tiny_model_cfg, tiny_train_cfg):
    root = Path(tiny_train_cfg.run_dir) / "checkpoints"
    (root / ".step_000004.abc123.tmp").mkdir(parents=True)
    (root / ".step_000004.abc123.tmp" / "model.safetensors").write_bytes(b"half")
    (root / ".step_000008.old").mkdir()
    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=2)))
    assert sorted(p.name for p in root.iterdir()) == ["step_000002"]


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_truncated_checkpoint_file_is_named_and_resume_offers_the_previous_one(tiny_model_cfg, tiny_train_cfg, name):
    from tinylm.train.checkpoint import CheckpointError

    pretrain.run(PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, max_steps=8)))
    bad = Path(tiny_train_cfg.run_dir) / "checkpoints" / "step_000008" / name
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{bad}: damaged checkpoint file.*step_000004 is complete"):
        pretrain.build(PretrainConfig(tiny_model_cfg, tiny_train_cfg)).fit(resume=True)
    if name == "model.safetensors":
        with pytest.raises(CheckpointError, match=f"{bad}: damaged"):
            load_model(tiny_train_cfg.run_dir)


def test_full_disk_during_checkpoint_write_is_one_clear_error(tiny_model_cfg, tiny_train_cfg, monkeypatch, capsys):
    import errno

    from tinylm.cli import main

    real_save = ckpt_mod.save_file
    calls = {"n": 0}

    def full_disk(tensors, path):
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(ckpt_mod, "save_file", full_disk)
    t = tiny_train_cfg
    m = tiny_model_cfg
    rc = main(["pretrain", "--train.data", t.data, "--train.run_dir", t.run_dir, "--train.device", "cpu",
               "--train.dtype", "fp32", "--train.batch_size", "4", "--train.total_batch_tokens", "128",
               "--train.max_steps", "8", "--train.save_every", "4", "--train.eval_every", "0",
               "--train.sample_every", "0", "--model.n_layer", str(m.n_layer), "--model.n_embd", str(m.n_embd),
               "--model.n_head", str(m.n_head), "--model.n_kv_head", str(m.n_kv_head), "--model.seq_len", "32"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    line = [x for x in err.splitlines() if "error:" in x]
    assert len(line) == 1 and "No space left on device" in line[0] and "step_000004 is intact" in line[0]
    assert [p.name for p in (Path(t.run_dir) / "checkpoints").iterdir()] == ["step_000004"]


def test_auto_dtype_uses_bf16_only_where_the_hardware_has_it(monkeypatch):
    import torch

    from tinylm.runtime import Runtime, resolve_dtype

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_dtype("auto", cpu) == "fp32"  # AVX2-only: emulated bf16 is several times slower
    assert Runtime.create("cpu", "auto").dtype == torch.float32
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert resolve_dtype("auto", cpu) == "bf16"
    assert resolve_dtype("fp32", cpu) == "fp32"  # an explicit choice is kept

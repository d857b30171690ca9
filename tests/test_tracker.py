"""Experiment tracking: TensorBoard events of a real short run hold exactly metrics.jsonl's values,
a killed and resumed run logs no step twice, and a tracker that cannot run says why in one line."""

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest

from tinylm.cli import main
from tinylm.config import PretrainConfig
from tinylm.stages import pretrain
from tinylm.train import tracker
from tinylm.train.tracker import TrackerError

pytest.importorskip("tensorboard", reason="the tracker tests read events with TensorBoard (pip install tensorboard)")
from tensorboard.backend.event_processing import plugin_event_accumulator as pea  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def events(log_dir: Path, purge: bool = True) -> tuple[dict[str, list[tuple[int, float]]], dict[int, str]]:
    """{tag: [(step, value)]} and {step: samples text} as TensorBoard's reader sees them."""
    acc = pea.EventAccumulator(str(log_dir), size_guidance={pea.TENSORS: 0}, purge_orphaned_data=purge)
    acc.Reload()
    scalars, texts = {}, {}
    for tag in acc.Tags()["tensors"]:
        for e in acc.Tensors(tag):
            v = tensor_util.make_ndarray(e.tensor_proto)
            if tag.startswith("samples"):
                texts[e.step] = v.reshape(-1)[0].decode()
            else:
                scalars.setdefault(tag, []).append((e.step, v.item()))
    return scalars, texts


def expected_from_jsonl(run: Path) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for r in rows_of(run):
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, []).append((r["step"], v))
    return out


@pytest.fixture
def tb_cfg(tiny_model_cfg, tiny_train_cfg):
    train = dataclasses.replace(tiny_train_cfg, tracker="tensorboard", eval_every=4, eval_batches=2,
                                sample_every=4, sample_tokens=8)
    return PretrainConfig(tiny_model_cfg, train)


def test_tensorboard_events_hold_exactly_the_metrics_jsonl_values(tb_cfg):
    pretrain.run(tb_cfg)
    run = Path(tb_cfg.train.run_dir)
    scalars, texts = events(run / "tb")
    want = expected_from_jsonl(run)
    assert {"loss", "lr", "tokens", "grad_norm", "tok_per_s", "val_bpb", "elapsed_s", "loss_tokens"} <= set(want)
    assert scalars == want  # every field, every step, float64: exactly equal
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert sorted(texts) == sorted({s["step"] for s in samples}) == [4, 8, 12]
    for s in samples:
        assert s["text"].splitlines()[0] in texts[s["step"]]


def test_resumed_run_logs_no_step_twice(tb_cfg):
    run = Path(tb_cfg.train.run_dir)
    trainer = pretrain.build(tb_cfg)

    def die(step):
        if step == 10:  # checkpoint at 8; steps 9-10 logged, then a kill
            raise KeyboardInterrupt

    trainer.on_step = die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    before = rows_of(run)
    assert [r["step"] for r in before][-2:] == [9, 10]
    pretrain.build(tb_cfg).fit(resume=True)

    scalars, texts = events(run / "tb")
    for tag, points in scalars.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice"
    assert scalars == expected_from_jsonl(run)  # the resumed run's values, not the killed run's
    assert sorted(texts) == [4, 8, 12]
    # the purge is what makes this so: the raw files do hold steps 9 and 10 twice
    raw, _ = events(run / "tb", purge=False)
    assert [s for s, _ in raw["loss"]].count(9) == 2


def test_a_fresh_run_in_the_same_directory_replaces_the_curves(tb_cfg):
    pretrain.run(tb_cfg)
    run = Path(tb_cfg.train.run_dir)
    shorter = dataclasses.replace(tb_cfg, train=dataclasses.replace(tb_cfg.train, max_steps=6))
    pretrain.run(shorter)  # not --resume: metrics.jsonl starts over, and so do the curves
    scalars, _ = events(run / "tb")
    assert scalars == expected_from_jsonl(run)
    assert max(s for s, _ in scalars["loss"]) == 6


def test_missing_tracker_package_and_unwritable_dir_fail_in_one_line(tb_cfg, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(TrackerError, match=r"train.tracker_dir .*a-file/tb is not writable"):
        tracker.check("tensorboard", blocker / "tb")
    with pytest.raises(TrackerError, match="train.tracker='mlflow': choose tensorboard, wandb"):
        tracker.check("mlflow", tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(TrackerError, match="needs the wandb package: pip install wandb"):
        tracker.check("wandb", tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    t = tb_cfg.train
    code = main(["pretrain", "--model.n_layer", "2", "--model.n_embd", "32", "--model.seq_len", "32",
                 "--train.data", t.data, "--train.run_dir", str(tmp_path / "r"), "--train.device", "cpu",
                 "--train.batch_size", "4", "--train.total_batch_tokens", "128", "--train.max_steps", "2",
                 "--train.tracker", "tensorboard"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "needs the tensorboard package: pip install tensorboard" in err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # refused before training


def test_wandb_offline_run_keeps_one_id_and_increasing_steps(tb_cfg, monkeypatch):
    """With a stand-in for `wandb` that records calls (the real one is not installed here)."""
    calls = {"init": [], "log": []}

    class Run:
        def log(self, data, step):
            calls["log"].append((step, data))

        def finish(self):
            pass

    fake = types.SimpleNamespace(init=lambda **kw: calls["init"].append(kw) or Run(),
                                 util=types.SimpleNamespace(generate_id=lambda: f"id{len(calls['init'])}"),
                                 Table=lambda columns, data: ("table", data))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = dataclasses.replace(tb_cfg, train=dataclasses.replace(tb_cfg.train, tracker="wandb"))
    trainer = pretrain.build(cfg)
    trainer.on_step = lambda s: (_ for _ in ()).throw(KeyboardInterrupt) if s == 10 else None
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    pretrain.build(cfg).fit(resume=True)
    assert [kw["mode"] for kw in calls["init"]] == ["offline", "offline"]
    assert calls["init"][0]["id"] == calls["init"][1]["id"] and calls["init"][1]["resume"] == "allow"
    metric_steps = [s for s, d in calls["log"] if "loss" in d]
    assert metric_steps == sorted(set(metric_steps)) == list(range(1, 13))
    run = Path(cfg.train.run_dir)
    assert {s: d["loss"] for s, d in calls["log"] if "loss" in d} == {r["step"]: r["loss"] for r in rows_of(run) if "loss" in r}


def test_board_lays_runs_side_by_side_and_replays_metrics_jsonl(tb_cfg, tiny_train_cfg, tiny_model_cfg, tmp_path, capsys):
    pretrain.run(tb_cfg)
    plain = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "plain"), max_steps=4)
    pretrain.run(PretrainConfig(tiny_model_cfg, plain))  # trained without a tracker
    a, b = Path(tb_cfg.train.run_dir), Path(plain.run_dir)
    cmd = tracker.board_command([str(a), str(b)], port=7007)
    assert cmd[-4:] == ["--logdir_spec", f"{a}:{a / 'tb'},{b}:{b / 'tb'}", "--port", "7007"]
    assert events(b / "tb")[0] == expected_from_jsonl(b)  # the replay holds metrics.jsonl exactly
    assert main(["board", str(tmp_path / "nothing-here")]) == 1
    assert "neither TensorBoard events (tb/) nor metrics.jsonl" in capsys.readouterr().err

"""tinylm sweep: cells are ordinary runs; a killed sweep resumes without redoing finished cells."""

import csv
import dataclasses
import json

import pytest

from tinylm.config import PretrainConfig
from tinylm.experiments import sweep
from tinylm.stages import pretrain


def spec_for(tiny_model_cfg, tiny_train_cfg, **kw):
    base = PretrainConfig(tiny_model_cfg, dataclasses.replace(tiny_train_cfg, save_every=4, max_steps=8))
    return sweep.SweepSpec(name="t", base=base, val_windows=16, **kw)


def test_isoflop_cells_get_steps_from_the_budget_and_tiny_ones_are_skipped(tiny_model_cfg, tiny_train_cfg):
    from tinylm.model import flops_per_token

    spec = spec_for(tiny_model_cfg, tiny_train_cfg, sizes=[(1, 16), (2, 32)], budgets=[2e8, 1e9], head_dim=8)
    cells = sweep.plan_cells(spec, vocab_size=tiny_model_cfg.vocab_size)
    assert [c.id for c in cells] == ["L1-d16_C2e8_s1337", "L2-d32_C2e8_s1337",
                                     "L1-d16_C1e9_s1337", "L2-d32_C1e9_s1337"]
    for c in cells:
        if c.skip:
            continue
        per_step = flops_per_token(c.cfg.model) * c.cfg.train.total_batch_tokens
        assert c.cfg.train.max_steps == round(c.budget / per_step)
        assert c.cfg.model.n_head == c.cfg.model.n_embd // 8
    assert cells[1].skip  # 2e8 FLOPs is < 10 steps of the bigger model


def test_killed_sweep_resumes_and_skips_finished_cells(tiny_model_cfg, tiny_train_cfg, tmp_path, monkeypatch):
    spec = spec_for(tiny_model_cfg, tiny_train_cfg, grid={"model.pos_emb": ["rope", "learned"]}, seeds=[1, 2])
    clean = sweep.run(spec, tmp_path / "clean", command="test")

    real_build = pretrain.build

    def build_then_die_in_third_cell(cfg):
        trainer = real_build(cfg)
        if cfg.train.run_dir.endswith("pos_emb=learned_s1"):
            def die(step):
                if step == 6:  # after the checkpoint at step 4
                    raise KeyboardInterrupt
            trainer.on_step = die
        return trainer

    monkeypatch.setattr(pretrain, "build", build_then_die_in_third_cell)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(spec, tmp_path / "cut", command="test")
    monkeypatch.setattr(pretrain, "build", real_build)
    finished = json.loads((tmp_path / "cut" / "sweep.json").read_text())["rows"]
    assert [r["cell"] for r in finished] == ["pos_emb=rope_s1", "pos_emb=rope_s2"]

    started = []
    table = sweep.run(spec, tmp_path / "cut", command="test", on_cell=lambda c: started.append(c.id))
    assert started == ["pos_emb=learned_s1", "pos_emb=learned_s2"]  # finished cells are not redone
    metrics = (tmp_path / "cut" / "cells" / "pos_emb=learned_s1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["step"] for m in metrics] == list(range(1, 9))  # one history, resumed at step 4
    # the resumed cell is bit-identical to the uninterrupted sweep's
    assert [r["val_bpb"] for r in table["rows"]] == [r["val_bpb"] for r in clean["rows"]]
    row = table["rows"][2]
    assert row["model.pos_emb"] == "learned" and row["steps"] == 8 and row["tokens"] == 8 * 128
    assert row["flops"] == row["tokens"] * row["flops_per_token"]
    assert row["params"] > row["params_non_embedding"] > row["params_matrices"] > 0
    with open(tmp_path / "cut" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[2]["model.pos_emb"] == "learned" and float(rows[2]["val_bpb"]) == row["val_bpb"]

    # a sweep may gain seeds later (finished cells kept), but not a different base config
    more = dataclasses.replace(spec, seeds=[1, 2, 3])
    started.clear()
    sweep.run(more, tmp_path / "cut", command="test", on_cell=lambda c: started.append(c.id))
    assert started == ["pos_emb=rope_s3", "pos_emb=learned_s3"]
    other = dataclasses.replace(spec, base=dataclasses.replace(spec.base, train=dataclasses.replace(spec.base.train, lr=1e-2)))
    with pytest.raises(sweep.SweepError, match="holds a different sweep"):
        sweep.run(other, tmp_path / "cut", command="test")


def test_bad_sweep_input_is_one_clear_error(tiny_model_cfg, tiny_train_cfg, tmp_path):
    with pytest.raises(sweep.SweepError, match="unknown field 'model.n_embed'"):
        sweep.parse_grid(["model.n_embed=64,128"])
    with pytest.raises(sweep.SweepError, match="not LAYERSxWIDTH"):
        sweep.parse_sizes("4x128,big")
    spec = spec_for(tiny_model_cfg, tiny_train_cfg, grid={"model.mlp": ["swiglu", "relu"]})
    with pytest.raises(sweep.SweepError, match="model.mlp='relu'"):
        sweep.plan_cells(spec, vocab_size=100)
    (tmp_path / "bad.json").write_text('{"rows": 3}')
    with pytest.raises(sweep.SweepError, match="not a sweep table"):
        sweep.read_table(tmp_path / "bad.json")


def test_cli_sweep_error_is_one_line(capsys, prepared, tmp_path):
    from tinylm.cli import main

    rc = main(["sweep", "--out", str(tmp_path / "s"), "--train.data", str(prepared), "--grid", "train.lrr=1,2"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "unknown field 'train.lrr'" in err


def test_ablation_variants_are_paired_with_the_baseline_by_seed(tiny_model_cfg, tiny_train_cfg, tmp_path):
    spec = spec_for(tiny_model_cfg, tiny_train_cfg, seeds=[1, 2],
                    variants=sweep.parse_variants(["untied:model.tie_embeddings=false", "muon:train.optimizer=muon"]))
    spec.base = dataclasses.replace(spec.base, train=dataclasses.replace(spec.base.train, max_steps=4))
    table = sweep.run(spec, tmp_path / "abl", command="test")
    assert [r["cell"] for r in table["rows"]] == ["baseline_s1", "untied_s1", "muon_s1", "baseline_s2", "untied_s2", "muon_s2"]
    by = {r["cell"]: r for r in table["rows"]}
    assert by["muon_s1"]["config"]["train"]["optimizer"] == "muon" and by["untied_s2"]["params"] > by["baseline_s2"]["params"]
    ab = table["ablation"]["untied"]
    deltas = [by["untied_s1"]["val_bpb"] - by["baseline_s1"]["val_bpb"], by["untied_s2"]["val_bpb"] - by["baseline_s2"]["val_bpb"]]
    assert ab["n_paired"] == 2 and ab["delta_mean"] == pytest.approx(sum(deltas) / 2)
    assert ab["delta_std"] == pytest.approx(abs(deltas[0] - deltas[1]) / 2 ** 0.5)
    assert table["ablation"]["baseline"]["delta_mean"] == 0
    with pytest.raises(sweep.SweepError, match="unknown field 'train.optimiser'"):
        sweep.parse_variants(["muon:train.optimiser=muon"])


def test_ablation_table_formats_deltas_with_spread():
    table = {"ablation": {"baseline": {"n_seeds": 2, "val_bpb_mean": 2.5, "val_bpb_std": 0.01, "delta_mean": 0.0,
                                       "delta_std": 0.0, "n_paired": 2, "wall_s_mean": 10.0},
                          "muon": {"n_seeds": 2, "val_bpb_mean": 2.4, "val_bpb_std": 0.02, "delta_mean": -0.1,
                                   "delta_std": 0.005, "n_paired": 2, "wall_s_mean": 12.0}}}
    text = sweep.format_ablation(table)
    assert "| muon | 2 | 2.4000 ± 0.0200 | -0.1000 ± 0.0050 | 12.0 |" in text


def test_equal_wallclock_gives_each_variant_the_steps_its_throughput_buys(tiny_model_cfg, tiny_train_cfg, tmp_path):
    """Baseline 8 steps at 1000 tok/s; a variant half as fast gets 4 steps, one with twice the tokens
    per step at the same speed gets 4, a faster one 12. The measurement is cached: resuming in
    another sitting plans the same steps without measuring again."""
    spec = spec_for(tiny_model_cfg, tiny_train_cfg, seeds=[1, 2], match="wallclock",
                    variants=sweep.parse_variants(["slow:model.mlp=gelu", "big:train.total_batch_tokens=256",
                                                   "fast:model.tie_embeddings=false"]))
    speeds = {"swiglu": 1000.0, "gelu": 500.0}
    calls = []

    def measure(cfg):
        calls.append(cfg)
        return 1500.0 if not cfg.model.tie_embeddings else speeds[cfg.model.mlp]

    cells = sweep.plan_cells(spec, tiny_model_cfg.vocab_size)
    tmp_path.mkdir(exist_ok=True)
    plan = sweep.match_wallclock(cells, tmp_path, measure)
    assert spec.base.train.total_batch_tokens == 128
    assert {k: v["steps"] for k, v in plan.items()} == {"baseline": 8, "slow": 4, "big": 4, "fast": 12}
    assert len(calls) == 4  # once per variant, not per seed
    assert all(c.extra["match"] == "wallclock" for c in cells)
    again = sweep.plan_cells(spec, tiny_model_cfg.vocab_size)
    assert sweep.match_wallclock(again, tmp_path, lambda cfg: pytest.fail("measured again")) == plan
    with pytest.raises(sweep.SweepError, match="baseline"):
        sweep.match_wallclock([c for c in cells if c.variant != "baseline"], tmp_path, measure)


def test_sweep_spec_from_before_match_resumes(tiny_model_cfg, tiny_train_cfg, tmp_path):
    spec = spec_for(tiny_model_cfg, tiny_train_cfg)
    spec.base = dataclasses.replace(spec.base, train=dataclasses.replace(spec.base.train, max_steps=2))
    sweep.run(spec, tmp_path / "s", command="test")
    old = json.loads((tmp_path / "s" / "sweep_spec.json").read_text())
    del old["match"]
    (tmp_path / "s" / "sweep_spec.json").write_text(json.dumps(old))
    assert len(sweep.run(spec, tmp_path / "s", command="test")["rows"]) == 1


def test_two_workers_share_a_sweep_and_a_dead_workers_claim_is_free(tiny_model_cfg, tiny_train_cfg, tmp_path, capsys):
    """A cell another process holds is left to it (not trained twice); the table lists what is finished;
    the holder's exit frees the claim, and a lock left by a killed process never blocks."""
    import subprocess
    import sys

    spec = spec_for(tiny_model_cfg, tiny_train_cfg, grid={"model.pos_emb": ["rope", "learned"]})
    spec.base = dataclasses.replace(spec.base, train=dataclasses.replace(spec.base.train, max_steps=2))
    out = tmp_path / "shared"
    held = out / "cells" / "pos_emb=rope_s1337.lock"
    started = []
    with sweep.claim(held) as mine:  # "another worker" training the first cell
        assert mine
        table = sweep.run(spec, out, command="test", on_cell=lambda c: started.append(c.id))
    assert started == ["pos_emb=learned_s1337"]
    assert [r["cell"] for r in table["rows"]] == ["pos_emb=learned_s1337"]
    assert "1 cell(s) were being trained by another process (pos_emb=rope_s1337)" in capsys.readouterr().out
    started.clear()
    table = sweep.run(spec, out, command="test", on_cell=lambda c: started.append(c.id))
    assert started == ["pos_emb=rope_s1337"]
    assert [r["cell"] for r in table["rows"]] == ["pos_emb=rope_s1337", "pos_emb=learned_s1337"]  # cell order

    dead = tmp_path / "dead.lock"
    code = f"import fcntl, os; f = open({str(dead)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with sweep.claim(dead) as mine:
        assert mine


def test_a_grid_grows_elsewhere_from_a_copied_table(tiny_model_cfg, tiny_train_cfg, tmp_path):
    """--reuse: finished cells of a committed table are taken over (config equal, run_dir and data path
    aside), rows keep the hardware they ran on, a row with another config is retrained, and a
    malformed table is one clear error."""
    spec = spec_for(tiny_model_cfg, tiny_train_cfg, grid={"model.pos_emb": ["rope"]}, seeds=[1, 2])
    first = sweep.run(spec, tmp_path / "first", command="test")
    assert first["rows"][0]["hardware"]["cpu"]  # every row says which CPU trained it
    committed = json.loads(json.dumps(first))
    committed["rows"][1]["config"]["train"]["lr"] = 1e-2  # this row was made with another config
    committed["rows"][0]["config"]["train"]["run_dir"] = "/elsewhere/cells/x"  # another place on disk is fine
    committed["rows"][0]["hardware"] = {"cpu": "Old CPU"}
    (tmp_path / "committed.json").write_text(json.dumps(committed))

    grown = dataclasses.replace(spec, grid={"model.pos_emb": ["rope", "learned"]})
    started = []
    table = sweep.run(grown, tmp_path / "second", command="test", reuse=str(tmp_path / "committed.json"),
                      on_cell=lambda c: started.append(c.id))
    assert started == ["pos_emb=rope_s2", "pos_emb=learned_s1", "pos_emb=learned_s2"]
    rows = {r["cell"]: r for r in table["rows"]}
    assert rows["pos_emb=rope_s1"]["hardware"] == {"cpu": "Old CPU"}
    assert rows["pos_emb=rope_s1"]["val_bpb"] == first["rows"][0]["val_bpb"]
    assert rows["pos_emb=rope_s1"]["reused_from"].endswith("committed.json")
    assert rows["pos_emb=rope_s2"]["val_bpb"] == first["rows"][1]["val_bpb"]  # retrained, same config -> same result
    assert "reused_from" not in rows["pos_emb=rope_s2"]

    (tmp_path / "broken.json").write_text('{"rows": 3')
    with pytest.raises(sweep.SweepError, match="--reuse .*broken.json: not a sweep table"):
        sweep.run(grown, tmp_path / "third", command="test", reuse=str(tmp_path / "broken.json"))
    with pytest.raises(sweep.SweepError, match="--reuse .*absent.json: no such file"):
        sweep.run(grown, tmp_path / "third", command="test", reuse=str(tmp_path / "absent.json"))

"""Alignment stages on a tiny SFT model: each trains a few steps through the one Trainer, moves its
own metric the right way, and resumes bitwise after a kill; bad checkpoints are refused clearly."""

import dataclasses
import json
import math

import pytest
import torch

from tinylm.config import (DPOConfig, GRPOConfig, ModelConfig, PPOConfig, PretrainConfig, RFTConfig, RMConfig, RolloutConfig,
                           SamplingConfig, SFTConfig, TrainConfig, to_dict)
from tinylm.model import GPT
from tinylm.stages import dpo, grpo, ppo, pretrain, rft, rm, sft
from tinylm.tasks import TASKS
from tinylm.tasks.instructions import Instructions
from tinylm.train.checkpoint import load_model, save_checkpoint

TASK = "instructions-tiny"


@pytest.fixture(scope="module")
def sft_run(corpus_dir, prepared, tokenizer, tmp_path_factory):
    """A tiny base model (context 256) instruction-tuned on checkable instructions from the tiny corpus."""
    TASKS[TASK] = lambda seed: Instructions((str(corpus_dir / "train.txt"),), seed=seed, heldout_percent=20)
    d = tmp_path_factory.mktemp("align")
    mc = ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=256, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    base = TrainConfig(run_dir=str(d / "base"), data=str(prepared), device="cpu", dtype="fp32", batch_size=4,
                       total_batch_tokens=4 * 256, max_steps=40, warmup_steps=3, eval_every=0, sample_every=0, save_every=40)
    pretrain.run(PretrainConfig(mc, base))
    st = TrainConfig(run_dir=str(d / "sft"), device="cpu", dtype="fp32", batch_size=8, total_batch_tokens=8 * 256,
                     max_steps=100, warmup_steps=3, lr=3e-3, eval_every=0, sample_every=0, save_every=100)
    sft.run(SFTConfig(checkpoint=str(d / "base"), mixture=TASK, val_examples=8, train=st))
    yield d / "sft"
    TASKS.pop(TASK, None)


def _train(run_dir, steps=6, **kw):
    return TrainConfig(run_dir=str(run_dir), device="cpu", dtype="fp32", max_steps=steps, warmup_steps=1, lr=1e-3,
                       weight_decay=0.0, log_every=1, eval_every=0, sample_every=0, save_every=2, keep_last=10, **kw)


SAMPLING = SamplingConfig(prompts=24, samples=4, max_new_tokens=60)
ROLLOUT = RolloutConfig(prompts=2, group_size=4, minibatches=2, epochs=2, max_new_tokens=40)


def configs(sft_run, tmp, steps=6):
    """One small config per method, keyed by stage module."""
    ck = str(sft_run)
    return {
        "rft": (rft, RFTConfig(checkpoint=ck, task=TASK, min_score=0.0, eval_prompts=0, sampling=SAMPLING,
                               train=_train(tmp / "rft", steps, batch_size=2, total_batch_tokens=512))),
        "dpo": (dpo, DPOConfig(checkpoint=ck, task=TASK, eval_prompts=0, sampling=SAMPLING,
                               train=_train(tmp / "dpo", steps, batch_size=2, total_batch_tokens=512))),
        "dpo-online": (dpo, DPOConfig(checkpoint=ck, task=TASK, eval_prompts=0, sampling=SAMPLING, ref_logprobs="online",
                                      train=_train(tmp / "dpo-online", steps, batch_size=2, total_batch_tokens=512))),
        "rm": (rm, RMConfig(checkpoint=ck, pairs="on-policy", task=TASK, heldout_percent=25, sampling=SAMPLING,
                            train=_train(tmp / "rm", steps, batch_size=2, total_batch_tokens=512))),
        "grpo": (grpo, GRPOConfig(checkpoint=ck, task=TASK, eval_prompts=0, dead_estimate_prompts=4, rollout=ROLLOUT,
                                  train=_train(tmp / "grpo", steps))),
        "ppo": (ppo, PPOConfig(checkpoint=ck, task=TASK, eval_prompts=0, rollout=ROLLOUT, train=_train(tmp / "ppo", steps))),
    }


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rft", "dpo", "dpo-online", "rm", "grpo", "ppo"])
def test_kill_and_resume_is_bitwise(method, sft_run, tmp_path):
    stage, cfg = configs(sft_run, tmp_path / "full")[method]
    stage.run(cfg)
    stage_, cut = configs(sft_run, tmp_path / "cut")[method]
    built = stage_.build(cut)
    trainer = built[0]

    def die(step):
        if step == 3:  # after the checkpoint at step 2; for GRPO/PPO in the middle of a rollout's minibatches
            raise KeyboardInterrupt

    trainer.on_step = die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    stage_.run(cut, resume=True)
    full, resumed = rows(tmp_path / "full" / method), rows(tmp_path / "cut" / method)
    assert [r["loss"] for r in full] == [r["loss"] for r in resumed]  # floats compared exactly
    assert len(full) == 6
    if method in ("grpo", "ppo"):
        assert [r["reward"] for r in full] == [r["reward"] for r in resumed]
    a = load_model(tmp_path / "full" / method)[0] if method != "rm" else None
    if a is not None:
        b = load_model(tmp_path / "cut" / method)[0]
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_dpo_starts_at_log2_and_its_reward_margin_grows(sft_run, tmp_path):
    _, cfg = configs(sft_run, tmp_path, steps=12)["dpo"]
    # batches of 8 pairs from ~20: every pair is seen several times in 12 steps
    cfg = dataclasses.replace(cfg, beta=0.5, nll_weight=0.0, train=dataclasses.replace(cfg.train, lr=1e-4, warmup_steps=1, batch_size=8,
                                                                        total_batch_tokens=8 * 256))
    dpo.run(cfg)
    r = rows(tmp_path / "dpo")
    assert r[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    assert sum(x["loss"] for x in r[-4:]) / 4 < math.log(2) - 0.05
    assert sum(x["reward_margin"] for x in r[-4:]) / 4 > 0.1


@torch.no_grad()
def _bradley_terry_on(model, loader):
    """Mean -log sigma(r_c - r_r) and accuracy over every pair of `loader` (not a noisy 2-pair step)."""
    from tinylm.train.align import last_token_index
    margins = []
    for _, (x, y, _) in loader.all_batches(16):
        r = model(x, heads="score")[torch.arange(x.size(0)), last_token_index(y)]
        margins.append(r[: x.size(0) // 2] - r[x.size(0) // 2:])
    m = torch.cat(margins)
    return torch.nn.functional.softplus(-m).mean().item(), (m > 0).float().mean().item()


def test_reward_model_learns_its_training_pairs(sft_run, tmp_path):
    _, cfg = configs(sft_run, tmp_path, steps=40)["rm"]
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=3e-3, batch_size=4, total_batch_tokens=4 * 256))
    trainer, data, _ = rm.build(cfg)
    loader = trainer.train_data
    loss0, _ = _bradley_terry_on(trainer.model, loader)
    assert loss0 == pytest.approx(math.log(2), abs=0.05)  # the score head starts near zero: r_c ~ r_r
    trainer.fit()
    loss1, acc1 = _bradley_terry_on(trainer.model, loader)
    assert loss1 < 0.7 * loss0 and acc1 >= 0.8, (loss0, loss1, acc1)
    r = rows(tmp_path / "rm")
    assert {"loss", "accuracy"} <= set(r[-1]) and len(r) == 40
    summary = rm.run(cfg, resume=True)
    acc = summary["heldout_accuracy"]["on-policy"]
    assert acc["n"] > 0 and acc["chance"] == 0.5 and 0 <= acc["accuracy"] <= 1


def test_grpo_and_ppo_improve_their_surrogate_on_each_rollout(sft_run, tmp_path):
    """Several epochs over one rollout: the clipped surrogate loss falls (GRPO), and PPO's policy
    and value losses fall, while the ratio moves (clipping statistics logged)."""
    roll = RolloutConfig(prompts=4, group_size=8, minibatches=1, epochs=8, max_new_tokens=40, kinds="max_sentences,title")
    _, g = configs(sft_run, tmp_path)["grpo"]
    grpo.run(dataclasses.replace(g, rollout=roll, train=dataclasses.replace(g.train, max_steps=8, lr=3e-3)))
    r = rows(tmp_path / "grpo")
    assert r[0]["dead_group_frac"] < 1  # some group carries signal
    assert r[0]["loss"] == pytest.approx(0.0, abs=1e-6)  # ratio 1 and zero-mean advantages: the surrogate starts at 0
    assert r[-1]["loss"] < -0.01 and r[-1]["kl_ref"] > 0
    _, p = configs(sft_run, tmp_path)["ppo"]
    ppo.run(dataclasses.replace(p, rollout=roll, train=dataclasses.replace(p.train, max_steps=8, lr=3e-3)))
    r = rows(tmp_path / "ppo")
    assert r[-1]["policy_loss"] < r[0]["policy_loss"] and r[-1]["value_loss"] < r[0]["value_loss"]
    assert r[-1]["approx_kl"] > 0 and {"clip_frac", "entropy", "reward", "no_end_frac"} <= set(r[-1])


def test_grpo_refuses_when_most_groups_would_be_dead(sft_run, tmp_path):
    _, g = configs(sft_run, tmp_path)["grpo"]
    with pytest.raises(ValueError, match="dead_groups.json"):
        grpo.build(dataclasses.replace(g, max_dead_fraction=0.0, rollout=dataclasses.replace(ROLLOUT, group_size=64)))
    est = json.loads((tmp_path / "grpo" / "dead_groups.json").read_text())
    assert est["group_size"] == 64 and set(est["per_kind"]) <= {"keywords", "continue", "ends_with", "max_sentences", "title"}


def test_reward_model_checkpoint_is_refused_as_policy_and_as_sample_source(sft_run, tmp_path):
    _, cfg = configs(sft_run, tmp_path, steps=2)["rm"]
    rm.run(cfg)
    with pytest.raises(ValueError, match="reward model"):
        load_model(tmp_path / "rm")
    _, d = configs(sft_run, tmp_path)["dpo"]
    with pytest.raises(ValueError, match="reward model"):
        dpo.build(dataclasses.replace(d, checkpoint=str(tmp_path / "rm")))
    _, p = configs(sft_run, tmp_path)["ppo"]
    with pytest.raises(ValueError, match="not a reward model"):
        ppo.build(dataclasses.replace(p, reward="rm", reward_model=str(sft_run)))


def test_reference_with_other_architecture_or_tokenizer_is_refused(sft_run, tokenizer, corpus_dir, tmp_path):
    from tinylm.data.sources import resolve
    from tinylm.tokenizer import train_tokenizer
    from tinylm.train.checkpoint import read_meta, find_checkpoint

    meta = read_meta(find_checkpoint(sft_run))
    cfg = ModelConfig(**meta["config"]["model"])
    other = dataclasses.replace(cfg, n_layer=1)
    save_checkpoint(tmp_path / "arch", 1, GPT(other), meta={"stage": "sft", "config": {"model": to_dict(other)},
                                                            "tokenizer_sha256": tokenizer.sha256}, tokenizer_path=tokenizer.path)
    tok2 = train_tokenizer(resolve(str(corpus_dir / "train.txt")).documents(), 300, tmp_path / "tok2.json")
    cfg2 = dataclasses.replace(cfg, vocab_size=tok2.vocab_size)
    save_checkpoint(tmp_path / "tok", 1, GPT(cfg2), meta={"stage": "sft", "config": {"model": to_dict(cfg2)},
                                                          "tokenizer_sha256": tok2.sha256}, tokenizer_path=tok2.path)
    _, g = configs(sft_run, tmp_path)["grpo"]
    with pytest.raises(ValueError, match="another architecture.*n_layer"):
        grpo.build(dataclasses.replace(g, reference=str(tmp_path / "arch")))
    with pytest.raises(ValueError, match="another tokenizer"):
        grpo.build(dataclasses.replace(g, reference=str(tmp_path / "tok")))


def test_cli_alignment_error_is_one_line(sft_run, tmp_path, capsys):
    from tinylm.cli import main

    rc = main(["dpo", "--checkpoint", str(sft_run), "--pairs", str(tmp_path / "nope.jsonl"), "--train.run_dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown preference source" in err and "Traceback" not in err


def test_alignment_comparison_writes_every_metric(sft_run, tmp_path):
    from tinylm.eval.alignment import compare

    _, cfg = configs(sft_run, tmp_path, steps=2)["grpo"]
    grpo.run(cfg)
    out = compare(str(sft_run), {"grpo": str(tmp_path / "grpo")}, str(tmp_path / "alignment.json"), n=6, task=TASK,
                  kl_prompts=3, bpb_bytes=2000)
    saved = json.loads((tmp_path / "alignment.json").read_text())
    assert saved == json.loads(json.dumps(out)) and set(saved["methods"]) == {"sft", "grpo"}
    g = saved["methods"]["grpo"]
    assert g["greedy"]["n"] == 6 and 0 <= g["greedy"]["degenerate_rate"] <= 1 and g["sampled"]["by_kind"]
    assert g["kl_to_sft"]["n"] == 3 and saved["methods"]["sft"]["kl_to_sft"] is None
    assert g["run_summary"]["method"] == "grpo" and g["run_summary"]["load_average_1_5_15"]
    # --reuse keeps an entry evaluated at the same checkpoint; a model not named keeps its entry
    saved["methods"]["grpo"]["greedy"]["score"] = 123.0  # marker: reused entries are not re-evaluated
    (tmp_path / "alignment.json").write_text(json.dumps(saved))
    again = compare(str(sft_run), {}, str(tmp_path / "alignment.json"), n=6, task=TASK, kl_prompts=3, bpb_bytes=2000,
                    reuse=True)
    assert again["methods"]["grpo"]["greedy"]["score"] == 123.0 and again["methods"]["sft"] == saved["methods"]["sft"]

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.chat import render_conversation
from tinylm.config import PretrainConfig, SFTConfig, TrainConfig
from tinylm.data.sft_loader import ConversationLoader
from tinylm.model import GPT
from tinylm.stages import pretrain, sft
from tinylm.tasks.base import Example
from tinylm.train.objectives import IGNORE_INDEX, next_token_loss


def conv(u, a):
    return Example([{"role": "user", "content": u}, {"role": "assistant", "content": a}])


EXAMPLES = [conv(f"Tell me about the {t}.", f"The {t} is nice. I like the {t}.") for t in
            ["ball", "cat", "tree", "boat", "cake", "kite", "dog", "sun"] * 2]


def test_loader_targets_are_exactly_the_assistant_tokens(tokenizer):
    loader = ConversationLoader(tokenizer, EXAMPLES, 4, 64, shuffle=False)
    x, y = loader.next_batch()
    for i in range(4):
        ids, mask = render_conversation(tokenizer, EXAMPLES[i].messages)
        n = len(ids) - 1
        assert x[i, :n].tolist() == ids[:-1]
        expected = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        assert y[i, :n].tolist() == expected
        assert (y[i, n:] == IGNORE_INDEX).all()  # padding carries no loss
    assert x.size(1) % 16 == 0


def test_sft_loss_equals_hand_computation(tokenizer):
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(_tiny(tokenizer), seq_len=64))
    loader = ConversationLoader(tokenizer, EXAMPLES[:2], 2, 64, shuffle=False)
    x, y = loader.next_batch()
    loss, n = next_token_loss(model, (x, y))
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in EXAMPLES[:2]:  # by hand: each conversation alone, unpadded, only assistant positions
            ids, mask = render_conversation(tokenizer, ex.messages)
            logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
            for t in range(len(ids) - 1):
                if mask[t + 1]:
                    total -= logp[t, ids[t + 1]].item()
                    count += 1
    assert n.item() == count
    assert math.isclose(loss.item(), total / count, rel_tol=1e-5)


def test_too_long_conversations_are_dropped_and_counted(tokenizer):
    long = conv("x", "word " * 200)
    loader = ConversationLoader(tokenizer, EXAMPLES + [long], 4, 64)
    assert loader.dropped_too_long == 1 and len(loader.rows) == len(EXAMPLES)


def test_loader_position_restores_exactly(tokenizer):
    a = ConversationLoader(tokenizer, EXAMPLES, 2, 64, seed=5)
    for _ in range(5):
        a.next_batch()
    b = ConversationLoader(tokenizer, EXAMPLES, 2, 64, seed=5)
    b.load_state_dict(a.state_dict())
    for _ in range(7):  # across an epoch boundary (8 batches per epoch)
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _tiny(tokenizer):
    from tinylm.config import ModelConfig

    return ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


@pytest.fixture
def base_run(prepared, tokenizer, tmp_path):
    train = TrainConfig(run_dir=str(tmp_path / "base"), data=str(prepared), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=4 * 64, max_steps=30, warmup_steps=3, eval_every=0, sample_every=0,
                        save_every=30, log_every=5)
    pretrain.run(PretrainConfig(_tiny(tokenizer), train))
    return tmp_path / "base"


def _chat_file(tmp_path, n=120):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"It is {i + 1}."}]} for i in range(n)]
    p = tmp_path / "chat.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_sft_stage_trains_on_assistant_tokens_and_resumes(base_run, tmp_path):
    chat = _chat_file(tmp_path)
    train = TrainConfig(run_dir=str(tmp_path / "sft"), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=4 * 64, max_steps=40, warmup_steps=3, lr=3e-3, eval_every=20,
                        eval_batches=4, sample_every=0, save_every=20, log_every=1)
    cfg = SFTConfig(checkpoint=str(base_run), mixture=f"jsonl:{chat}", val_examples=8, train=train)
    summary = sft.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(vals) == 3 and vals[-1] < 0.7 * vals[0]
    assert summary["data"]["train_conversations"] > 100 and 0 <= summary["padding"]["padding_fraction"] < 0.5
    # the model config came from the base checkpoint; resuming a finished run is a no-op at step 40
    meta = json.loads(sorted((tmp_path / "sft" / "checkpoints").iterdir())[-1].joinpath("meta.json").read_text())
    assert meta["config"]["model"]["n_embd"] == 32 and meta["stage"] == "sft"
    trainer, _ = sft.build(dataclasses.replace(cfg, train=dataclasses.replace(train, max_steps=45)))
    trainer.fit(resume=True)
    assert trainer.step == 45


def test_model_overrides_are_applied_and_printed(base_run, capsys):
    cfg = sft.model_config_from(base_run / "checkpoints" / "step_000030", "rope_theta=20000")
    assert cfg.rope_theta == 20000.0
    assert "rope_theta = 10000.0 -> 20000.0" in capsys.readouterr().out


def test_resuming_a_finished_sft_run_keeps_its_summary(base_run, tmp_path, capsys):
    """A skipped stage (the pipeline run a second time) must not overwrite the artifacts of the run
    that did the work; a run resumed midway reports the padding of the whole run."""
    chat = _chat_file(tmp_path, n=40)
    train = TrainConfig(run_dir=str(tmp_path / "sft"), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=4 * 64, max_steps=6, warmup_steps=1, eval_every=0, sample_every=0,
                        save_every=3, log_every=1)
    cfg = SFTConfig(checkpoint=str(base_run), mixture=f"jsonl:{chat}", val_examples=4, heldout_percent=20, train=train)
    first = sft.run(cfg)
    start = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("training:"))
    # padded conversations: the start line states real tokens per step, not B x T, and no empty peak
    assert "real tokens" in start and "conversations averaging" in start and "TFLOP/s" not in start
    summary = (tmp_path / "sft" / "summary.json").read_text()
    assert first["padding"]["computed_positions"] > 0
    sft.run(cfg, resume=True)
    assert (tmp_path / "sft" / "summary.json").read_text() == summary
    # killed after step 3 and resumed: the padding counts are those of all 6 steps
    (tmp_path / "sft" / "summary.json").unlink()
    import shutil

    shutil.rmtree(tmp_path / "sft" / "checkpoints" / "step_000006")
    again = sft.run(cfg, resume=True)
    assert again["padding"] == first["padding"]


def test_sft_on_conversations_without_an_assistant_turn_says_so(base_run, tmp_path):
    p = tmp_path / "users.jsonl"
    p.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"}]}) + "\n" for i in range(40)))
    train = TrainConfig(run_dir=str(tmp_path / "sft"), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=4 * 64, max_steps=2, eval_every=0, sample_every=0)
    with pytest.raises(Exception, match="0 usable conversations of .* without an assistant turn"):
        sft.run(SFTConfig(checkpoint=str(base_run), mixture=f"jsonl:{p}", heldout_percent=20, train=train))


def test_small_jsonl_needs_and_gets_a_held_out_share_knob(base_run, tmp_path):
    chat = _chat_file(tmp_path, n=20)
    train = TrainConfig(run_dir=str(tmp_path / "sft"), device="cpu", dtype="fp32", batch_size=4,
                        total_batch_tokens=4 * 64, max_steps=2, eval_every=0, sample_every=0)
    cfg = SFTConfig(checkpoint=str(base_run), mixture=f"jsonl:{chat}", val_examples=4, train=train)
    with pytest.raises(ValueError, match="no test examples .*raise --heldout_percent"):
        sft.run(cfg)
    summary = sft.run(dataclasses.replace(cfg, heldout_percent=30))
    assert summary["data"]["val_conversations"] > 0 and summary["step"] == 2


UNEVEN = [conv(f"Tell me about the {t}.", " ".join([f"The {t} is nice."] * (1 + i % 5)))
          for i, t in enumerate(["ball", "cat", "tree", "boat", "cake", "kite", "dog", "sun"] * 2)]


def _step_grads(tokenizer, model, batch_size, tmp_path):
    """Loss and gradients of one optimizer step over the same 16 conversations in micro-batches of batch_size."""
    import copy

    from tinylm.runtime import Runtime
    from tinylm.train.loop import Trainer

    T = 128
    cfg = TrainConfig(run_dir=str(tmp_path / f"b{batch_size}"), device="cpu", dtype="fp32", batch_size=batch_size,
                      total_batch_tokens=16 * T, grad_clip=0.0)
    m = copy.deepcopy(model)
    trainer = Trainer(Runtime(torch.device("cpu"), torch.float32), cfg, m,
                      ConversationLoader(tokenizer, UNEVEN, batch_size, T, shuffle=False))
    assert trainer.accum == 16 // batch_size
    loss, _ = trainer.accumulate()
    return loss.item(), torch.cat([p.grad.flatten() for p in m.parameters()])


def test_grad_accumulation_weights_micro_batches_by_their_loss_tokens(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(_tiny(tokenizer), seq_len=128))
    one_loss, one = _step_grads(tokenizer, model, 16, tmp_path)
    two_loss, two = _step_grads(tokenizer, model, 8, tmp_path)
    # the mean over every assistant token of the 16 conversations, computed directly
    x, y = ConversationLoader(tokenizer, UNEVEN, 16, 128, shuffle=False).next_batch()
    with torch.no_grad():
        want = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX).item()
    assert one_loss == pytest.approx(want, rel=1e-5) and two_loss == pytest.approx(want, rel=1e-5)
    assert torch.allclose(one, two, rtol=1e-4, atol=1e-6), (one - two).abs().max()

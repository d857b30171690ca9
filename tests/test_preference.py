"""Alignment losses against hand computations, and preference data: formats and bad input."""

import gzip
import json
import math

import pytest
import torch

from tinylm.chat import end_id
from tinylm.data.preference import PairLoader, Pair, hh_pair, parse_hh_dialogue, read_hh_rlhf, read_jsonl_pairs
from tinylm.data.sources import DataError
from tinylm.tasks.base import Example
from tinylm.train.objectives import IGNORE_INDEX
from tinylm.train.preference import (bradley_terry_loss, dead_group_probability, dpo_loss, gae, grpo_advantages, grpo_loss,
                                     kl_estimators, ppo_policy_loss, ppo_value_loss, token_logprobs)
from tinylm.train.rollout import degenerate, estimate_dead_groups, onpolicy_pairs, reward


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_dpo_loss_matches_hand_computed():
    pc, pr, rc, rr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0]), torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -3.0])
    losses, rew_c, rew_r = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 0: (-3 + 3.5) - (-4 + 3) = 1.5; pair 1: (-5 + 4) - (-2 + 3) = -2
    assert losses.tolist() == pytest.approx([-math.log(sig(0.75)), -math.log(sig(-1.0))], abs=1e-6)
    assert rew_c.tolist() == pytest.approx([0.25, -0.5]) and rew_r.tolist() == pytest.approx([-0.5, 0.5])


def test_dpo_loss_is_log2_when_policy_equals_reference():
    lp = torch.randn(8)
    lr_ = torch.randn(8)
    losses, _, _ = dpo_loss(lp, lr_, lp.clone(), lr_.clone(), beta=0.1)
    assert torch.allclose(losses, torch.full((8,), math.log(2.0)))


def test_bradley_terry_loss_matches_hand_computed():
    loss, acc = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2, abs=1e-6)
    assert acc.item() == 0.5


def test_grpo_advantages_zero_variance_groups_give_zero_not_nan():
    r = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    adv, dead = grpo_advantages(r)
    assert torch.isfinite(adv).all()
    assert dead.tolist() == [True, False, True]
    assert adv[0].tolist() == [0.0] * 4 and adv[2].tolist() == [0.0] * 4
    assert adv[1].tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-3)  # mean 0.5, std 0.5


def test_ppo_clipping_matches_hand_values():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, stats = ppo_policy_loss(logp, old, adv, torch.ones(1, 3), clip=0.2)
    # min(1.5*1, 1.2*1) = 1.2; min(0.5*-1, 0.8*-1) = -0.8; min(1.1*2, 1.1*2) = 2.2
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.2) / 3, abs=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(2 / 3)
    # gradient flows only through the unclipped token
    logp = logp.clone().requires_grad_()
    ppo_policy_loss(logp, old, adv, torch.ones(1, 3), clip=0.2)[0].backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] == 0 and logp.grad[0, 2] != 0


def test_ppo_value_loss_takes_the_larger_of_clipped_and_unclipped():
    v, old, ret = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]])
    # unclipped (1 - 2)^2 = 1; clipped V = 0.2: (0.2 - 2)^2 = 3.24 -> 0.5 * 3.24
    assert ppo_value_loss(v, old, ret, torch.ones(1, 1), clip=0.2).item() == pytest.approx(1.62)


def test_gae_matches_hand_values():
    # one answer of 3 tokens after a masked prompt token; gamma 1, lambda 0.5
    rewards = torch.tensor([[0.0, 0.1, 0.0, 1.0]])
    values = torch.tensor([[9.0, 0.5, 0.4, 0.2]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d3 = 1.0 - 0.2            # last token: next value 0
    d2 = 0.0 + 0.2 - 0.4
    d1 = 0.1 + 0.4 - 0.5
    a3, a2 = d3, d2 + 0.5 * d3
    a1 = d1 + 0.5 * a2
    assert adv.tolist()[0] == pytest.approx([0.0, a1, a2, a3], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.0, a1 + 0.5, a2 + 0.4, a3 + 0.2], abs=1e-6)


def test_kl_estimators_hand_values_and_unbiasedness():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    k = kl_estimators(logp, ref)
    assert k["k1"].item() == pytest.approx(math.log(2))
    assert k["k2"].item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert k["k3"].item() == pytest.approx(0.5 - 1 + math.log(2))
    # Monte Carlo: E_pi[k1] = E_pi[k3] = KL(pi || ref) for categorical distributions
    g = torch.Generator().manual_seed(0)
    pi, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    kl = (pi * (pi / q).log()).sum().item()
    s = torch.multinomial(pi, 200_000, replacement=True, generator=g)
    est = kl_estimators(pi.log()[s], q.log()[s])
    assert est["k1"].mean().item() == pytest.approx(kl, abs=0.01)
    assert est["k3"].mean().item() == pytest.approx(kl, abs=0.01) and (est["k3"] >= 0).all()


def test_grpo_loss_gradient_raises_positive_advantage_answers():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), torch.tensor([1.0, -1.0]), mask, beta=0.04)
    loss.backward()
    assert (logp.grad[0, :2] < 0).all() and (logp.grad[1] > 0).all() and logp.grad[0, 2] == 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # ratio 1, advantages cancel, KL 0


def test_token_logprobs_ignore_masked_targets():
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    lp = token_logprobs(logits, torch.tensor([[1, IGNORE_INDEX]]))
    assert lp.tolist()[0] == pytest.approx([math.log(0.75), 0.0])


def test_dead_group_probability():
    assert dead_group_probability({0.0: 3, 1.0: 1}, 2) == pytest.approx(0.75**2 + 0.25**2)
    assert dead_group_probability({0.0: 5}, 8) == 1.0


# ---------------------------------------------------------------------------------------------
# Preference data


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_strict_jsonl_names_the_bad_line_and_lenient_counts(tmp_path):
    good = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}
    bad = ["{not json", {"prompt": "x", "chosen": "a"}, {"prompt": "x", "chosen": "same", "rejected": "same"},
           {"prompt": "x", "chosen": " ", "rejected": "b"}]
    p = _write(tmp_path / "p.jsonl", [good, *bad, {"messages": [{"role": "user", "content": "Q"}], "chosen": "A", "rejected": "B"}])
    with pytest.raises(DataError, match=r"p.jsonl:2: not valid JSON"):
        read_jsonl_pairs(p)
    pairs, skipped = read_jsonl_pairs(p, lenient=True)
    assert len(pairs) == 2 and skipped == 4
    with pytest.raises(DataError, match="identical"):
        read_jsonl_pairs(_write(tmp_path / "q.jsonl", [bad[2]]))
    with pytest.raises(DataError, match="empty"):
        read_jsonl_pairs(_write(tmp_path / "r.jsonl", [bad[3]]))


def test_hh_rlhf_dialogue_parsed_into_chat_turns():
    rec = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross?",
           "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: No."}
    p = hh_pair(rec)
    assert [m["role"] for m in p.prompt] == ["user", "assistant", "user"]
    assert p.prompt[-1]["content"] == "Tell me a joke." and p.chosen == "Why did the chicken cross?" and p.rejected == "No."
    assert parse_hh_dialogue("\n\nHuman: a\n\nAssistant: b") == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_local_hh_rlhf_test_split_reads(shared_data):
    pairs, skipped = read_hh_rlhf("helpful-base")
    assert len(pairs) > 2000 and skipped < 50
    assert all(p.prompt[-1]["role"] == "user" and p.chosen != p.rejected for p in pairs[:100])


def test_pair_loader_skips_and_counts_bad_pairs_and_masks_the_prompt(tokenizer):
    q = [{"role": "user", "content": "Tell a story."}]
    pairs = [Pair(q, "A cat sat.", "A dog ran."), Pair(q, "Same.", "Same."), Pair(q, "", "x"),
             Pair([{"role": "user", "content": "word " * 200}], "a", "b"),  # prompt fills the context: all prompt
             Pair(q, "long " * 200, "b")] + [Pair(q, f"Story {i}.", f"Bad {i}.") for i in range(3)]
    loader = PairLoader(tokenizer, pairs, 2, 64, seed=0)
    assert loader.skipped == {"identical": 1, "empty": 1, "prompt_fills_context": 1, "too_long": 1}
    x, y, ref = loader.next_batch()
    assert x.shape[0] == 4 and ref is None
    # targets exactly on the answer + <|end|>: the prompt ids never carry a target
    answers = {p.chosen for p in pairs} | {p.rejected for p in pairs}
    for row in range(4):
        t = y[row][y[row] != IGNORE_INDEX].tolist()
        assert t[-1] == end_id(tokenizer) and tokenizer.decode(t[:-1]) in answers
        first = int((y[row] != IGNORE_INDEX).nonzero()[0])
        assert x[row, first].item() == tokenizer.hf.token_to_id("<|assistant|>")  # the answer starts right after it
    with pytest.raises(DataError, match="usable preference pairs"):
        PairLoader(tokenizer, pairs[1:4], 2, 64)


# ---------------------------------------------------------------------------------------------
# Rewards, guard, on-policy pairs


def _ex(kind, constraints):
    return Example([{"role": "user", "content": "p"}, {"role": "assistant", "content": "ref"}], {"kind": kind, "constraints": constraints})


class _Checker:
    checkable = True

    def check(self, ex, text):
        from tinylm.tasks.instructions import check_constraints

        return check_constraints(ex.meta["constraints"], text)


def test_guard_flags_gamed_answers_and_zeroes_their_reward():
    kw = _ex("keywords", [{"type": "include_words", "words": ["ball", "happy", "garden"]}])
    assert degenerate(kw, "ball happy garden") == "too_short"
    assert degenerate(kw, "ball, happy, garden, ball, happy, garden, ball, happy") == "no_sentence"
    assert degenerate(kw, "Tom was happy in the garden. " * 4) == "repetitive"
    assert degenerate(kw, "Tom had a red ball. He was happy to play with it in the garden all day.") is None
    ends = _ex("ends_with", [{"type": "ends_with", "text": "They all went home."}])
    assert degenerate(ends, "And then, after a long day, they all went home.") == "pasted_end"
    assert degenerate(_ex("title", [{"type": "title"}]), "The Red Ball") is None
    r, score, why = reward(_Checker(), kw, "ball happy garden")
    assert score == 1.0 and r == 0.0 and why == "too_short"
    assert reward(_Checker(), kw, "ball happy garden", guard=False)[0] == 1.0


def test_nan_reward_is_refused():
    class NaNTask(_Checker):
        def check(self, ex, text):
            from tinylm.tasks.base import CheckResult

            return CheckResult(float("nan"), [])

    with pytest.raises(ValueError, match="non-finite reward"):
        reward(NaNTask(), _ex("title", [{"type": "title"}]), "A Title", guard=False)


def test_onpolicy_pairs_drop_and_count_ties():
    exs = [_ex("keywords", []), _ex("keywords", []), _ex("title", [])]

    def a(text, r, ended=True):
        return {"text": text, "reward": r, "score": r, "degenerate": None, "ended": ended}

    scored = [{"example": 0, "answers": [a("x", 0.5), a("y", 0.5)]},
              {"example": 1, "answers": [a("good", 1.0), a("mid", 0.5), a("bad", 0.0, ended=False)]},
              {"example": 2, "answers": [a("t", 0.0), a("u", 0.0, ended=False)]}]
    pairs, stats = onpolicy_pairs(exs, scored)
    assert stats["ties_dropped"] == 1 and stats["pairs"] == 2
    assert (pairs[0].chosen, pairs[0].rejected) == ("good", "bad") and pairs[0].meta["rejected_ended"] is False
    assert (pairs[1].chosen, pairs[1].rejected) == ("t", "u")  # same reward: the answer that stopped wins
    est = estimate_dead_groups(scored, exs, group_size=2)
    assert 0 < est["estimated_dead_fraction"] < 1 and set(est["per_kind"]) == {"keywords", "title"}


def test_gz_pairs_file_reads(tmp_path):
    p = tmp_path / "p.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}) + "\n")
    assert len(read_jsonl_pairs(p)[0]) == 1


def test_best_of_n_keeps_perfect_answers_and_with_min_gain_the_better_partial_ones():
    from tinylm.train.rollout import best_of_n

    exs = [_ex("keywords", []), _ex("title", []), _ex("ends_with", [])]

    def a(text, r, ended=True, degenerate=None):
        return {"text": text, "reward": r, "score": r, "degenerate": degenerate, "ended": ended}

    scored = [{"example": 0, "answers": [a("two words", 0.5), a("none", 0.0), a("one", 0.25), a("none2", 0.0)]},
              {"example": 1, "answers": [a("perfect", 1.0), a("long", 1.0, ended=False), a("half", 0.5)]},
              {"example": 2, "answers": [a("x", 0.0), a("y", 0.0)]}]
    kept, stats = best_of_n(exs, scored, min_score=1.0)
    assert [k.messages[-1]["content"] for k in kept] == ["perfect"] and stats["kept_below_min_score"] == 0
    # mean of prompt 0 is 0.1875: "two words" beats it by 0.31 >= 0.25; prompt 2 (all equal) gives nothing
    kept, stats = best_of_n(exs, scored, min_score=1.0, min_gain=0.25)
    assert [k.messages[-1]["content"] for k in kept] == ["two words", "perfect"]
    assert stats["kept_below_min_score"] == 1 and stats["kept_by_kind"] == {"keywords": 1, "title": 1}
    kept, _ = best_of_n(exs, scored, min_score=1.0, min_gain=0.4)
    assert [k.messages[-1]["content"] for k in kept] == ["perfect"]
    scored[0]["answers"][0]["degenerate"] = "repetitive"  # never kept, whatever its reward
    kept, _ = best_of_n(exs, scored, min_score=1.0, min_gain=0.05)
    assert [k.messages[-1]["content"] for k in kept] == ["one", "perfect"]


def test_best_of_n_repairs_only_prompts_with_nothing_kept_and_prefers_short_answers():
    from tinylm.train.rollout import best_of_n

    exs = [_ex("ends_with", []), _ex("title", []), _ex("ends_with", [])]

    def a(text, r, ended=True, degenerate=None):
        return {"text": text, "reward": r, "score": r, "degenerate": degenerate, "ended": ended}

    scored = [{"example": 0, "answers": [a("a long story. ends badly.", 0.0), a("short. bad.", 0.0),
                                         a("shortest", 0.0, ended=False)]},
              {"example": 1, "answers": [a("Title", 1.0)]},
              {"example": 2, "answers": [a("x", 0.0)]}]
    seen = []

    def repair(ex, text):
        seen.append(text)
        return None if text == "x" else text.replace("bad", "well")

    kept, stats = best_of_n(exs, scored, min_score=1.0, repair=repair)
    assert [k.messages[-1]["content"] for k in kept] == ["short. well.", "Title"]
    assert "shortest" not in seen and "Title" not in seen  # never-ended answers and kept prompts are not edited
    assert stats["repaired"] == 1 and stats["repaired_by_kind"] == {"ends_with": 1} and stats["kept"] == 2


def test_sampling_with_greedy_adds_the_greedy_answer_that_pairs_can_reject(tokenizer):
    """greedy=True: K sampled answers as before plus one greedy answer per prompt (the answer a greedy
    evaluation sees), marked; the sampled ones are unchanged by adding it."""
    from tinylm.config import ModelConfig
    from tinylm.model import GPT
    from tinylm.sample import generate
    from tinylm.chat import render_prompt
    from tinylm.train.rollout import sample_and_score

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=96, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)).eval()
    exs = [Example([{"role": "user", "content": f"Tell story {i}."}, {"role": "assistant", "content": "ref"}],
                   {"kind": "title", "constraints": [{"type": "title"}]}) for i in range(3)]
    plain = sample_and_score(model, tokenizer, _Checker(), exs, 3, 12, seed=1, guard=False, batch_prompts=2)
    both = sample_and_score(model, tokenizer, _Checker(), exs, 3, 12, seed=1, guard=False, batch_prompts=2, greedy=True)
    for p, b, ex in zip(plain, both, exs):
        assert [a["text"] for a in b["answers"][:3]] == [a["text"] for a in p["answers"]]
        assert [a["greedy"] for a in b["answers"]] == [False, False, False, True]
        want = list(generate(model, render_prompt(tokenizer, ex.prompt), 12, temperature=0, stop_ids=(end_id(tokenizer),)))
        want = want[:-1] if want and want[-1] == end_id(tokenizer) else want
        assert b["answers"][3]["text"] == tokenizer.decode(want)


def test_dpo_objective_with_nll_weight_adds_the_chosen_answers_nll_per_token():
    """RPO: at policy == reference the DPO part is log 2, so the loss is log 2 + w * NLL(chosen)/token."""
    from tinylm.config import ModelConfig
    from tinylm.model import GPT
    from tinylm.train.align import make_dpo_objective, sequence_logprobs

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, seq_len=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=16))
    x = torch.randint(0, 50, (4, 10))
    y = x.roll(-1, 1).clone()
    y[:, :4] = IGNORE_INDEX  # prompt positions
    y[1, 8:] = IGNORE_INDEX  # a shorter chosen answer
    with torch.no_grad():
        ref = sequence_logprobs(model, x, y)
    plain, _, s0 = make_dpo_objective(0.1)(model, (x, y, ref))
    loss, _, s1 = make_dpo_objective(0.1, nll_weight=0.2)(model, (x, y, ref))
    nll = -ref[:2].sum() / (y[:2] != IGNORE_INDEX).sum()
    assert float(plain) == pytest.approx(math.log(2), abs=1e-6) and "nll_chosen" not in s0
    assert float(loss) == pytest.approx(math.log(2) + 0.2 * float(nll), abs=1e-5)
    assert float(s1["nll_chosen"]) == pytest.approx(float(nll), abs=1e-5)

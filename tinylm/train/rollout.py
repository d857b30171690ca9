"""On-policy data for alignment: sampling answers from the policy and scoring them.

    reward / degenerate    the checker's score as a reward, with a reward-hacking guard
    sample_and_score       K answers per training prompt (for on-policy DPO pairs and best-of-n)
    onpolicy_pairs         best vs worst answer of each prompt; ties counted and dropped
    best_of_n              each prompt's best answer as an SFT conversation (rejection sampling)
    estimate_dead_groups   P(a GRPO group is all-equal) from per-kind reward distributions
    RolloutSource          the batch source of GRPO and PPO: a rollout buffer served as minibatches

Every sampler draws from its own torch.Generator seeded by (seed, rollout, rank), never from the
global RNG, so a killed and resumed run samples exactly what the uninterrupted run sampled; the
rollout buffer in progress is part of the source's saved state.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import torch

from tinylm.chat import end_id, render_prompt
from tinylm.data.preference import Pair, collate_responses
from tinylm.sample import sample_groups
from tinylm.tasks.base import Example
from tinylm.tasks.instructions import _WORD, STOPWORDS, sentences
from tinylm.train.objectives import IGNORE_INDEX
from tinylm.train.preference import gae, grpo_advantages, token_logprobs, whiten

# ---------------------------------------------------------------------------------------------
# Rewards and the reward-hacking guard


def degenerate(example: Example, response: str) -> str | None:
    """Why a response games the checker instead of answering, or None. The checker rewards
    keywords, an end sentence and a sentence count; these are the cheap ways to collect them:

        empty / too_short   no answer, or under 8 words (a title may be short)
        no_sentence         no sentence of 4+ words with a function word: a bare list of keywords
        pasted_end          an ends_with answer that is the end sentence alone
        repetitive          a 4-word sequence repeated 3+ times, or under 30% distinct words
    """
    kind = example.meta.get("kind")
    words = [w.lower() for w in _WORD.findall(response)]
    if not words:
        return "empty"
    if kind == "title":
        return None
    if len(words) < 8:
        return "too_short"
    sents = sentences(response)
    # a sentence has 4+ words and function words ("the", "was", "she"): a list of keywords has none
    if not any(len(ws) >= 4 and any(w.lower() in STOPWORDS for w in ws) for ws in map(_WORD.findall, sents)):
        return "no_sentence"
    if kind == "ends_with" and len(sents) < 2:
        return "pasted_end"
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if grams and max(grams.values()) >= 3:
        return "repetitive"
    if len(words) >= 20 and len(set(words)) / len(words) < 0.3:
        return "repetitive"
    return None


def reward(task, example: Example, response: str, guard: bool = True) -> tuple[float, float, str | None]:
    """(reward, checker score, degenerate reason). With the guard a degenerate answer earns 0."""
    score = task.check(example, response).score
    why = degenerate(example, response)
    r = 0.0 if (guard and why) else score
    if not np.isfinite(r):
        raise ValueError(f"non-finite reward {r!r} for a {example.meta.get('kind')} answer")
    return r, score, why


def filter_kinds(examples: list[Example], kinds: str) -> list[Example]:
    if not kinds:
        return examples
    want = {k.strip() for k in kinds.split(",") if k.strip()}
    out = [e for e in examples if e.meta.get("kind") in want]
    if not out:
        raise ValueError(f"no examples of kinds {sorted(want)}")
    return out


def fitting_prompts(tok, examples: list[Example], seq_len: int, room: int = 16) -> tuple[list[Example], int]:
    """Examples whose rendered prompt leaves at least `room` tokens for the answer; (kept, dropped)."""
    kept = [e for e in examples if len(render_prompt(tok, e.prompt)) <= seq_len - room]
    return kept, len(examples) - len(kept)


# ---------------------------------------------------------------------------------------------
# Sampling K answers per prompt: on-policy pairs and best-of-n


@torch.no_grad()
def sample_and_score(model, tok, task, examples: list[Example], k: int, max_new_tokens: int, temperature: float = 1.0,
                     top_k: int = 0, seed: int = 0, guard: bool = True, compile: bool = False, progress=None,
                     batch_prompts: int = 8, greedy: bool = False) -> list[dict]:
    """K answers per example: [{"example": i, "answers": [{"text", "reward", "score", "degenerate", "ended",
    "greedy"}]}]. `batch_prompts` prompts are decoded together (sample_groups); example i's answers
    come from its own generator (seed * 1_000_003 + i), so they do not depend on the batching.
    greedy=True adds a (K+1)-th answer per example, decoded greedily ("greedy": true): the answer a
    greedy evaluation will see, so that preference pairs can rank it (a small model's greedy answer
    often loops without ever ending, where its sampled answers end)."""
    stop = end_id(tok)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(examples), batch_prompts):
        chunk = range(start, min(start + batch_prompts, len(examples)))
        prompts = [render_prompt(tok, examples[i].prompt) for i in chunk]
        gens = [torch.Generator(device=device).manual_seed(seed * 1_000_003 + i) for i in chunk]
        groups = sample_groups(model, prompts, k, max_new_tokens, stop, temperature, top_k, gens, compile)
        if greedy:
            modes = sample_groups(model, prompts, 1, max_new_tokens, stop, 0.0, 0, None, compile)
            groups = [g + m for g, m in zip(groups, modes)]
        for i, group in zip(chunk, groups):
            answers = []
            for j, toks in enumerate(group):
                ended = bool(toks) and toks[-1] == stop
                text = tok.decode(toks[:-1] if ended else toks)
                r, s, why = reward(task, examples[i], text, guard)
                answers.append({"text": text, "reward": r, "score": s, "degenerate": why, "ended": ended, "greedy": j == k})
            out.append({"example": i, "answers": answers})
        if progress is not None:
            progress(chunk[-1] + 1, len(examples))
    return out


def onpolicy_pairs(examples: list[Example], scored: list[dict]) -> tuple[list[Pair], dict]:
    """Chosen = a prompt's highest-reward answer, rejected = its lowest; prompts whose answers all
    tie carry no preference and are dropped (counted). Answers without <|end|> rank below any
    answer with the same reward (the preference then teaches the model to stop)."""
    pairs, stats = [], {"prompts": len(scored), "ties_dropped": 0, "identical_dropped": 0, "pairs": 0}
    for row in scored:
        ex = examples[row["example"]]
        ranked = sorted(row["answers"], key=lambda a: (a["reward"], a["ended"]), reverse=True)
        best, worst = ranked[0], ranked[-1]
        if (best["reward"], best["ended"]) == (worst["reward"], worst["ended"]):
            stats["ties_dropped"] += 1
            continue
        if best["text"] == worst["text"] or not best["text"].strip() or not worst["text"].strip():
            stats["identical_dropped"] += 1
            continue
        pairs.append(Pair(ex.prompt, best["text"], worst["text"],
                          {"kind": ex.meta.get("kind"), "chosen_reward": best["reward"], "rejected_reward": worst["reward"],
                           "chosen_ended": best["ended"], "rejected_ended": worst["ended"]}))
    stats["pairs"] = len(pairs)
    return pairs, stats


def best_of_n(examples: list[Example], scored: list[dict], min_score: float, min_gain: float = 0.0,
              repair=None) -> tuple[list[Example], dict]:
    """Each prompt's best answer that ended with <|end|>, is not degenerate and scores at least
    `min_score`, as an SFT conversation (rejection-sampling fine-tuning, Llama 2 §3.2.3).

    min_gain > 0 also keeps a best answer below `min_score` when its reward beats the mean reward
    of its prompt's n answers by at least `min_gain` (a positive-advantage filter, as in filtered
    behaviour cloning and ReST, Gulcehre et al. 2023): where no answer is perfect (three given
    words used, of which the model finds one or two), the better partial answer still teaches.

    repair(example, text) -> text | None: for a prompt with nothing kept, the first of its answers
    (best reward first, then shortest: fewer sampled words, fewer slips) that a minimal edit makes pass, as verified by the caller's checker
    (Task.repair: the story the model wrote, its ending replaced by the one asked for). Counted
    apart ("repaired"): these answers are edited, not sampled."""
    kept, by_kind, partial, repaired = [], Counter(), 0, Counter()
    for row in scored:
        ex = examples[row["example"]]
        mean = sum(a["reward"] for a in row["answers"]) / max(len(row["answers"]), 1)
        ok = [a for a in row["answers"] if a["ended"] and not a["degenerate"] and a["text"].strip()
              and (a["reward"] >= min_score or (min_gain > 0 and a["reward"] - mean >= min_gain))]
        if ok:
            best = max(ok, key=lambda a: a["reward"])
            kept.append(Example(ex.prompt + [{"role": "assistant", "content": best["text"]}], dict(ex.meta)))
            by_kind[ex.meta.get("kind")] += 1
            partial += best["reward"] < min_score
        elif repair is not None:
            for a in sorted(row["answers"], key=lambda a: (-a["reward"], len(a["text"]))):
                if not a["ended"] or a["degenerate"]:
                    continue
                fixed = repair(ex, a["text"])
                if fixed:
                    kept.append(Example(ex.prompt + [{"role": "assistant", "content": fixed}], dict(ex.meta)))
                    by_kind[ex.meta.get("kind")] += 1
                    repaired[ex.meta.get("kind")] += 1
                    break
    return kept, {"prompts": len(scored), "kept": len(kept), "kept_below_min_score": partial,
                  "repaired": sum(repaired.values()), "repaired_by_kind": dict(repaired), "kept_by_kind": dict(by_kind)}


def estimate_dead_groups(scored: list[dict], examples: list[Example], group_size: int,
                         kind_weights: dict[str, float] | None = None) -> dict:
    """Expected fraction of dead GRPO groups (all G rewards equal) if each kind's answers were
    drawn from that kind's pooled reward distribution: sum over kinds of w_k * sum_s q_{k,s}^G.
    Pooling across prompts makes this a lower bound (a prompt the model always fails is dead
    whatever the pool says); the fraction actually seen is logged at every step."""
    from tinylm.train.preference import dead_group_probability

    by_kind: dict[str, Counter] = {}
    for row in scored:
        kind = examples[row["example"]].meta.get("kind")
        for a in row["answers"]:
            by_kind.setdefault(kind, Counter())[round(a["reward"], 6)] += 1
    weights = kind_weights or {k: sum(c.values()) for k, c in by_kind.items()}
    wsum = sum(weights.get(k, 0) for k in by_kind) or 1
    per_kind = {k: {"dead": dead_group_probability(c, group_size), "mean_reward": sum(s * n for s, n in c.items()) / sum(c.values()),
                    "pass_rate": c.get(1.0, 0) / sum(c.values())} for k, c in by_kind.items()}
    total = sum(weights.get(k, 0) * v["dead"] for k, v in per_kind.items()) / wsum
    return {"group_size": group_size, "estimated_dead_fraction": total, "per_kind": per_kind}


# ---------------------------------------------------------------------------------------------
# RL rollouts as a batch source


def _pack(t: torch.Tensor) -> dict:
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": t.flatten().tolist()}


def _unpack(d: dict) -> torch.Tensor:
    return torch.tensor(d["data"], dtype=getattr(torch, d["dtype"])).reshape(d["shape"])


class RolloutSource:
    """Batch source for GRPO and PPO. A rollout samples `group_size` answers for each of `prompts`
    training prompts with the current policy (KV-cache generator), scores them, and computes what
    the loss needs under no_grad: old log-probs, reference log-probs, and advantages (GRPO: group
    normalised; PPO: GAE over per-token rewards = -kl_coef * (log pi_old - log ref), plus the
    final reward on the last token, with the value head's values). The buffer is then served as
    `minibatches` minibatches per epoch for `epochs` epochs; each next_batch() is one minibatch:
    (x, y, extras) with extras holding those tensors and the rollout's statistics."""

    def __init__(self, policy, ref, tok, task, examples: list[Example], rollout, *, seed: int, method: str = "grpo",
                 guard: bool = True, reward_model=None, reward_mix: str = "checker", kl_coef: float = 0.0,
                 gamma: float = 1.0, lam: float = 0.95, no_end_penalty: float = 0.0, rank: int = 0,
                 world_size: int = 1, autocast=contextlib.nullcontext):
        if method not in ("grpo", "ppo"):
            raise ValueError(f"unknown RL method {method!r}")
        n = rollout.prompts * rollout.group_size
        if n % rollout.minibatches:
            raise ValueError(f"rollout of {rollout.prompts} x {rollout.group_size} answers does not split into "
                             f"{rollout.minibatches} equal minibatches")
        self.policy, self.ref, self.tok, self.task, self.examples = policy, ref, tok, task, examples
        self.cfg, self.seed, self.method, self.guard = rollout, seed, method, guard
        self.reward_model, self.reward_mix = reward_model, reward_mix
        self.kl_coef, self.gamma, self.lam, self.no_end_penalty = kl_coef, gamma, lam, no_end_penalty
        self.rank, self.world_size, self.autocast = rank, world_size, autocast
        self.stop = end_id(tok)
        self.pad_id = tok.pad_id if tok.pad_id is not None else tok.eot_id
        self.minibatch_size = n // rollout.minibatches
        self.rollouts = 0  # rollouts made so far
        self.served = 0  # minibatches served from the current buffer
        self.buffer: dict | None = None

    @property
    def steps_per_rollout(self) -> int:
        return self.cfg.minibatches * self.cfg.epochs

    def state_dict(self) -> dict:
        buf = None
        if self.buffer is not None and self.served < self.steps_per_rollout:
            buf = {k: (_pack(v) if torch.is_tensor(v) else v) for k, v in self.buffer.items()}
        return {"rollouts": self.rollouts, "served": self.served, "seed": self.seed, "n_prompts": len(self.examples),
                "buffer": buf}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["n_prompts"] != len(self.examples):
            raise ValueError(f"rollout position was saved for {state['n_prompts']} prompts (seed {state['seed']}), "
                             f"the data now has {len(self.examples)} (seed {self.seed})")
        self.rollouts, self.served = state["rollouts"], state["served"]
        buf = state.get("buffer")
        self.buffer = {k: (_unpack(v) if isinstance(v, dict) and "dtype" in v else v) for k, v in buf.items()} if buf else None
        if self.buffer is None:
            self.served = self.steps_per_rollout  # the next batch starts a new rollout

    def _prompt_indices(self, r: int) -> list[int]:
        n, P = len(self.examples), self.cfg.prompts
        out = []
        for j in range(P):
            c = (r * self.world_size + self.rank) * P + j
            epoch, pos = divmod(c, n)
            out.append(int(np.random.default_rng([self.seed, epoch]).permutation(n)[pos]))
        return out

    @torch.no_grad()
    def _score_sequences(self, x, y):
        """Reward-model score of each sequence at its last response token."""
        scores = self.reward_model(x, heads="score")  # (N, T)
        last = (y != IGNORE_INDEX).long().cumsum(-1).argmax(-1)
        return scores[torch.arange(x.size(0)), last]

    @torch.no_grad()
    def _rollout(self) -> None:
        cfg, r = self.cfg, self.rollouts
        device = next(self.policy.parameters()).device
        idx = self._prompt_indices(r)
        gens = [torch.Generator(device=device).manual_seed(((self.seed * 1_000_003 + r) * 64 + self.rank) * 64 + j)
                for j in range(len(idx))]
        prompts = [render_prompt(self.tok, self.examples[i].prompt) for i in idx]
        groups = sample_groups(self.policy, prompts, cfg.group_size, cfg.max_new_tokens, self.stop, cfg.temperature,
                               cfg.top_k, gens, cfg.compile)
        seqs, rewards, scores, degen, ended, lengths = [], [], [], [], [], []
        for i, prompt, group in zip(idx, prompts, groups):
            ex = self.examples[i]
            for toks in group:
                done = bool(toks) and toks[-1] == self.stop
                text = self.tok.decode(toks[:-1] if done else toks)
                rew, s, why = reward(self.task, ex, text, self.guard)
                seqs.append((prompt + toks, len(prompt)))
                rewards.append(rew)
                scores.append(s)
                degen.append(why is not None)
                ended.append(done)
                lengths.append(len(toks))
        x, y = collate_responses(seqs, self.pad_id)
        x, y = x.to(device), y.to(device)
        mask = (y != IGNORE_INDEX).float()
        checker = torch.tensor(rewards, dtype=torch.float32, device=device)
        if self.reward_model is not None and self.reward_mix != "checker":
            rm = self._score_sequences(x, y).float()
            checker = rm if self.reward_mix == "rm" else checker + rm
        if not torch.isfinite(checker).all():
            raise ValueError(f"rollout {r}: non-finite rewards from the reward function ({checker.tolist()[:8]} ...)")
        ended_t = torch.tensor(ended, device=device)
        total = checker - self.no_end_penalty * (~ended_t).float()
        with self.autocast():
            if self.method == "ppo":
                logits, values = self.policy(x, heads="both")
            else:
                logits, values = self.policy(x), None
            old_logp = token_logprobs(logits, y)
            ref_logp = token_logprobs(self.ref(x), y) if self.ref is not None else old_logp
        kl_seq = ((old_logp - ref_logp) * mask).sum(-1)  # k1 estimate of KL(pi || ref) per answer
        buf = {"x": x, "y": y, "old_logp": old_logp, "ref_logp": ref_logp}
        stats = {"reward": float(total.mean()), "checker_score": float(np.mean(scores)),
                 "degenerate_frac": float(np.mean(degen)), "no_end_frac": float(1 - np.mean(ended)),
                 "response_tokens": float(np.mean(lengths)), "kl_ref_seq": float(kl_seq.mean())}
        if self.method == "grpo":
            adv, dead = grpo_advantages(total.view(cfg.prompts, cfg.group_size))
            buf["adv"] = adv.flatten()
            stats["dead_group_frac"] = float(dead.float().mean())
        else:
            last = mask.cumsum(-1).argmax(-1)  # index of each answer's last token
            tok_rewards = -self.kl_coef * (old_logp - ref_logp) * mask
            tok_rewards[torch.arange(x.size(0)), last] += total
            values = values.float() * mask
            adv, returns = gae(tok_rewards, values, mask, self.gamma, self.lam)
            buf.update(adv=whiten(adv, mask), returns=returns, old_values=values)
            stats["value_mean"] = float((values * mask).sum() / mask.sum().clamp(min=1))
        buf["stats"] = stats
        self.buffer, self.served = buf, 0
        self.rollouts += 1

    def next_batch(self):
        if self.buffer is None or self.served >= self.steps_per_rollout:
            self._rollout()
        epoch, mb = divmod(self.served, self.cfg.minibatches)
        N = self.buffer["x"].size(0)
        order = torch.randperm(N, generator=torch.Generator().manual_seed(self.seed * 7919 + self.rollouts * 31 + epoch))
        idx = order[mb * self.minibatch_size : (mb + 1) * self.minibatch_size].to(self.buffer["x"].device)
        self.served += 1
        b = self.buffer
        x, y = b["x"][idx], b["y"][idx]
        width = int((y != IGNORE_INDEX).nonzero()[:, 1].max()) + 1 if (y != IGNORE_INDEX).any() else 1
        extras = {k: v[idx][:, :width] if v.dim() == 2 else v[idx] for k, v in b.items()
                  if torch.is_tensor(v) and k not in ("x", "y")}
        extras["stats"] = b["stats"]
        return x[:, :width], y[:, :width], extras


def cached_samples(path, model, tok, task, examples: list[Example], sampling, seed: int, guard: bool = True) -> list[dict]:
    """sample_and_score, saved to `path` (JSON) so that a resumed stage reuses the same answers."""
    import json
    from pathlib import Path

    from tinylm.util import atomic_write_text

    path = Path(path)
    key = {"n": len(examples), "samples": sampling.samples, "temperature": sampling.temperature, "top_k": sampling.top_k,
           "max_new_tokens": sampling.max_new_tokens, "seed": seed, "guard": guard,
           **({"greedy": True} if sampling.greedy else {})}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["scored"]

    import time

    from tinylm.progress import bar, duration

    t0 = time.time()
    pbar = bar(total=len(examples), desc=f"sample {sampling.samples} answers per prompt", unit="prompt")

    def progress(i, n):
        pbar.update(i - pbar.n)

    try:
        scored = sample_and_score(model, tok, task, examples, sampling.samples, sampling.max_new_tokens,
                                  sampling.temperature, sampling.top_k, seed, guard, sampling.compile, progress,
                                  greedy=sampling.greedy)
    finally:
        pbar.close()
    print(f"sampled {sampling.samples} answers for each of {len(examples):,} prompts in "
          f"{duration(time.time() - t0)} -> {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "scored": scored}))
    return scored


def training_prompts(tok, task, kinds: str, n: int, seq_len: int, seed: int) -> tuple[list[Example], int]:
    """n training-split prompts (of the given kinds) that leave room for an answer, in a seeded order."""
    import random

    ex, dropped = fitting_prompts(tok, filter_kinds(task.examples("train"), kinds), seq_len, room=32)
    random.Random(f"prompts:{seed}").shuffle(ex)
    return (ex[:n] if n else ex), dropped

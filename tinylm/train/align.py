"""What the alignment stages share: loading the policy, the frozen reference and the reward model
with the checks that keep them compatible; the objectives `Trainer` calls (thin adapters from a
batch to the pure losses of tinylm/train/preference.py); and the held-out evaluation hook.

    objective(model, batch) -> (loss, n, metrics)   for rm, dpo, grpo, ppo
"""

from __future__ import annotations

import math
import random

import torch

from tinylm.chat import ChatFormatError, respond
from tinylm.config import ModelConfig, from_dict
from tinylm.model import GPT, GPTWithHead
from tinylm.tokenizer import Tokenizer
from tinylm.train.checkpoint import find_checkpoint, load_state_dict_checked, read_meta
from tinylm.train.objectives import IGNORE_INDEX
from tinylm.util import load_average
from tinylm.train.preference import bradley_terry_loss, dpo_loss, grpo_loss, masked_mean, ppo_policy_loss, ppo_value_loss, token_logprobs

# ---------------------------------------------------------------------------------------------
# Models


def _read(path):
    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    tok = Tokenizer.load(ckpt / "tokenizer.json")
    if meta.get("tokenizer_sha256") and tok.sha256 != meta["tokenizer_sha256"]:
        raise ValueError(f"{ckpt}/tokenizer.json does not match the tokenizer the model was trained with")
    return ckpt, meta, tok, from_dict(ModelConfig, meta["config"]["model"])


def load_policy(path, device, value_head: bool = False):
    """(model, tokenizer, checkpoint dir) of a policy to align: an SFT (or aligned) chat model.
    A reward-model checkpoint is refused; a PPO policy's value head is kept only when asked for."""
    from safetensors.torch import load_file

    ckpt, meta, tok, cfg = _read(path)
    if meta.get("stage") == "rm":
        raise ValueError(f"{ckpt} is a reward model (tinylm rm: a scalar head, no trained language-model head); "
                         "pass an SFT or aligned policy checkpoint")
    if not tok.has_chat_tokens():
        raise ChatFormatError(f"{ckpt}: its tokenizer lacks the chat tokens; alignment starts from an SFT model")
    model = (GPTWithHead if value_head else GPT)(cfg)
    sd = load_file(str(ckpt / "model.safetensors"))
    if value_head:
        model.load_state_dict(sd, strict=False)  # the value head starts at zero unless the checkpoint has one
        missing = set(model.state_dict()) - set(sd) - {"lm_head.weight", "score_head.weight", "score_head.bias"}
        if missing:
            raise ValueError(f"{ckpt}: weights do not match the model (missing {sorted(missing)})")
    else:
        load_state_dict_checked(model, {k: v for k, v in sd.items() if not k.startswith("score_head.")}, ckpt)
    return model.to(device), tok, ckpt


def load_frozen(path, like_cfg: ModelConfig, tok, device, head: bool = False, what: str = "reference"):
    """A frozen model that must share the policy's tokenizer and architecture (a reference model
    with other token ids or shapes would give meaningless log-prob ratios): refused otherwise,
    naming the difference."""
    from safetensors.torch import load_file

    ckpt, meta, rtok, cfg = _read(path)
    if rtok.sha256 != tok.sha256:
        raise ValueError(f"{what} {ckpt} uses another tokenizer ({rtok.sha256[:12]}) than the policy ({tok.sha256[:12]})")
    if cfg != like_cfg:
        diff = [f"{k}: {getattr(like_cfg, k)!r} vs {getattr(cfg, k)!r}" for k in like_cfg.__dataclass_fields__
                if getattr(like_cfg, k) != getattr(cfg, k)]
        raise ValueError(f"{what} {ckpt} has another architecture than the policy ({'; '.join(diff)})")
    if head and meta.get("stage") != "rm":
        raise ValueError(f"{ckpt} is not a reward model (stage {meta.get('stage')!r}); train one with `tinylm rm`")
    model = (GPTWithHead if head else GPT)(cfg)
    sd = load_file(str(ckpt / "model.safetensors"))
    if not head:
        sd = {k: v for k, v in sd.items() if not k.startswith("score_head.")}
    load_state_dict_checked(model, sd, ckpt)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def sequence_logprobs(model, x, y) -> torch.Tensor:
    """Sum of response-token log-probabilities per row: (N, T) -> (N,)."""
    return token_logprobs(model(x), y).sum(-1)


@torch.no_grad()
def precompute_reference(ref, loader, autocast, batch_size: int = 16) -> torch.Tensor:
    """Reference log-probs of every pair once: (n_pairs, 2) for (chosen, rejected)."""
    out = torch.empty(len(loader.rows), 2)
    for idx, (x, y, _) in loader.all_batches(batch_size):
        with autocast():
            lp = sequence_logprobs(ref, x.to(next(ref.parameters()).device), y.to(next(ref.parameters()).device)).float().cpu()
        B = len(idx)
        out[idx, 0], out[idx, 1] = lp[:B], lp[B:]
    return out


# ---------------------------------------------------------------------------------------------
# Objectives (batch -> the pure losses)


def last_token_index(y: torch.Tensor) -> torch.Tensor:
    """Index of each row's last response target (its <|end|> prediction): (N, T) -> (N,)."""
    return (y != IGNORE_INDEX).long().cumsum(-1).argmax(-1)


def rm_objective(model, batch):
    """Bradley-Terry on the reward read at each answer's last position; rows 0..B-1 chosen."""
    x, y, _ = batch
    scores = model(x, heads="score")  # (2B, T)
    r = scores[torch.arange(x.size(0)), last_token_index(y)]
    B = x.size(0) // 2
    loss, acc = bradley_terry_loss(r[:B], r[B:])
    return loss, torch.tensor(B), {"accuracy": acc, "margin": (r[:B] - r[B:]).mean().detach()}


def make_dpo_objective(beta: float, ref=None, nll_weight: float = 0.0):
    """DPO with reference log-probs from the batch (precomputed) or from `ref` (on the fly).

    nll_weight > 0 adds that times the chosen answers' negative log-likelihood per token (RPO, Pang
    et al. 2024, eq. 1; Llama 3 §4.1.4 uses 0.2): plain DPO can raise the margin by lowering both
    answers, and on a small model it drove short answers (titles) to the empty string."""

    def objective(model, batch):
        x, y, ref_lp = batch
        pi = sequence_logprobs(model, x, y)
        if ref_lp is None:
            with torch.no_grad():
                ref_lp = sequence_logprobs(ref, x, y)
        ref_lp = ref_lp.to(pi.device)
        B = x.size(0) // 2
        losses, rc, rr = dpo_loss(pi[:B], pi[B:], ref_lp[:B], ref_lp[B:], beta)
        n = (y != IGNORE_INDEX).sum()
        stats = {"rewards_chosen": rc.mean(), "rewards_rejected": rr.mean(),
                 "reward_accuracy": (rc > rr).float().mean(), "reward_margin": (rc - rr).mean()}
        loss = losses.mean()
        if nll_weight > 0:
            nll = -pi[:B].sum() / (y[:B] != IGNORE_INDEX).sum().clamp(min=1)
            loss = loss + nll_weight * nll
            stats["nll_chosen"] = nll.detach()
        return loss, n, stats

    return objective


def make_grpo_objective(clip: float, beta: float):
    def objective(model, batch):
        x, y, ex = batch
        mask = (y != IGNORE_INDEX).float()
        logp = token_logprobs(model(x), y)
        loss, stats = grpo_loss(logp, ex["old_logp"], ex["ref_logp"], ex["adv"], mask, clip, beta)
        return loss, (y != IGNORE_INDEX).sum(), {**stats, **ex["stats"]}

    return objective


def make_ppo_objective(clip: float, value_clip: float, vf_coef: float):
    def objective(model, batch):
        x, y, ex = batch
        mask = (y != IGNORE_INDEX).float()
        logits, values = model(x, heads="both")
        logp = token_logprobs(logits, y)
        pl, stats = ppo_policy_loss(logp, ex["old_logp"], ex["adv"], mask, clip)
        vl = ppo_value_loss(values, ex["old_values"], ex["returns"], mask, value_clip)
        with torch.no_grad():
            lp_all = logits.float().log_softmax(-1)
            entropy = masked_mean(-(lp_all.exp() * lp_all).sum(-1), mask)
        return pl + vf_coef * vl, (y != IGNORE_INDEX).sum(), {**stats, "policy_loss": pl.detach(), "value_loss": vl.detach(),
                                               "entropy": entropy, **ex["stats"]}

    return objective


# ---------------------------------------------------------------------------------------------
# Held-out evaluation during training


def heldout_prompts(task, data_seed: int, n: int, skip: int = 300):
    """Held-out checkable prompts for monitoring, disjoint from the first `skip` prompts of the
    `tinylm ifeval` order (the 300 reported ones), so monitoring never selects on the test set."""
    ex = task.examples("test")
    random.Random(data_seed).shuffle(ex)
    rest = ex[skip:] if len(ex) > skip + n else ex[len(ex) // 2 :]
    return rest[:n]


def make_eval_hook(task, tok, examples, ref=None, max_new_tokens: int = 120):
    """evaluate(model) -> greedy constraint satisfaction and degenerate rate on held-out prompts,
    and the mean summed log-ratio log pi - log ref of those greedy answers."""
    from tinylm.data.preference import collate_responses, render_response
    from tinylm.train.rollout import degenerate

    def evaluate(model):
        scores, degen, seqs = [], 0, []
        for ex in examples:
            try:
                text = respond(model, tok, ex.prompt, max_new_tokens, temperature=0.0)
            except (ValueError, ChatFormatError):
                continue
            scores.append(task.check(ex, text).score)
            degen += degenerate(ex, text) is not None
            if text.strip():
                seqs.append(render_response(tok, ex.prompt, text))
        out = {"heldout_score": sum(scores) / max(len(scores), 1), "heldout_degenerate": degen / max(len(scores), 1)}
        if ref is not None and seqs:
            seqs = [s for s in seqs if len(s[0]) <= model.cfg.seq_len + 1]
            x, y = collate_responses(seqs, tok.eot_id)
            with torch.no_grad():
                x, y = x.to(next(model.parameters()).device), y.to(next(model.parameters()).device)
                out["heldout_logratio"] = float((sequence_logprobs(model, x, y) - sequence_logprobs(ref, x, y)).mean())
        return out

    return evaluate


@torch.no_grad()
def kl_to_reference(model, ref, tok, examples, samples: int = 2, max_new_tokens: int = 160, seed: int = 0) -> dict:
    """KL(pi || ref) over whole answers, estimated with answers sampled from pi at temperature 1:
    mean of sum_t (log pi(y_t) - log ref(y_t)) (the unbiased k1 estimator at sequence level), with
    its 95% interval."""
    from tinylm.chat import end_id, render_prompt
    from tinylm.data.preference import collate_responses
    from tinylm.sample import sample_group

    device = next(model.parameters()).device
    vals = []
    for i, ex in enumerate(examples):
        prompt = render_prompt(tok, ex.prompt)
        if len(prompt) >= model.cfg.seq_len - 1:
            continue
        gen = torch.Generator(device=device).manual_seed(seed * 100_003 + i)
        outs = sample_group(model, prompt, samples, max_new_tokens, end_id(tok), 1.0, 0, gen)
        x, y = collate_responses([(prompt + o, len(prompt)) for o in outs], tok.eot_id)
        x, y = x.to(device), y.to(device)
        vals += (sequence_logprobs(model, x, y) - sequence_logprobs(ref, x, y)).tolist()
    n = len(vals)
    m = sum(vals) / max(n, 1)
    se = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1) / n) if n > 1 else float("nan")
    return {"kl": m, "ci95": 1.96 * se, "n": n, "unit": "nats per answer"}


def write_summary(run_dir, method: str, summary: dict, data: dict, hyper: dict, t_start: float) -> dict:
    """summary.json of an alignment run: method, data counts, hyperparameters, wall-clock, load."""
    import json
    import time
    from pathlib import Path

    from tinylm.util import atomic_write_text

    out = {"method": method, **summary, "data": data, "hyperparameters": hyper,
           "wall_clock_s": round(time.time() - t_start, 1), "load_average_1_5_15": load_average(),
           "threads": torch.get_num_threads()}
    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(out, indent=2, default=str) + "\n")
    return out

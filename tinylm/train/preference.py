"""Alignment objectives: pure functions of log-probabilities, rewards and values.

The next-token loss lives in objectives.py; these are the losses of the stages after SFT. Each is a
function of tensors (no model inside), with shapes in its docstring and the equation it implements:

    token_logprobs          log pi(y_t | y_<t) of given targets                      (all)
    bradley_terry_loss      reward model, -log sigma(r_c - r_r)                      (Ouyang et al. 2022, eq. 1)
    dpo_loss                direct preference optimisation                           (Rafailov et al. 2023, eq. 7)
    kl_estimators           k1, k2, k3 per-token estimates of KL(pi || ref)          (Schulman 2020)
    gae                     generalised advantage estimation                         (Schulman et al. 2016, eq. 16)
    ppo_policy_loss         clipped surrogate                                        (Schulman et al. 2017, eq. 7)
    ppo_value_loss          clipped value loss                                       (as in OpenAI baselines / InstructGPT)
    grpo_advantages         group-normalised outcome advantages                      (Shao et al. 2024, eq. in §4.1.2)
    grpo_loss               clipped ratio + k3 KL to the reference, per token        (Shao et al. 2024, eq. 3)
    dead_group_probability  P(all G rewards equal) from a reward distribution        (GRPO's zero-signal groups)

Masks are float or bool tensors with 1 on response tokens (the ones the policy chose) and 0 on
prompt and padding; every mean over tokens divides by the mask sum clamped to 1, so an all-masked
batch gives 0, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinylm.train.objectives import IGNORE_INDEX


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (B, T) with IGNORE_INDEX where unused -> log p(target) (B, T) in
    fp32, 0 at ignored positions."""
    valid = targets != IGNORE_INDEX
    safe = torch.where(valid, targets, 0)
    logp = logits.float().log_softmax(-1).gather(-1, safe[..., None]).squeeze(-1)
    return torch.where(valid, logp, 0.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward-model loss on preference pairs (Bradley & Terry 1952; InstructGPT eq. 1):

        loss = -E[ log sigma(r(x, y_c) - r(x, y_r)) ]

    r_chosen, r_rejected: (B,) scalar rewards. Returns (mean loss, accuracy = fraction with r_c > r_r)."""
    diff = r_chosen.float() - r_rejected.float()
    return -F.logsigmoid(diff).mean(), (diff > 0).float().mean()


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct preference optimisation (Rafailov et al. 2023, eq. 7):

        loss = -log sigma( beta * [ (log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x)) ] )

    All four inputs are (B,) sums of response-token log-probabilities. Returns per-pair
    (losses (B,), chosen rewards (B,), rejected rewards (B,)), the implicit rewards being
    beta * (log pi - log ref) (eq. 5), detached. When pi == ref every loss is log 2."""
    chosen = pi_chosen - ref_chosen
    rejected = pi_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return losses, beta * chosen.detach(), beta * rejected.detach()


def kl_estimators(logp: torch.Tensor, ref_logp: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token estimates of KL(pi || ref) from tokens sampled from pi (Schulman 2020,
    "Approximating KL divergence"), with log r = log ref - log pi:

        k1 = -log r              unbiased, high variance, can be negative
        k2 = (log r)^2 / 2       biased, low variance
        k3 = (r - 1) - log r     unbiased, low variance, always >= 0 (GRPO's choice)

    logp, ref_logp: (...) log-probabilities of the sampled tokens. Returns each of the same shape."""
    log_r = ref_logp - logp
    return {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) - log_r}


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) over response tokens:

        delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = sum_l (gamma * lam)^l * delta_{t+l}

    rewards, values, mask: (B, T); positions with mask 0 are outside the response (V after the last
    response token is 0: the episode ends). Returns (advantages, returns = advantages + values), both
    (B, T) and 0 outside the mask."""
    mask = mask.to(values.dtype)
    B, T = rewards.shape
    adv = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    next_value = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = torch.where(m > 0, delta + gamma * lam * last, last)
        adv[:, t] = last * m
        next_value = torch.where(m > 0, values[:, t], next_value)
    return adv, (adv + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise to mean 0, std 1 over masked positions (PPO's advantage normalisation)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), per token, as a loss to minimise:

        L = -E_t[ min( rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t ) ],   rho_t = pi(y_t) / pi_old(y_t)

    logp, old_logp, advantages, mask: (B, T). Returns (loss, stats) with clip_frac (tokens whose
    ratio was clipped) and approx_kl (the k3 estimate of KL(pi_old || pi), for monitoring)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
        log_r = old_logp - logp
        approx_kl = masked_mean(torch.expm1(-log_r) + log_r, mask)  # (rho - 1) - log rho
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss: 0.5 * E_t[ max( (V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2 ) ].
    All (B, T). Keeps the value head from moving far from the values the advantages were built on."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages (Shao et al. 2024, §4.1.2, outcome supervision):

        A_i = (r_i - mean(r_group)) / std(r_group)

    rewards: (P, G), G samples for each of P prompts. A group whose rewards are all equal carries no
    signal: its advantages are exactly 0 (not 0/0). Returns (advantages (P, G), dead (P,) bool)."""
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True, unbiased=False) if rewards.size(-1) > 1 else torch.zeros_like(mean)
    dead = (rewards.max(-1).values - rewards.min(-1).values) <= 1e-9
    adv = torch.where(dead[:, None], torch.zeros_like(rewards), (rewards - mean) / (std + eps))
    return adv, dead


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip: float = 0.2, beta: float = 0.04) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO objective (Shao et al. 2024, eq. 3) as a loss to minimise:

        L = -1/G sum_i 1/|o_i| sum_t [ min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) - beta * k3_t ]

    with rho_t = pi(o_t)/pi_old(o_t) and k3 the unbiased KL(pi || ref) estimator per token.
    logp, old_logp, ref_logp, mask: (N, T); advantages: (N,) one per sequence. Returns (loss, stats)."""
    adv = advantages[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
    k3 = kl_estimators(logp, ref_logp)["k3"]
    per_seq = masked_mean(surrogate - beta * k3, mask, dim=-1)  # (N,)
    has_tokens = (mask.sum(-1) > 0).to(per_seq.dtype)
    loss = -(per_seq * has_tokens).sum() / has_tokens.sum().clamp(min=1)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean(((ratio - 1).abs() > clip).float(), mask), "kl_ref": masked_mean(k3, mask)}
    return loss, stats


def dead_group_probability(score_counts: dict[float, int], group_size: int) -> float:
    """P(all G rewards of a group are equal) if a prompt's G samples were drawn independently from
    this empirical reward distribution: sum_s q_s^G. With a pass/fail reward of pass rate p this is
    p^G + (1 - p)^G; a group that is all 0 or all 1 gives GRPO no gradient."""
    total = sum(score_counts.values())
    if total == 0:
        return 1.0
    return sum((c / total) ** group_size for c in score_counts.values())

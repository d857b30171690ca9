"""The compute planner: which model shape, trained for how many steps, for a given budget?

1. Measure this machine's training throughput (tokens/s) for candidate shapes: a few optimizer steps
   of the one Trainer on random tokens, after one untimed warm-up step.
2. For a budget in minutes (tokens = throughput x time) or in FLOPs (tokens = FLOPs / FLOPs per
   token), predict each shape's final loss with the fitted law L(N, D) = E + A/N^alpha + B/D^beta
   (tinylm scaling, approach 3) and recommend the lowest; its interval comes from the bootstrap
   refits of the law stored in the fit.
3. `tinylm scaling` validates the law the honest way: fit without one budget, predict it (fit.json's
   "holdout"); plan repeats that figure next to its recommendation.

Run: tinylm plan --fit results/scaling/fit.json --minutes 60
     tinylm plan --fit results/scaling/fit.json --flops 1e15 --sizes 2x64,4x128,6x192
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tinylm import config as C
from tinylm.experiments.scaling import FitError


def shape_config(base: C.ModelConfig, n_layer: int, n_embd: int, head_dim: int) -> C.ModelConfig:
    if n_embd % head_dim:
        raise FitError(f"width {n_embd} is not a multiple of --head_dim {head_dim}")
    h = n_embd // head_dim
    return dataclasses.replace(base, n_layer=n_layer, n_embd=n_embd, n_head=h, n_kv_head=h)


def measure_throughput(shapes: list[C.ModelConfig], train: C.TrainConfig, steps: int = 3) -> list[dict]:
    """tokens/s of `steps` timed optimizer steps (after one untimed) of the Trainer, per shape."""
    return [measure_config(C.PretrainConfig(model=cfg, train=train), steps) for cfg in shapes]


def measure_config(config: C.PretrainConfig, steps: int = 3) -> dict:
    """tokens/s of `steps` timed optimizer steps (after one untimed warm-up) of the Trainer with this
    model and training config (optimizer, batch, dtype, threads...), on random tokens: no I/O is timed.
    Returns the model's `describe` numbers plus tok_per_s and measured_steps."""
    import tempfile

    import torch

    from tinylm.model import GPT, describe
    from tinylm.runtime import Runtime
    from tinylm.train.loop import Trainer

    train, cfg = config.train, config.model
    rt = Runtime.create(train.device, train.dtype, train.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (train.batch_size, cfg.seq_len), generator=g).to(rt.device)

    class Random:  # a batch source with the loader's interface: no I/O is timed
        def next_batch(self):
            return x, x

        def state_dict(self):
            return {}

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(rt, dataclasses.replace(train, run_dir=tmp), GPT(cfg).to(rt.device), Random())
        trainer.train_step(train.lr)  # warm-up: allocations, first-call overheads
        t0 = time.perf_counter()
        for _ in range(steps):
            loss, _, positions = trainer.train_step(train.lr)
        float(loss)  # sync
        dt = time.perf_counter() - t0
    info = describe(cfg)
    return {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, **info, "tok_per_s": steps * positions / dt,
            "measured_steps": steps}


def recommend(throughput: list[dict], fit: dict, *, minutes: float | None = None, flops: float | None = None,
              batch_tokens: int = 8192, n_key: str | None = None) -> dict:
    """For each measured shape, the tokens the budget buys and the law's predicted loss (with a 95%
    interval over the bootstrap refits); the recommendation is the lowest prediction."""
    if (minutes is None) == (flops is None):
        raise FitError("give exactly one budget: --minutes or --flops")
    if not throughput:
        raise FitError("no candidate shapes to plan over")
    n_key = n_key or fit.get("primary", "params")
    law = fit["conventions"][n_key]["approach3"]
    samples = np.asarray(law.get("bootstrap_samples") or [], float).reshape(-1, 5)
    rows = []
    for t in throughput:
        if minutes is not None:
            tokens = t["tok_per_s"] * minutes * 60
        else:
            tokens = flops / t["flops_per_token"]
        n = np.float64(t[n_key])  # numpy floats: a steep fitted exponent gives inf (term 0), not OverflowError
        with np.errstate(over="ignore"):
            pred = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / np.float64(tokens) ** law["beta"]
        row = {**t, "tokens": tokens, "steps": int(tokens // batch_tokens), "flops": tokens * t["flops_per_token"],
               "minutes": tokens / t["tok_per_s"] / 60, "tokens_per_param": tokens / n, "predicted": float(pred),
               "predicted_ci": None}
        if len(samples) >= 10:
            E, A, B, al, be = samples.T
            with np.errstate(over="ignore"):
                dist = E + A / n ** al + B / tokens ** be
            row["predicted_ci"] = [float(np.quantile(dist, 0.025)), float(np.quantile(dist, 0.975))]
        rows.append(row)
    usable = [r for r in rows if r["steps"] >= 1]
    if not usable:
        raise FitError("the budget buys less than one optimizer step for every candidate shape")
    best = min(usable, key=lambda r: r["predicted"])
    fitted = fit["conventions"][n_key].get("budgets") or [best["flops"]]
    return {"budget": {"minutes": minutes, "flops": flops}, "n_key": n_key, "y": fit.get("y", "val_bpb"),
            "batch_tokens": batch_tokens, "candidates": rows, "choice": best,
            "extrapolation": best["flops"] / max(fitted), "holdout": fit.get("holdout")}


def format_plan(plan: dict) -> str:
    b = plan["budget"]
    head = f"{b['minutes']:g} minutes" if b["minutes"] is not None else f"{b['flops']:.3g} FLOPs"
    lines = [f"plan for {head} ({plan['batch_tokens']:,} tokens per step); predicted final {plan['y']} from the "
             f"fitted law (N = {plan['n_key']})",
             f"{'shape':>8} {'params':>11} {'tok/s':>9} {'steps':>7} {'tokens':>12} {'tok/param':>9} {'predicted':>9}  95% interval"]
    for r in plan["candidates"]:
        ci = r["predicted_ci"]
        mark = "  <- recommended" if r is plan["choice"] else ""
        lines.append(f"{r['n_layer']:>3}x{r['n_embd']:<4} {r['params']:>11,} {r['tok_per_s']:>9,.0f} {r['steps']:>7,} "
                     f"{r['tokens']:>12,.0f} {r['tokens_per_param']:>9.1f} {r['predicted']:>9.4f}  "
                     + (f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "(no bootstrap)") + mark)
    c = plan["choice"]
    lines.append(f"recommended: --model.n_layer {c['n_layer']} --model.n_embd {c['n_embd']} --train.max_steps {c['steps']} "
                 f"(~{c['minutes']:.1f} min at the measured speed)")
    h = plan.get("holdout")
    if h and "error" in h:
        lines.append(f"validation: leave-one-budget-out not available ({h['error']})")
    elif h:
        lines.append(f"validation (tinylm scaling, leave one budget out): mean |error| {h['mean_abs_error']:.4f}, "
                     f"max {h['max_abs_error']:.4f} {plan['y']}")
    if plan.get("extrapolation", 1) > 1.5:
        lines.append(f"note: this budget is {plan['extrapolation']:.0f}x the largest budget of the sweep the law was "
                     f"fitted on; the prediction extrapolates")
    return "\n".join(lines)

"""tinylm plan: from a throughput table and a fitted law to a recommended shape and step count."""

import pytest

from tinylm.experiments import plan
from tinylm.experiments.scaling import FitError

LAW = {"E": 1.0, "A": 100.0, "B": 1000.0, "alpha": 0.5, "beta": 0.5}
FIT = {"primary": "params", "y": "val_bpb",
       "conventions": {"params": {"approach3": dict(LAW, bootstrap_samples=[[1.0, 100.0, 1000.0, 0.5, 0.5]] * 9
                                                    + [[1.1, 100.0, 1000.0, 0.5, 0.5]] * 11), "budgets": [1e12]}},
       "holdout": {"mean_abs_error": 0.01, "max_abs_error": 0.03}}
# a fake machine: small models are fast, big ones slow
THROUGHPUT = [
    {"n_layer": 1, "n_embd": 32, "params": 10_000, "flops_per_token": 60_000, "tok_per_s": 100_000},
    {"n_layer": 2, "n_embd": 64, "params": 40_000, "flops_per_token": 240_000, "tok_per_s": 40_000},
    {"n_layer": 4, "n_embd": 128, "params": 160_000, "flops_per_token": 960_000, "tok_per_s": 3_000},
]


def loss(n, d):
    return 1 + 100 / n ** 0.5 + 1000 / d ** 0.5


def test_minutes_budget_picks_the_shape_with_the_lowest_predicted_loss():
    p = plan.recommend(THROUGHPUT, FIT, minutes=10, batch_tokens=1000)
    expected = min(THROUGHPUT, key=lambda t: loss(t["params"], t["tok_per_s"] * 600))
    assert (p["choice"]["n_layer"], p["choice"]["n_embd"]) == (2, 64) == (expected["n_layer"], expected["n_embd"])
    assert p["choice"]["steps"] == 40_000 * 600 // 1000
    assert p["choice"]["predicted"] == pytest.approx(loss(40_000, 24e6))
    lo, hi = p["choice"]["predicted_ci"]
    assert lo == pytest.approx(p["choice"]["predicted"]) and hi == pytest.approx(p["choice"]["predicted"] + 0.1)
    text = plan.format_plan(p)
    assert "recommended: --model.n_layer 2 --model.n_embd 64 --train.max_steps 24000" in text


def test_flops_budget_buys_the_same_flops_for_every_shape():
    p = plan.recommend(THROUGHPUT, FIT, flops=1e13, batch_tokens=1000)
    assert all(c["flops"] == pytest.approx(1e13) for c in p["candidates"])
    best = min(THROUGHPUT, key=lambda t: loss(t["params"], 1e13 / t["flops_per_token"]))
    assert p["choice"]["params"] == best["params"]
    assert p["extrapolation"] == pytest.approx(10)


def test_plan_needs_exactly_one_budget():
    with pytest.raises(FitError, match="exactly one budget"):
        plan.recommend(THROUGHPUT, FIT)


def test_a_degenerate_fit_with_a_huge_exponent_does_not_overflow():
    steep = {**FIT, "conventions": {"params": {"approach3": dict(LAW, alpha=222.0, bootstrap_samples=[]), "budgets": [1e12]}}}
    p = plan.recommend(THROUGHPUT, steep, flops=1e13, batch_tokens=1000)
    assert p["choice"]["predicted"] == pytest.approx(1 + 1000 / (1e13 / 60_000) ** 0.5)  # the N term underflows to 0


def test_plan_refuses_a_non_positive_budget_in_one_line(capsys):
    from tinylm.cli import main

    for flag in ("--minutes", "--flops"):
        assert main(["plan", "--fit", "/nonexistent/fit.json", flag, "-3"]) != 0
        err = capsys.readouterr().err
        assert f"{flag} must be > 0" in err and "Traceback" not in err

"""Scaling-law fits recover known laws from synthetic sweeps."""

import math

import numpy as np
import pytest

from tinylm.experiments import scaling

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022's fitted law


def synthetic_rows(noise=0.003, seed=0, budgets=(1e15, 1e16, 1e17, 1e18), per_budget=7):
    """An IsoFLOP sweep of a known law with multiplicative noise; FLOPs per token = 6N."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_star = 0.09 * c ** 0.5  # near the law's optimum, so the profile brackets it
        for n in n_star * np.exp(np.linspace(-2, 2, per_budget)):
            d = c / (6 * n)
            loss = float(scaling.predict(TRUE, n, d) * math.exp(rng.normal(0, noise)))
            rows.append({"budget": c, "params": n, "params_non_embedding": 0.8 * n, "params_matrices": 0.7 * n,
                         "tokens": d, "flops_per_token": 6 * n, "val_bpb": loss})
    return rows


def test_parabola_vertex_of_a_known_parabola():
    x = np.log(np.array([1e5, 3e5, 1e6, 3e6, 1e7]))
    loss = 0.1 * (x - math.log(2e6)) ** 2 + 2.5
    xm, lm, c2 = scaling.parabola_vertex(x, loss)
    assert math.exp(xm) == pytest.approx(2e6, rel=1e-6) and lm == pytest.approx(2.5) and c2 == pytest.approx(0.1)
    with pytest.raises(scaling.FitError, match="not convex"):
        scaling.parabola_vertex(x, -loss)
    with pytest.raises(scaling.FitError, match=">= 3 distinct sizes"):
        scaling.parabola_vertex(x[:2], loss[:2])


def test_parametric_fit_recovers_known_law_from_noisy_cells():
    rows = synthetic_rows()
    n = [r["params"] for r in rows]
    d = [r["tokens"] for r in rows]
    fit = scaling.fit_parametric(n, d, [r["val_bpb"] for r in rows], inits=scaling.init_grid(coarse=True))
    assert fit["E"] == pytest.approx(TRUE["E"], rel=0.05)  # E is the least identified at these budgets
    assert fit["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit["beta"] == pytest.approx(TRUE["beta"], abs=0.05)
    a, b = scaling.closed_form_exponents(fit)
    assert a == pytest.approx(0.28 / 0.62, abs=0.04) and b == pytest.approx(0.34 / 0.62, abs=0.04)


def test_isoflop_power_laws_recover_the_optimal_allocation():
    rows = synthetic_rows(noise=0.0)
    cols = [np.array([r[k] for r in rows]) for k in ("budget", "params", "tokens", "val_bpb")]
    out = scaling.isoflop_profiles(*cols)
    # the exact law's optimum under C = 6ND: N_opt ∝ C^(beta/(alpha+beta)) = C^0.452
    assert out["a"] == pytest.approx(0.28 / 0.62, abs=0.02)
    assert out["b"] == pytest.approx(0.34 / 0.62, abs=0.02)
    assert all(p["inside"] for p in out["per_budget"])


def test_analyse_gives_intervals_that_cover_the_truth_and_holdout_error_is_small():
    table = {"rows": synthetic_rows(per_budget=5), "sweep": "synthetic"}
    fit = scaling.analyse(table, n_boot=20, inits=scaling.init_grid(coarse=True))
    a3 = fit["conventions"]["params"]["approach3"]
    lo, hi = a3["alpha_ci"]
    assert lo <= a3["alpha"] <= hi and hi - lo < 0.3
    assert lo - 0.02 <= TRUE["alpha"] <= hi + 0.02  # 20 resamples of 20 noisy cells: near, not exact, coverage
    a2 = fit["conventions"]["params"]["approach2"]
    assert a2["a_ci"][0] <= 0.452 <= a2["a_ci"][1]
    # non-embedding N is 0.8 N here, so the tokens per parameter at the optimum is 1/0.8 larger
    tpp = [p["tokens_per_param"] for p in fit["conventions"]["params"]["approach2"]["per_budget"]]
    tpp_ne = [p["tokens_per_param"] for p in fit["conventions"]["params_non_embedding"]["approach2"]["per_budget"]]
    assert np.allclose(np.array(tpp_ne) / np.array(tpp), 1 / 0.8, rtol=1e-6)
    assert fit["holdout"]["mean_abs_error"] < 0.05  # extrapolating one budget out of four, losses ~2.3
    assert len(a3["bootstrap_samples"]) == 20
    assert {"E_ci", "A_ci", "B_ci", "beta_ci", "a_ci", "b_ci"} <= set(a3)


def test_too_few_cells_is_one_clear_error():
    with pytest.raises(scaling.FitError, match="too few"):
        scaling.fit_parametric([1, 2, 3], [1, 2, 3], [3, 2, 1])
    with pytest.raises(scaling.FitError, match="IsoFLOP sweep"):
        scaling.analyse({"rows": [{"cell": "a", "val_bpb": 1.0}]})


def test_figures_are_written(tmp_path):
    table = {"rows": synthetic_rows(per_budget=5)}
    fit = scaling.analyse(table, n_boot=12, inits=scaling.init_grid(coarse=True))
    names = scaling.plot(table, fit, tmp_path)
    assert all((tmp_path / f).stat().st_size > 10_000 for f in names)


@pytest.mark.slow
def test_cli_scaling_writes_fit_and_figures_and_errors_in_one_line(tmp_path, capsys):
    import json

    from tinylm.cli import main

    (tmp_path / "sweep.json").write_text(json.dumps({"sweep": "syn", "rows": synthetic_rows(per_budget=5)}))
    assert main(["scaling", str(tmp_path), "--bootstrap", "10"]) == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert set(fit["conventions"]) == set(scaling.PARAM_KEYS) and (tmp_path / "isoflop.png").exists()
    assert "approach 3: L = " in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("{not json")
    assert main(["scaling", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not JSON" in err


def test_power_laws_use_only_profiles_whose_minimum_was_trained():
    """A small budget at which the smallest model is still best has its parabola vertex far outside the
    grid (here 1e4 parameters, below the smallest model trained): it is kept per budget, flagged, and left out
    of N_opt ~ C^a, which then comes from the two interior minima (no overflow, a = 0.5 exactly)."""
    n = np.array([1e5, 2e5, 4e5])
    budgets, ns, ds, losses = [], [], [], []
    for c, n_opt in ((1e13, 2e5), (4e13, 4e5)):  # interior minima, N_opt = k C^0.5
        for x in n * (n_opt / 2e5):
            budgets.append(c), ns.append(x), ds.append(c / (6 * x)), losses.append(2 + 0.1 * np.log(x / n_opt) ** 2)
    for x in n:  # a profile still falling at the smallest size: vertex extrapolated far outside
        budgets.append(1e12), ns.append(x), ds.append(1e12 / (6 * x)), losses.append(3 + 0.05 * np.log(x / 1e4) ** 2)
    out = scaling.isoflop_profiles(budgets, ns, ds, losses)
    small = next(p for p in out["per_budget"] if p["budget"] == 1e12)
    assert not small["inside"]
    assert out["power_law_budgets"] == [1e13, 4e13]
    assert out["a"] == pytest.approx(0.5, abs=1e-6) and math.isfinite(out["k_n"])

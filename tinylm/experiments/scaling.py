"""Scaling laws from a sweep table: IsoFLOP profiles and the parametric loss L(N, D).

Approach 2 of Hoffmann et al. 2022 ("Chinchilla"): for each compute budget C, fit a parabola to the
loss against ln N over the sizes trained with that budget; its vertex is the compute-optimal size
N_opt(C), and D_opt(C) is read off the same budget's (ln N, ln D) line. Power laws
N_opt = k_N C^a and D_opt = k_D C^b are then least-squares lines in log-log space.

Approach 3: fit L(N, D) = E + A / N^alpha + B / D^beta to every cell by minimising the Huber loss
(delta = 1e-3) between log L and log of the prediction, written as
log L_hat = LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b, E = e^e, with L-BFGS from
a grid of initialisations (Hoffmann et al. 2022 §D.2; the grid and delta of the Epoch replication,
Besiroglu et al. 2024). The compute-optimal allocation under this law is found numerically along
the sweep's own family of shapes with the exact FLOPs per token of each (at ~1M parameters the output
head and attention make FLOPs/token far from 6N, so C = 6ND would misplace the optimum); the
closed form a = beta / (alpha + beta) of C = 6ND is reported too.

Every fitted number gets a percentile bootstrap interval: cells are resampled with replacement
within each budget and everything is refitted. N is counted under three conventions (total,
non-embedding, block matrices), and the tokens per parameter at the optimum is reported under each,
for comparison with Chinchilla's ~20.

Plain numpy/scipy functions of arrays; `analyse` runs them on a sweep table and `plot` draws them.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np

PARAM_KEYS = ("params", "params_non_embedding", "params_matrices")
CHINCHILLA_TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022, Table 3 (approach 1-3 agree to ~20)
SMALL_SCALE_TOKENS_PER_PARAM = 10.0  # what small-scale replications report (order of magnitude)
HUBER_DELTA = 1e-3


class FitError(ValueError):
    """Too few or unusable points for a fit: one line naming what is missing."""


# --------------------------------------------------------------------------- approach 2

def parabola_vertex(log_n, loss) -> tuple[float, float, float]:
    """Least-squares L = c2 x^2 + c1 x + c0 in x = ln N; returns (x at the minimum, L there, c2).
    FitError unless there are >= 3 distinct sizes and the parabola opens upwards."""
    x, y = np.asarray(log_n, float), np.asarray(loss, float)
    if len(np.unique(x)) < 3:
        raise FitError(f"an IsoFLOP parabola needs >= 3 distinct sizes, got {len(np.unique(x))}")
    c2, c1, c0 = np.polyfit(x, y, 2)
    if c2 <= 0:
        raise FitError("the IsoFLOP profile is not convex (no minimum inside the sizes): add smaller and larger models")
    xm = -c1 / (2 * c2)
    return float(xm), float(c0 - c1 * c1 / (4 * c2)), float(c2)


def power_law(x, y) -> tuple[float, float]:
    """Least-squares log y = log k + p log x; returns (k, p)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(np.unique(lx)) < 2:
        raise FitError("a power law needs >= 2 distinct budgets")
    p, logk = np.polyfit(lx, ly, 1)
    return float(np.exp(logk)), float(p)  # inf, not OverflowError, for an absurd intercept


def isoflop_profiles(budget, n, d, loss) -> dict:
    """Approach 2 on arrays of cells (budget, N, D, loss). Budgets whose profile has < 3 sizes or is
    not convex are listed under "dropped" with the reason. The power laws N_opt ~ C^a, D_opt ~ C^b use
    only profiles whose minimum lies inside the sizes trained ("inside"): a vertex extrapolated beyond
    the grid is not a measurement (at a small budget where the smallest model is still best, the
    parabola's vertex can lie orders of magnitude away); "power_law_budgets" names those used."""
    budget, n, d, loss = (np.asarray(v, float) for v in (budget, n, d, loss))
    per, dropped = [], []
    for c in np.unique(budget):
        m = budget == c
        try:
            xm, lm, c2 = parabola_vertex(np.log(n[m]), loss[m])
        except FitError as e:
            dropped.append({"budget": float(c), "reason": str(e)})
            continue
        slope, icpt = np.polyfit(np.log(n[m]), np.log(d[m]), 1)  # ln D is ~linear in ln N at fixed C
        per.append({"budget": float(c), "n_opt": float(np.exp(xm)), "d_opt": float(np.exp(icpt + slope * xm)),
                    "loss_opt": lm, "curvature": c2, "n_cells": int(m.sum()),
                    "inside": bool(np.log(n[m]).min() <= xm <= np.log(n[m]).max())})
    out = {"per_budget": per, "dropped": dropped}
    for p in per:
        p["tokens_per_param"] = p["d_opt"] / p["n_opt"]
    used = [p for p in per if p["inside"]]
    out["power_law_budgets"] = [p["budget"] for p in used]
    if len(used) >= 2:
        cs = [p["budget"] for p in used]
        out["k_n"], out["a"] = power_law(cs, [p["n_opt"] for p in used])
        out["k_d"], out["b"] = power_law(cs, [p["d_opt"] for p in used])
    return out


# --------------------------------------------------------------------------- approach 3

def huber(r, delta: float = HUBER_DELTA):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(theta, log_n, log_d, log_l, delta):
    """Sum of Huber(LSE(a - alpha ln N, b - beta ln D, e) - ln L) and its gradient in theta."""
    a, b, e, alpha, beta = theta
    z = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, n)
    zmax = z.max(axis=0)
    w = np.exp(z - zmax)
    s = w.sum(axis=0)
    pred = zmax + np.log(s)
    w /= s  # softmax weights: d pred / d z
    r = pred - log_l
    g = np.clip(r, -delta, delta)  # Huber'(r)
    grad = np.array([(g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(),
                     -(g * w[0] * log_n).sum(), -(g * w[1] * log_d).sum()])
    return float(huber(r, delta).sum()), grad


def init_grid(coarse: bool = False) -> list[tuple]:
    """(a, b, e, alpha, beta) starts: the Epoch replication's grid (4,500 points), or a coarse one."""
    if coarse:
        return list(itertools.product([0, 10, 20], [0, 10, 20], [-1, 0, 1], [0.25, 1.0], [0.25, 1.0]))
    return list(itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                                  np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)))


def _grid_objective(thetas, log_n, log_d, log_l, delta):
    """The objective at many starts at once: thetas (G, 5) -> (G,)."""
    a, b, e, alpha, beta = (thetas[:, i:i + 1] for i in range(5))  # (G, 1) each
    z = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e + 0 * log_n))  # (3, G, n)
    pred = np.logaddexp(np.logaddexp(z[0], z[1]), z[2])
    return huber(pred - log_l, delta).sum(axis=1)


def fit_parametric(n, d, loss, inits=None, delta: float = HUBER_DELTA, n_starts: int = 30) -> dict:
    """Approach 3: L(N, D) = E + A / N^alpha + B / D^beta by L-BFGS on the Huber loss of log L.
    The objective is evaluated at every start in `inits` (default: the full grid) and L-BFGS runs
    from the `n_starts` best; the best optimum wins."""
    from scipy.optimize import minimize

    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    if len(loss) < 5:
        raise FitError(f"the parametric law has 5 parameters; {len(loss)} cells are too few to fit it")
    if np.any(n <= 0) or np.any(d <= 0) or np.any(loss <= 0):
        raise FitError("parameters, tokens and loss must all be positive")
    args = (np.log(n), np.log(d), np.log(loss), delta)
    grid = np.asarray(inits if inits is not None else init_grid(), float)
    starts = grid[np.argsort(_grid_objective(grid, *args))[:n_starts]]
    best = None
    for x0 in starts:
        r = minimize(_objective, x0, args=args, jac=True, method="L-BFGS-B")
        if np.all(np.isfinite(r.x)) and (best is None or r.fun < best.fun):
            best = r
    a, b, e, alpha, beta = best.x
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": float(alpha), "beta": float(beta),
            "objective": float(best.fun), "theta": [float(v) for v in best.x]}


def predict(fit: dict, n, d):
    n, d = np.asarray(n, float), np.asarray(d, float)
    return fit["E"] + fit["A"] / n ** fit["alpha"] + fit["B"] / d ** fit["beta"]


class ShapeFamily:
    """FLOPs per token as a function of N along the sweep's shapes: piecewise linear in log-log,
    extended linearly from the end segments, so a budget C buys D = C / flops_per_token(N) tokens."""

    def __init__(self, n, flops_per_token):
        pts = sorted(set(zip(np.asarray(n, float), np.asarray(flops_per_token, float))))
        if len(pts) < 2:
            raise FitError("need >= 2 model sizes to relate parameters to FLOPs per token")
        self.x = np.log([p[0] for p in pts])
        self.y = np.log([p[1] for p in pts])

    def __call__(self, n):
        x = np.log(np.asarray(n, float))
        y = np.interp(x, self.x, self.y)
        lo = (self.y[1] - self.y[0]) / (self.x[1] - self.x[0])
        hi = (self.y[-1] - self.y[-2]) / (self.x[-1] - self.x[-2])
        y = np.where(x < self.x[0], self.y[0] + lo * (x - self.x[0]), y)
        y = np.where(x > self.x[-1], self.y[-1] + hi * (x - self.x[-1]), y)
        return np.exp(y)


def compute_optimal(fit: dict, family: ShapeFamily, budget: float, n_lo: float, n_hi: float) -> dict:
    """argmin over N (log grid from n_lo/10 to n_hi*10) of L(N, C / flops_per_token(N))."""
    ns = np.exp(np.linspace(math.log(n_lo / 10), math.log(n_hi * 10), 2001))
    ds = budget / family(ns)
    ls = predict(fit, ns, ds)
    i = int(np.argmin(ls))
    return {"budget": float(budget), "n_opt": float(ns[i]), "d_opt": float(ds[i]), "loss_opt": float(ls[i]),
            "tokens_per_param": float(ds[i] / ns[i])}


def closed_form_exponents(fit: dict) -> tuple[float, float]:
    """Under C = 6ND: N_opt ∝ C^(beta/(alpha+beta)), D_opt ∝ C^(alpha/(alpha+beta)) (Hoffmann et al. eq. 4)."""
    s = fit["alpha"] + fit["beta"]
    return (fit["beta"] / s, fit["alpha"] / s) if s > 0 else (float("nan"), float("nan"))


# --------------------------------------------------------------------------- bootstrap + analysis

def _ci(values, level: float = 0.95) -> list[float] | None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) < 10:
        return None
    q = (1 - level) / 2
    return [float(np.quantile(v, q)), float(np.quantile(v, 1 - q))]


def _cells(rows: list[dict], n_key: str, y: str):
    keep = [r for r in rows if isinstance(r.get(y), (int, float)) and isinstance(r.get(n_key), (int, float))
            and isinstance(r.get("tokens"), (int, float)) and r.get("budget")]
    if not keep:
        raise FitError(f"no rows with budget, {n_key}, tokens and {y}: is this an IsoFLOP sweep (--sizes and --budgets)?")
    cols = {k: np.array([float(r[k]) for r in keep]) for k in ("budget", n_key, "tokens", y, "flops_per_token")}
    return cols["budget"], cols[n_key], cols["tokens"], cols[y], cols["flops_per_token"]


def _resample(budget, rng):
    """Indices resampled with replacement within each budget (stratified bootstrap)."""
    idx = []
    for c in np.unique(budget):
        m = np.flatnonzero(budget == c)
        idx.append(rng.choice(m, size=len(m), replace=True))
    return np.concatenate(idx)


def analyse_convention(rows: list[dict], n_key: str, y: str = "val_bpb", n_boot: int = 200, seed: int = 0,
                       inits=None) -> dict:
    """Approaches 2 and 3 for one parameter convention, with bootstrap intervals."""
    budget, n, d, loss, fpt = _cells(rows, n_key, y)
    family = ShapeFamily(n, fpt)
    budgets = np.unique(budget)
    a2 = isoflop_profiles(budget, n, d, loss)
    a3 = fit_parametric(n, d, loss, inits=inits)
    a3["a_closed_form"], a3["b_closed_form"] = closed_form_exponents(a3)
    a3["per_budget"] = [compute_optimal(a3, family, c, n.min(), n.max()) for c in budgets]
    if len(budgets) >= 2:
        dense = np.exp(np.linspace(np.log(budgets.min()), np.log(budgets.max()), 9))
        front = [compute_optimal(a3, family, c, n.min(), n.max()) for c in dense]
        a3["k_n"], a3["a"] = power_law(dense, [f["n_opt"] for f in front])
        a3["k_d"], a3["b"] = power_law(dense, [f["d_opt"] for f in front])

    rng = np.random.default_rng(seed)
    boot2, boot3 = defaultdict(list), defaultdict(list)
    samples = []
    start = [a3["theta"], np.asarray(a3["theta"]) + rng.normal(0, 0.5, 5)]  # the full fit's optimum, and a jitter
    for _ in range(n_boot):
        i = _resample(budget, rng)
        p2 = isoflop_profiles(budget[i], n[i], d[i], loss[i])
        for k in ("a", "b"):
            boot2[k].append(p2.get(k))
        by_c = {p["budget"]: p for p in p2["per_budget"]}
        for c in budgets:
            for k in ("n_opt", "d_opt", "loss_opt", "tokens_per_param"):
                boot2[(float(c), k)].append(by_c[c][k] if c in by_c else None)
        try:
            f = fit_parametric(n[i], d[i], loss[i], inits=start, n_starts=len(start))
        except FitError:
            continue
        samples.append([f["E"], f["A"], f["B"], f["alpha"], f["beta"]])
        for k in ("E", "A", "B", "alpha", "beta"):
            boot3[k].append(f[k])
        ac, bc = closed_form_exponents(f)
        boot3["a_closed_form"].append(ac)
        boot3["b_closed_form"].append(bc)
        for c in budgets:
            o = compute_optimal(f, family, c, n.min(), n.max())
            for k in ("n_opt", "d_opt", "loss_opt", "tokens_per_param"):
                boot3[(float(c), k)].append(o[k])
        if len(budgets) >= 2:
            front = [compute_optimal(f, family, c, n.min(), n.max()) for c in (budgets.min(), budgets.max())]
            boot3["a"].append(power_law([front[0]["budget"], front[1]["budget"]], [front[0]["n_opt"], front[1]["n_opt"]])[1])
            boot3["b"].append(power_law([front[0]["budget"], front[1]["budget"]], [front[0]["d_opt"], front[1]["d_opt"]])[1])

    for k in ("a", "b"):
        if k in a2:
            a2[f"{k}_ci"] = _ci(boot2[k])
    for p in a2["per_budget"]:
        for k in ("n_opt", "d_opt", "loss_opt", "tokens_per_param"):
            p[f"{k}_ci"] = _ci(boot2[(p["budget"], k)])
    for k in ("E", "A", "B", "alpha", "beta", "a_closed_form", "b_closed_form", "a", "b"):
        if k in a3:
            a3[f"{k}_ci"] = _ci(boot3[k])
    for p in a3["per_budget"]:
        for k in ("n_opt", "d_opt", "loss_opt", "tokens_per_param"):
            p[f"{k}_ci"] = _ci(boot3[(p["budget"], k)])
    a3["bootstrap_samples"] = samples  # [E, A, B, alpha, beta] per resample: `plan` draws intervals from them
    return {"n_key": n_key, "approach2": a2, "approach3": a3, "n_cells": int(len(loss)),
            "budgets": [float(c) for c in budgets]}


def holdout_by_budget(rows: list[dict], n_key: str = "params", y: str = "val_bpb", inits=None) -> dict:
    """Leave one budget out: fit approach 3 on the other budgets, predict the held-out cells.
    Reports the error of every cell and of the best cell (what `plan` would promise)."""
    budget, n, d, loss, _ = _cells(rows, n_key, y)
    out = []
    for c in np.unique(budget):
        m = budget == c
        if (~m).sum() < 5:
            continue
        f = fit_parametric(n[~m], d[~m], loss[~m], inits=inits)
        pred = predict(f, n[m], d[m])
        err = pred - loss[m]
        j = int(np.argmin(pred))
        out.append({"budget": float(c), "n_cells": int(m.sum()), "mean_abs_error": float(np.abs(err).mean()),
                    "max_abs_error": float(np.abs(err).max()), "mean_error": float(err.mean()),
                    "best_observed": float(loss[m].min()), "predicted_at_chosen": float(pred[j]),
                    "observed_at_chosen": float(loss[m][j]),
                    "chosen_n": float(n[m][j]), "best_n": float(n[m][int(np.argmin(loss[m]))])})
    if not out:
        raise FitError("leave-one-budget-out needs >= 2 budgets with >= 5 cells outside each")
    return {"n_key": n_key, "y": y, "per_budget": out,
            "mean_abs_error": float(np.mean([o["mean_abs_error"] for o in out])),
            "max_abs_error": float(np.max([o["max_abs_error"] for o in out]))}


def _try(fn, *args) -> dict:
    """A validation that the sweep is too small for is reported as such rather than failing the fit."""
    try:
        return fn(*args)
    except FitError as e:
        return {"error": str(e)}


def analyse(table: dict, y: str = "val_bpb", n_boot: int = 200, seed: int = 0, inits=None) -> dict:
    rows = table["rows"]
    conventions = {k: analyse_convention(rows, k, y, n_boot, seed, inits) for k in PARAM_KEYS}
    shapes = sorted({(r["n_layer"], r["n_embd"]) for r in rows if "n_layer" in r and "n_embd" in r})
    model = next((r["config"]["model"] for r in rows if isinstance(r.get("config"), dict) and "model" in r["config"]), None)
    return {"sweep": table.get("sweep"), "sweep_command": table.get("command"), "y": y, "n_bootstrap": n_boot,
            "shapes": [list(s) for s in shapes], "head_dim": (table.get("spec") or {}).get("head_dim"),
            "base_model": model,
            "huber_delta": HUBER_DELTA, "primary": "params", "conventions": conventions,
            "holdout": _try(holdout_by_budget, rows, "params", y, inits),
            "chinchilla_tokens_per_param": CHINCHILLA_TOKENS_PER_PARAM,
            "small_scale_tokens_per_param": SMALL_SCALE_TOKENS_PER_PARAM}


# --------------------------------------------------------------------------- figures

def plot(table: dict, fit: dict, out_dir) -> list[str]:
    """isoflop.png (loss against N per budget, parabolas, minima) and frontier.png (N_opt and D_opt
    against C: approach 2 points with intervals, approach 3 curve). Returns the file names."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    conv = fit["conventions"][fit["primary"]]
    budget, n, d, loss, _ = _cells(table["rows"], conv["n_key"], fit["y"])
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    by_c = {p["budget"]: p for p in conv["approach2"]["per_budget"]}
    budgets = np.unique(budget)
    for i, c in enumerate(budgets):
        col = cmap(i / max(len(budgets) - 1, 1))
        m = budget == c
        ax.scatter(n[m], loss[m], color=col, s=18, label=f"C = {c:.0e} FLOPs")
        if c in by_c and len(np.unique(n[m])) >= 3:
            c2, c1, c0 = np.polyfit(np.log(n[m]), loss[m], 2)
            xs = np.linspace(np.log(n[m]).min(), np.log(n[m]).max(), 100)
            ax.plot(np.exp(xs), c2 * xs ** 2 + c1 * xs + c0, color=col, lw=1)
            ax.scatter([by_c[c]["n_opt"]], [by_c[c]["loss_opt"]], color=col, marker="*", s=90, edgecolor="k", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters N ({conv['n_key']})")
    ax.set_ylabel(f"final {fit['y']}")
    ax.set_title("IsoFLOP profiles (stars: parabola minima)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "isoflop.png", dpi=130)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    a2, a3 = conv["approach2"], conv["approach3"]
    cs = np.exp(np.linspace(np.log(budgets.min()) - 0.5, np.log(budgets.max()) + 1.0, 50))
    for ax, key, label, exp_key in ((axes[0], "n_opt", "N_opt (parameters)", "a"), (axes[1], "d_opt", "D_opt (tokens)", "b")):
        pts = a2["per_budget"]
        if pts:
            ys = np.array([p[key] for p in pts])
            lo = np.array([(p.get(f"{key}_ci") or [p[key], p[key]])[0] for p in pts])
            hi = np.array([(p.get(f"{key}_ci") or [p[key], p[key]])[1] for p in pts])
            ax.errorbar([p["budget"] for p in pts], ys, yerr=[ys - lo, hi - ys], fmt="o", capsize=3,
                        label="approach 2 (IsoFLOP minima, 95% CI)")
        if exp_key in a2:
            k = a2["k_n" if key == "n_opt" else "k_d"]
            ax.plot(cs, k * cs ** a2[exp_key], "--", label=f"approach 2: ∝ C^{a2[exp_key]:.2f}")
        if exp_key in a3:
            k = a3["k_n" if key == "n_opt" else "k_d"]
            ax.plot(cs, k * cs ** a3[exp_key], "-", label=f"approach 3: ∝ C^{a3[exp_key]:.2f}")
        if key == "d_opt" and "a" in a3:  # Chinchilla's rule applied to approach 3's N_opt, for scale
            ax.plot(cs, CHINCHILLA_TOKENS_PER_PARAM * a3["k_n"] * cs ** a3["a"], ":", color="grey",
                    label=f"{CHINCHILLA_TOKENS_PER_PARAM:.0f} tokens x approach-3 N_opt")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"Compute-optimal frontier (N = {conv['n_key']})")
    fig.tight_layout()
    fig.savefig(out_dir / "frontier.png", dpi=130)
    plt.close(fig)
    return ["isoflop.png", "frontier.png"]


# --------------------------------------------------------------------------- text summary

def _fmt(v, ci=None, spec=".3g") -> str:
    s = format(v, spec)
    return s + (f" [{format(ci[0], spec)}, {format(ci[1], spec)}]" if ci else "")


def summary(fit: dict) -> str:
    """A few lines per parameter convention: the fitted laws with 95% intervals and tokens per parameter."""
    lines = [f"scaling fits of {fit.get('sweep')} ({fit['y']}; 95% bootstrap intervals over {fit['n_bootstrap']} resamples)"]
    for key, conv in fit["conventions"].items():
        a2, a3 = conv["approach2"], conv["approach3"]
        lines.append(f"N = {key}:")
        if "a" in a2:
            lines.append(f"  approach 2: N_opt ∝ C^{_fmt(a2['a'], a2.get('a_ci'))}, D_opt ∝ C^{_fmt(a2['b'], a2.get('b_ci'))}")
        for p in a2["per_budget"]:
            lines.append(f"    C={p['budget']:.0e}: N_opt {_fmt(p['n_opt'], p.get('n_opt_ci'))}, D_opt "
                         f"{_fmt(p['d_opt'], p.get('d_opt_ci'))}, tokens/param {_fmt(p['tokens_per_param'], p.get('tokens_per_param_ci'))}, "
                         f"{fit['y']} {p['loss_opt']:.4f}" + ("" if p["inside"] else " (minimum outside the sizes: extrapolated)"))
        for dr in a2["dropped"]:
            lines.append(f"    C={dr['budget']:.0e}: dropped ({dr['reason']})")
        lines.append(f"  approach 3: L = {_fmt(a3['E'], a3.get('E_ci'))} + {_fmt(a3['A'], a3.get('A_ci'))}/N^"
                     f"{_fmt(a3['alpha'], a3.get('alpha_ci'))} + {_fmt(a3['B'], a3.get('B_ci'))}/D^{_fmt(a3['beta'], a3.get('beta_ci'))}")
        if "a" in a3:
            lines.append(f"    exact-FLOPs frontier: N_opt ∝ C^{_fmt(a3['a'], a3.get('a_ci'))}, D_opt ∝ C^{_fmt(a3['b'], a3.get('b_ci'))}"
                         f" (C = 6ND closed form: {a3['a_closed_form']:.3g}, {a3['b_closed_form']:.3g})")
        for p in a3["per_budget"]:
            lines.append(f"    C={p['budget']:.0e}: N_opt {_fmt(p['n_opt'], p.get('n_opt_ci'))}, tokens/param "
                         f"{_fmt(p['tokens_per_param'], p.get('tokens_per_param_ci'))}")
    h = fit["holdout"]
    if "error" in h:
        lines.append(f"leave one budget out: not computed ({h['error']})")
    else:
        lines.append(f"leave one budget out (approach 3, N = {h['n_key']}): mean |error| {h['mean_abs_error']:.4f}, "
                     f"max {h['max_abs_error']:.4f} {fit['y']}")
    lines.append(f"Chinchilla: ~{fit['chinchilla_tokens_per_param']:.0f} tokens/param; small-scale replications: "
                 f"~{fit['small_scale_tokens_per_param']:.0f}")
    return "\n".join(lines)

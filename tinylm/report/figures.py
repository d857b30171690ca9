"""Report figures: matplotlib (Agg, no display) line plots written as PNG files.

Each function takes rows already read from the artifacts and a path, draws one figure, and
returns the path, or None when there is nothing to draw (so a section can say what is missing).
Several runs on one figure are how the report compares runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

DPI = 150
plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
})


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(rows: list[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    pts = [(r[x], r[y]) for r in rows if _num(r.get(x)) and _num(r.get(y))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def loss_curves(runs: dict[str, list[dict]], path: Path, val_key: str = "val_bpb",
                val_label: str = "validation bits per byte") -> Path | None:
    """2 x 3: training loss (top) and validation metric (bottom) against tokens and against wall-clock
    minutes, then the learning rate (top right) and training tokens/s (bottom right) against the step."""
    if not any(series(rows, "tokens", "loss")[0] or series(rows, "tokens", val_key)[0] for rows in runs.values()):
        return None
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 4.0))
    panels = [(0, "loss", "training loss (nats/token)"), (1, val_key, val_label)]
    for row_i, key, label in panels:
        for col, (x, scale, xlabel) in enumerate((("tokens", 1e6, "tokens (millions)"),
                                                  ("elapsed_s", 60.0, "wall-clock (minutes)"))):
            ax = axes[row_i][col]
            for name, rows in runs.items():
                xs, ys = series(rows, x, key)
                if xs:
                    ax.plot([v / scale for v in xs], ys, marker="o" if key != "loss" else None,
                            ms=2.5, lw=1.2, label=name)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            if len(runs) > 1 and ax.get_legend_handles_labels()[0]:
                ax.legend()
    a, b = axes[0][2], axes[1][2]
    for name, rows in runs.items():
        a.plot(*series(rows, "step", "lr"), lw=1.2, label=name)
        xs, ys = series(rows, "step", "tok_per_s")
        b.plot(xs, [y / 1e3 for y in ys], lw=1.0, label=name)
    a.set_xlabel("step")
    a.set_ylabel("learning rate")
    a.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    b.set_xlabel("step")
    b.set_ylabel("tokens/s (thousands)")
    b.set_ylim(bottom=0)
    return _save(fig, path)


def stage_curves(rows: list[dict], keys: list[str], path: Path, title: str = "", overlay: bool = False) -> Path | None:
    """One small panel per metric present in `rows` (loss, val_loss, reward, kl, accuracy, ...), or
    all of them on one axes with `overlay` (for metrics on the same scale, like loss and val_loss)."""
    keys = [k for k in keys if series(rows, "step", k)[0]]
    if not keys:
        return None
    if overlay:
        fig, ax = plt.subplots(figsize=(4.2, 2.6))
        for k in keys:
            xs, ys = series(rows, "step", k)
            ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) < 20 else None, ms=3, label=k)
        ax.set_xlabel("step")
        ax.legend()
        if title:
            ax.set_title(title)
        return _save(fig, path)
    n = len(keys)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.3 * nrows), squeeze=False)
    for i, k in enumerate(keys):
        ax = axes[i // cols][i % cols]
        xs, ys = series(rows, "step", k)
        ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) < 20 else None, ms=2.5)
        ax.set_xlabel("step")
        ax.set_title(k)
    for j in range(n, nrows * cols):
        axes[j // cols][j % cols].axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def grouped_bars(groups: list[str], bars: dict[str, list[float]], path: Path, ylabel: str,
                 errors: dict[str, list[float]] | None = None, ylim=(0, 1), chance: list | None = None) -> Path | None:
    """Side-by-side bars: one group per category, one bar per model (with optional error bars and a
    black tick at each group's chance level)."""
    if not groups or not bars:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    width = 0.8 / len(bars)
    for i, (name, vals) in enumerate(bars.items()):
        xs = [g + (i - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        err = (errors or {}).get(name)
        ax.bar(xs, [v if _num(v) else 0 for v in vals], width, label=name,
               yerr=[e if _num(e) else 0 for e in err] if err else None, capsize=2)
    marked = [(g, c) for g, c in enumerate(chance or []) if _num(c)]
    for i, (g, c) in enumerate(marked):
        ax.hlines(c, g - 0.45, g + 0.45, colors="black", lw=1.2, label="chance" if i == 0 else None)
    ax.set_xticks(range(len(groups)))
    crowded = len(groups) > 6 or sum(len(g) for g in groups) > 45  # labels that would run into each other
    ax.set_xticklabels(groups, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    entries = len(bars) + (1 if chance else 0)
    ncols = entries if entries <= 4 else (entries + 1) // 2  # long model names: two legend rows, not one overflowing
    ax.legend(ncols=ncols, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
              fontsize="small" if entries > 4 else None)
    return _save(fig, path)


def sweep(rows: list[dict], x: str, y: str, path: Path, fit: tuple[float, float] | None = None,
          logx: bool = True) -> Path | None:
    """y against x for a sweep; `fit` = (a, b) draws y = a * x^b."""
    xs, ys = series(rows, x, y)
    if len(xs) < 2:
        return None
    order = sorted(range(len(xs)), key=xs.__getitem__)
    xs, ys = [xs[i] for i in order], [ys[i] for i in order]
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    ax.plot(xs, ys, "o-", lw=1.2, ms=4, label="measured")
    if fit:
        a, b = fit
        ax.plot(xs, [a * v ** b for v in xs], "--", lw=1.0, label=f"fit {y} = {a:.3g} x^{b:.3f}")
        ax.legend()
    if logx and min(xs) > 0:
        ax.set_xscale("log")
        if len(xs) <= 8:  # label the measured points themselves
            ax.set_xticks(xs, [f"{v:g}" if v < 1e5 else f"{v:.3g}" for v in xs])
            ax.minorticks_off()
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return _save(fig, path)


def histogram(groups: dict[str, list[float]], path: Path, xlabel: str, bins: int = 30) -> Path | None:
    """Overlaid histograms on a log x axis, each normalised to its own count (shares, so a small held-out
    set and a large training set compare by shape)."""
    groups = {k: [v for v in vs if _num(v) and v > 0] for k, vs in groups.items()}
    groups = {k: vs for k, vs in groups.items() if vs}
    if not groups:
        return None
    lo = min(min(vs) for vs in groups.values())
    hi = max(max(vs) for vs in groups.values())
    if hi <= lo:
        hi = lo * 10
    edges = [lo * (hi / lo) ** (i / bins) for i in range(bins + 1)]
    fig, ax = plt.subplots(figsize=(5.0, 2.4))
    for name, vs in groups.items():
        ax.hist(vs, bins=edges, weights=[1 / len(vs)] * len(vs), alpha=0.55, label=f"{name} ({len(vs):,})")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of documents")
    ax.legend()
    return _save(fig, path)


def isoflop(rows: list[dict], y: str, path: Path) -> Path | None:
    """IsoFLOP profiles: y against parameters (log x), one line per compute budget."""
    budgets = sorted({r["budget"] for r in rows if _num(r.get("budget"))})
    if not budgets:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    for b in budgets:
        pts = sorted((r["params"], r[y]) for r in rows if r.get("budget") == b and _num(r.get("params")) and _num(r.get(y)))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3.5, lw=1.1, label=f"{b:.0e} FLOPs")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a short log axis
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"final {y}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def deltas(panels: list[tuple[str, list[str], list, list]], path: Path, y: str) -> Path | None:
    """Horizontal bars of paired differences with 95% intervals, zero marked: one panel per
    (title, names, values, halves), side by side (e.g. equal tokens | equal wall-clock)."""
    panels = [(title, [(n, v, h) for n, v, h in zip(names, values, halves) if _num(v)])
              for title, names, values, halves in panels]
    panels = [(t, pts) for t, pts in panels if pts]
    if not panels:
        return None
    from matplotlib.ticker import MaxNLocator

    tallest = max(len(pts) for _, pts in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 if len(panels) == 1 else 3.4 * len(panels),
                                                        0.6 + 0.2 * tallest), squeeze=False)
    for ax, (title, pts) in zip(axes[0], panels):
        ys = range(len(pts))
        ax.barh(list(ys), [p[1] for p in pts], xerr=[p[2] if _num(p[2]) else 0 for p in pts], capsize=3,
                color=["#c0504d" if p[1] > 0 else "#4f81bd" for p in pts])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(list(ys), [p[0] for p in pts])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # signed tick labels collide at the default density
        ax.set_xlabel(f"change in {y} vs baseline")
        if len(panels) > 1:
            ax.set_title(title, fontsize="medium")
    return _save(fig, path)

"""Sweeps: a grid of ordinary pretraining runs, resumable cell by cell, into one results table.

Two kinds of axes, combined as a Cartesian product:
- model sizes x compute budgets (IsoFLOP profiles, Hoffmann et al. 2022 approach 2): for each shape
  "LxD" (n_layer x n_embd, heads of `head_dim`) and each budget C in FLOPs, the run trains for
  C / (FLOPs per token x tokens per step) steps; cells under `min_steps` steps are skipped and listed;
- any config field x values (`--grid model.pos_emb=rope,learned`) and seeds;
- named variants of the base config x seeds, for ablations (`--variant muon:train.optimizer=muon`):
  each variant is compared with the unchanged base ("baseline") trained with the same seeds, and the
  table gets an "ablation" block: per variant, mean and seed spread of val bpb and of its paired
  difference from the baseline. Variants train the base's steps (`--match tokens`, equal tokens
  when tokens per step are equal) or, with `--match wallclock`, the steps their measured
  throughput buys in the baseline's training time (`match_wallclock`).

Every cell is a run directory OUT/cells/<cell>/ written by the one Trainer (checkpoints, metrics.jsonl);
a finished cell leaves result.json and is skipped next time, a killed one resumes from its newest
checkpoint. Several `tinylm sweep` processes may share one OUT (one thread each on a 2-core machine):
each claims a cell with an exclusive lock on OUT/cells/<cell>.lock (released by the kernel when the
process ends, so a killed worker never strands a cell) and skips cells another process holds. After each cell the table is rewritten atomically: OUT/sweep.json (rows + how they were
made) and OUT/sweep.csv (the flat columns). Final validation bits per byte is measured on the same
fixed validation windows for every cell, so cells compare pairwise.

Run: tinylm sweep --out runs/sweeps/iso --train.data runs/default/data --sizes 2x64,4x128 --budgets 1e12,3e12
     tinylm sweep --out runs/sweeps/rope --grid model.pos_emb=rope,learned --seeds 1,2,3 --train.max_steps 300
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tinylm import config as C
from tinylm.util import atomic_write_text, load_average

ROW_COLUMNS = ["cell", "seed", "budget", "n_layer", "n_embd", "n_head", "params", "params_non_embedding",
               "params_matrices", "flops_per_token", "steps", "tokens", "flops", "wall_s", "eval_s",
               "loadavg_start", "loadavg_end", "val_bpb", "val_tokens"]


AXES = ("name", "sizes", "budgets", "grid", "seeds", "variants")  # may change between sittings of one sweep


class SweepError(ValueError):
    """Bad sweep input: one line naming the flag, file or field."""


@dataclass
class SweepSpec:
    name: str = "sweep"
    base: C.PretrainConfig = field(default_factory=C.PretrainConfig)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (n_layer, n_embd)
    budgets: list[float] = field(default_factory=list)  # training FLOPs per cell
    grid: dict[str, list[str]] = field(default_factory=dict)  # dotted config field -> values
    variants: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {field: value}; "baseline" added
    seeds: list[int] = field(default_factory=list)  # empty: the base config's seed
    head_dim: int = 32  # sizes: n_head = n_embd / head_dim
    min_steps: int = 10  # budget cells with fewer optimizer steps are skipped (recorded as such)
    warmup_frac: float = 0.1  # budget cells: warmup = min(base warmup, this fraction of the steps)
    val_windows: int = 128  # validation windows (of seq_len tokens) for the final bits per byte
    match: str = "tokens"  # variants: "tokens" (the base's steps) or "wallclock" (the steps its throughput buys)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["base"] = C.to_dict(self.base)
        d["sizes"] = [f"{L}x{D}" for L, D in self.sizes]
        return d


# --------------------------------------------------------------------------- parsing

def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)x(\d+)", part)
        if not m:
            raise SweepError(f"--sizes: {part!r} is not LAYERSxWIDTH (e.g. 4x128)")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def parse_budgets(text: str) -> list[float]:
    try:
        out = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise SweepError(f"--budgets: {text!r} is not a comma-separated list of FLOPs (e.g. 1e12,3e12)") from None
    if any(b <= 0 for b in out):
        raise SweepError(f"--budgets: {text!r}: budgets must be positive")
    return out


def parse_variants(items: list[str]) -> dict[str, dict[str, str]]:
    """["muon:train.optimizer=muon,train.lr=0.003", ...] -> {"muon": {...}}."""
    known = {name for name, _, _ in C.flat_fields(C.PretrainConfig)}
    out = {}
    for item in items:
        name, sep, rest = item.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name == "baseline":
            raise SweepError(f"--variant {item!r}: expected NAME:FIELD=V[,FIELD=V] with a new name (e.g. muon:train.optimizer=muon)")
        over = {}
        for kv in rest.split(","):
            k, eq, v = kv.partition("=")
            if not eq:
                raise SweepError(f"--variant {item!r}: {kv!r} is not FIELD=VALUE")
            if k.strip() not in known:
                raise SweepError(f"--variant {name}: unknown field {k.strip()!r}")
            over[k.strip()] = v.strip()
        out[name] = over
    return out


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    known = {name for name, _, _ in C.flat_fields(C.PretrainConfig)}
    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise SweepError(f"--grid {item!r}: expected FIELD=V1,V2 (e.g. model.pos_emb=rope,learned)")
        if name not in known:
            raise SweepError(f"--grid: unknown field {name!r} (fields look like model.n_embd or train.lr)")
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


# --------------------------------------------------------------------------- cells

@dataclass
class Cell:
    id: str
    seed: int
    budget: float | None
    size: tuple[int, int] | None
    values: dict[str, str]  # grid field -> value
    variant: str = ""
    cfg: C.PretrainConfig | None = None  # resolved; None when skipped
    skip: str = ""
    extra: dict = field(default_factory=dict)  # recorded in the cell's row (e.g. the equal-wall-clock plan)


def _short(x: float) -> str:
    """1e+12 -> 1e12, 3.5e+11 -> 3.5e11: compact and unique to 3 significant digits."""
    return f"{x:.3g}".replace("e+0", "e").replace("e+", "e")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def plan_cells(spec: SweepSpec, vocab_size: int) -> list[Cell]:
    """Every cell of the sweep with its resolved config (the model's vocabulary from the data), or the
    reason it is skipped. Raises SweepError on a bad value before anything runs."""
    from tinylm.model import flops_per_token

    base = dataclasses.replace(spec.base, model=dataclasses.replace(spec.base.model, vocab_size=vocab_size))
    combos = [dict(zip(spec.grid, vals)) for vals in itertools.product(*spec.grid.values())] if spec.grid else [{}]
    seeds = spec.seeds or [base.train.seed]
    variants = {"baseline": {}, **spec.variants} if spec.variants else {"": {}}
    cells = []
    # budgets outermost, smallest first: a sweep stopped early still has whole IsoFLOP profiles;
    # seeds outside variants, so every variant has its first seed before any has its third
    for budget, size, values, seed, variant in itertools.product(sorted(spec.budgets) or [None], spec.sizes or [None],
                                                                 combos, seeds, variants):
        parts = ([f"L{size[0]}-d{size[1]}"] if size else []) + ([f"C{_short(budget)}"] if budget else []) \
            + [f"{k.split('.')[-1]}={v}" for k, v in values.items()] + ([variant] if variant else []) + [f"s{seed}"]
        cell = Cell(_slug("_".join(parts)), seed, budget, size, values, variant)
        over: dict[str, object] = {"train.seed": seed, **values, **variants[variant]}
        if size:
            L, D = size
            if D % spec.head_dim:
                raise SweepError(f"--sizes: width {D} is not a multiple of --head_dim {spec.head_dim}")
            over.update({"model.n_layer": L, "model.n_embd": D, "model.n_head": D // spec.head_dim,
                         "model.n_kv_head": D // spec.head_dim})
        try:
            cfg = C.apply_overrides(base, over)
        except (ValueError, TypeError) as e:
            raise SweepError(f"cell {cell.id}: {e}") from None
        if budget:
            steps = round(budget / (flops_per_token(cfg.model) * cfg.train.total_batch_tokens))
            if steps < spec.min_steps:
                cell.skip = f"{steps} steps of {cfg.train.total_batch_tokens} tokens < --min_steps {spec.min_steps}"
                cells.append(cell)
                continue
            warmup = max(1, min(cfg.train.warmup_steps, round(spec.warmup_frac * steps)))
            cfg = C.apply_overrides(cfg, {"train.max_steps": steps, "train.warmup_steps": warmup})
        cell.cfg = cfg
        cells.append(cell)
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise SweepError("two cells of this sweep have the same name (a size or budget repeated?)")
    return cells


def match_wallclock(cells: list[Cell], out: Path, measure=None) -> dict:
    """Equal wall-clock ablations: every variant cell trains for the steps that its own measured
    throughput buys in the time the baseline's steps take, so a variant that is slower per token
    (an untied head, a wider MLP) gets fewer tokens, and a faster one more.

        time = baseline steps x baseline tokens/step / baseline tok/s
        steps(variant) = round(time x variant tok/s / variant tokens/step)

    Throughput is measured once per variant (a few Trainer steps on random tokens, `measure(cfg)`
    -> tok/s) and kept in OUT/throughput.json, so a sweep resumed in another sitting trains the same
    steps. Changes each variant cell's cfg in place; returns {variant: {"tok_per_s", "steps"}}.
    Raises SweepError without a baseline cell."""
    if measure is None:
        from tinylm.experiments.plan import measure_config

        measure = lambda cfg: measure_config(cfg)["tok_per_s"]  # noqa: E731
    path = out / "throughput.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    firsts = {}
    for c in cells:
        if c.cfg is not None:
            firsts.setdefault(c.variant, c)
    if "baseline" not in firsts:
        raise SweepError("--match wallclock needs variants (--variant) and their baseline")
    for name, c in firsts.items():
        key = json.dumps(C.to_dict(dataclasses.replace(c.cfg, train=dataclasses.replace(c.cfg.train, seed=0))),
                         sort_keys=True)
        if cache.get(name, {}).get("config") != key:
            cache[name] = {"tok_per_s": round(measure(c.cfg), 1), "config": key, "loadavg": load_average()}
    atomic_write_text(path, json.dumps(cache, indent=1) + "\n")
    base = firsts["baseline"].cfg.train
    seconds = base.max_steps * base.total_batch_tokens / cache["baseline"]["tok_per_s"]
    plan = {}
    for c in cells:
        if c.cfg is None:
            continue
        tps, tc = cache[c.variant]["tok_per_s"], c.cfg.train
        steps = max(1, round(seconds * tps / tc.total_batch_tokens))
        c.cfg = C.apply_overrides(c.cfg, {"train.max_steps": steps, "train.warmup_steps": min(tc.warmup_steps, steps)})
        c.extra = {"match": "wallclock", "planned_seconds": round(seconds, 1), "measured_tok_per_s": tps}
        plan[c.variant] = {"tok_per_s": tps, "steps": steps}
    return plan


# --------------------------------------------------------------------------- running

def _cell_train_config(cell: Cell, out: Path) -> C.PretrainConfig:
    """The cell's run: its own directory, no periodic evaluation or sampling (the final bits per byte
    is measured once, by the sweep), checkpoints often enough that a kill loses little."""
    steps = cell.cfg.train.max_steps
    return C.apply_overrides(cell.cfg, {
        "train.run_dir": str(out / "cells" / cell.id), "train.eval_every": 0, "train.sample_every": 0,
        "train.save_every": max(1, min(cell.cfg.train.save_every, steps)), "train.keep_last": 1,
        "train.log_every": max(1, min(cell.cfg.train.log_every, steps)),
    })


def run_cell(cell: Cell, out: Path, val_windows: int) -> dict:
    """Train (or resume) one cell, measure its final validation bits per byte, write result.json."""
    import torch

    from tinylm.bpb import batches_bpb
    from tinylm.data.loader import TokenLoader
    from tinylm.data.shards import load_prepared
    from tinylm.model import describe
    from tinylm.stages import pretrain

    cfg = _cell_train_config(cell, out)
    load_start = load_average()
    trainer = pretrain.build(cfg)
    summary = trainer.fit(resume=True)
    t0 = time.perf_counter()
    _, val_path, _ = load_prepared(cfg.train.data)
    if val_path is None:
        raise SweepError(f"{cfg.train.data}: no val.bin; a sweep needs validation data")
    T, B = cfg.model.seq_len, cfg.train.batch_size
    val = TokenLoader([val_path], B, T, shuffle=False, device=trainer.rt.device)
    n_batches = max(1, min(val_windows, val.n_windows) // B)
    batches = [val.next_batch() for _ in range(n_batches)]
    from tinylm.tokenizer import Tokenizer
    tok = Tokenizer.load(Path(cfg.train.data) / "tokenizer.json")
    trainer.model.eval()
    with torch.no_grad():
        bpb = batches_bpb(trainer.model, batches, torch.tensor(tok.token_bytes, dtype=torch.float32), trainer.rt.autocast)
    info = describe(cfg.model)
    row = {
        "cell": cell.id, "seed": cell.seed, "budget": cell.budget, **({"variant": cell.variant} if cell.variant else {}),
        "n_layer": cfg.model.n_layer, "n_embd": cfg.model.n_embd, "n_head": cfg.model.n_head,
        **{k: _typed(cfg, k) for k in cell.values},
        "params": info["params"], "params_non_embedding": info["params_non_embedding"],
        "params_matrices": info["params_matrices"], "flops_per_token": info["flops_per_token"],
        "steps": summary["step"], "tokens": summary["tokens"], "flops": summary["tokens"] * info["flops_per_token"],
        "wall_s": round(summary["elapsed_s"], 2), "eval_s": round(time.perf_counter() - t0, 2),
        "loadavg_start": load_start, "loadavg_end": load_average(),
        "val_bpb": bpb, "val_tokens": n_batches * B * T, **cell.extra,
        "hardware": _row_hardware(), "config": C.to_dict(cfg),
    }
    C.save_json(row, out / "cells" / cell.id / "result.json")
    return row


ROW_HARDWARE = ("cpu", "cpu_id", "cpu_isa", "cpu_count")  # what a row says of the machine that trained it


def _row_hardware(info: dict | None = None) -> dict:
    from tinylm.util import hardware_info

    info = hardware_info() if info is None else info
    return {k: info[k] for k in ROW_HARDWARE if k in info}


def _comparable(config: dict) -> dict:
    """A cell's config without what names its place on disk (run_dir, the data directory's path)."""
    c = json.loads(json.dumps(config))
    c.get("train", {}).pop("run_dir", None)
    c.get("train", {}).pop("data", None)
    return c


def reuse_cells(table_path, cells: list[Cell], out: Path) -> tuple[list[str], list[str]]:
    """Seed OUT with finished cells from another copy of this sweep's table (e.g. one committed under
    results/ from another machine), so that a grid grows there without retraining them: a row becomes
    OUT/cells/<cell>/result.json when its cell is in this sweep and its recorded config equals the
    cell's (run directory and data path aside: the caller vouches that the data are the same prepared
    data). Rows keep the hardware they ran on (wall-clock compares only within one machine): a row
    without its own gets the old table's. Cells already finished in OUT are left alone.
    Returns (reused cell ids, ids of rows whose config differs). Raises SweepError for a missing or
    malformed table."""
    path = Path(table_path)
    path = path / "sweep.json" if path.is_dir() else path
    if not path.is_file():
        raise SweepError(f"--reuse {path}: no such file")
    try:
        table = json.loads(path.read_text())
        rows = table["rows"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError(f"--reuse {path}: not a sweep table ({type(e).__name__}: {e})") from None
    by_id = {c.id: c for c in cells if not c.skip}
    reused, differ = [], []
    for row in rows:
        cell = by_id.get(row.get("cell")) if isinstance(row, dict) else None
        if cell is None or (out / "cells" / cell.id / "result.json").exists():
            continue
        if _comparable(row.get("config", {})) != _comparable(C.to_dict(_cell_train_config(cell, out))):
            differ.append(cell.id)
            continue
        row = {**row, "hardware": row.get("hardware") or _row_hardware(table.get("hardware") or {}),
               "reused_from": str(path)}
        C.save_json(row, out / "cells" / cell.id / "result.json")
        reused.append(cell.id)
    return reused, differ


@contextlib.contextmanager
def claim(path: Path, wait: bool = False):
    """An exclusive advisory lock on `path` (created if absent); yields True when this process holds it,
    False when another process does (`wait=False`). The kernel drops the lock when the holder exits,
    so a killed sweep never leaves a cell claimed. Where `fcntl` is missing (Windows) every claim
    succeeds: run one sweep process per OUT there."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _typed(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def ablation_summary(rows: list[dict], y: str = "val_bpb") -> dict:
    """Per variant: mean and sample standard deviation of `y` over seeds, and of its difference from
    the baseline with the same seed (paired: the seed fixes the initialisation and the data order)."""
    import statistics

    base = {r["seed"]: r[y] for r in rows if r.get("variant") == "baseline"}
    out = {}
    for name in dict.fromkeys(r["variant"] for r in rows if r.get("variant")):
        vals = {r["seed"]: r[y] for r in rows if r.get("variant") == name}
        deltas = [vals[s] - base[s] for s in vals if s in base]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else None  # noqa: E731
        out[name] = {"n_seeds": len(vals), f"{y}_mean": statistics.fmean(vals.values()), f"{y}_std": sd(list(vals.values())),
                     "delta_mean": statistics.fmean(deltas) if deltas else None, "delta_std": sd(deltas),
                     "n_paired": len(deltas), "wall_s_mean": statistics.fmean(r["wall_s"] for r in rows if r.get("variant") == name)}
    return out


def write_table(out: Path, spec: SweepSpec, rows: list[dict], skipped: list[dict], command: str) -> None:
    from tinylm.util import code_version, hardware_info

    x = "params" if spec.sizes else ("variant" if spec.variants else next(iter(spec.grid)) if spec.grid else "seed")
    table = {
        "sweep": spec.name, "kind": "isoflop" if spec.sizes and spec.budgets else "grid", "x": x,
        "y": "val_bpb", "command": command, "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_info(), "code_version": code_version(), "spec": spec.to_json(),
        "rows": rows, "skipped": skipped, "loadavg_end": load_average(),
    }
    if spec.variants:
        table["ablation"] = ablation_summary(rows)
    atomic_write_text(out / "sweep.json", json.dumps(table, indent=1) + "\n")
    cols = ROW_COLUMNS[:3] + (["variant"] if spec.variants else []) + list(spec.grid) + ROW_COLUMNS[3:]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([json.dumps(r.get(c)) if isinstance(r.get(c), list) else r.get(c) for c in cols])
    atomic_write_text(out / "sweep.csv", buf.getvalue())


def run(spec: SweepSpec, out, command: str = "", on_cell=None, reuse: str = "") -> dict:
    """Run every unfinished cell of `spec` into `out`; returns the table. `reuse`: a sweep table whose
    matching finished cells are taken over first (`reuse_cells`). `on_cell(cell)` is a test hook
    called before each cell trains."""
    from tinylm.tokenizer import Tokenizer

    out = Path(out)
    tok_path = Path(spec.base.train.data) / "tokenizer.json"
    if not tok_path.exists():
        raise SweepError(f"{spec.base.train.data}: no tokenizer.json; pass --train.data a `tinylm prepare` directory")
    cells = plan_cells(spec, Tokenizer.load(tok_path).vocab_size)
    spec_path = out / "sweep_spec.json"
    new = json.loads(json.dumps(spec.to_json()))
    if spec_path.exists():
        # the axes (sizes, budgets, grid values, seeds, variants) may grow or shrink between sittings:
        # a cell's result depends only on its own config. Anything else changing would mix two sweeps.
        old = {"match": "tokens", **json.loads(spec_path.read_text())}  # sweeps from before --match
        diff = sorted(k for k in set(old) | set(new) if k not in AXES and old.get(k) != new.get(k))
        if diff:
            raise SweepError(f"{out} holds a different sweep (differs in: {', '.join(diff)}); use another --out")
    if spec.match not in ("tokens", "wallclock"):
        raise SweepError(f"--match {spec.match!r}: choose tokens or wallclock")
    out.mkdir(parents=True, exist_ok=True)
    C.save_json(new, spec_path)
    if spec.match == "wallclock":
        with claim(out / "throughput.lock", wait=True):  # one worker measures, the others read its cache
            plan = match_wallclock(cells, out)
        for name, p in plan.items():
            print(f"sweep {spec.name}: equal wall-clock: {name} {p['tok_per_s']:,.0f} tok/s -> {p['steps']} steps", flush=True)
    command = command or "tinylm " + " ".join(sys.argv[1:])
    if reuse:
        reused, differ = reuse_cells(reuse, cells, out)
        print(f"sweep {spec.name}: reused {len(reused)} finished cell(s) from {reuse}"
              + (f"; {len(differ)} row(s) with another config not reused ({', '.join(differ[:3])}"
                 f"{' ...' if len(differ) > 3 else ''})" if differ else ""), flush=True)
    skipped = [{"cell": c.id, "reason": c.skip} for c in cells if c.skip]
    todo = [c for c in cells if not c.skip]
    result = lambda c: out / "cells" / c.id / "result.json"  # noqa: E731
    finished = lambda: [json.loads(result(c).read_text()) for c in todo if result(c).exists()]  # noqa: E731
    elsewhere = []
    for i, cell in enumerate(todo):
        if result(cell).exists():
            continue
        with claim(out / "cells" / f"{cell.id}.lock") as mine:
            if not mine or result(cell).exists():  # another worker holds it, or finished it meanwhile
                if not mine:
                    elsewhere.append(cell.id)
                continue
            print(f"sweep {spec.name}: cell {i + 1}/{len(todo)} {cell.id} ({cell.cfg.train.max_steps} steps)", flush=True)
            if on_cell is not None:
                on_cell(cell)
            row = run_cell(cell, out, spec.val_windows)
        print(f"sweep {spec.name}: {cell.id} val_bpb {row['val_bpb']:.4f} in {row['wall_s']:.0f}s "
              f"(load {row['loadavg_end'][0]})", flush=True)
        write_table(out, spec, finished(), skipped, command)
    rows = finished()
    write_table(out, spec, rows, skipped, command)
    running = [c for c in elsewhere if not result(next(x for x in todo if x.id == c)).exists()]
    if running:
        print(f"sweep {spec.name}: {len(running)} cell(s) were being trained by another process "
              f"({', '.join(running[:3])}{' ...' if len(running) > 3 else ''}); the table is complete once "
              "every worker has ended (or run this command again)", flush=True)
    return json.loads((out / "sweep.json").read_text())


def read_table(path) -> dict:
    """A sweep table (sweep.json, or the directory holding it), checked: SweepError names the problem."""
    p = Path(path)
    if p.is_dir():
        p = p / "sweep.json"
    try:
        obj = json.loads(p.read_text())
    except OSError as e:
        raise SweepError(f"{p}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise SweepError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("rows"), list):
        raise SweepError(f"{p}: not a sweep table (no \"rows\" list)")
    for i, r in enumerate(obj["rows"]):
        if not isinstance(r, dict):
            raise SweepError(f"{p}: row {i} is not an object")
    return obj


def format_ablation(table: dict, y: str = "val_bpb") -> str:
    """A Markdown table of an ablation sweep: per variant, mean ± seed spread and the paired Δ."""
    ab = table.get("ablation") or {}
    lines = [f"| variant | seeds | {y} (mean ± sd) | Δ vs baseline (mean ± sd, paired by seed) | wall s (mean) |",
             "|---|---|---|---|---|"]
    pm = lambda m, s: "n/a" if m is None else f"{m:+.4f}" + (f" ± {s:.4f}" if s is not None else "")  # noqa: E731
    for name, a in ab.items():
        sd = a.get(f"{y}_std")
        lines.append(f"| {name} | {a['n_seeds']} | {a[f'{y}_mean']:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")
                     + f" | {pm(a['delta_mean'], a['delta_std']) if name != 'baseline' else '0'} | {a['wall_s_mean']:.1f} |")
    return "\n".join(lines)

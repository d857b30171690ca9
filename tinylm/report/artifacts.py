"""Tolerant readers for what a run left on disk. The report only reads; nothing here writes.

A run directory (written by `tinylm pipeline` / `tinylm pretrain`, or a committed copy under
results/) may hold:

    config.json  prepare.json (or data/prepare.json)  tokenizer.meta.json   pretraining setup
    metrics.jsonl  samples.jsonl                                          pretraining curves
    meta.json or checkpoints/step_*/meta.json                             hardware, code version
    bpb-*.json  ifeval-*.json                                             single evaluations
    eval/eval.json  eval/samples.md                                       `tinylm eval` results
    pipeline.log                                                          console of the run
    sft/ rm/ dpo/ ppo/ grpo/    later stages, each with config.json, metrics.jsonl, samples.jsonl,
                                summary.json and optionally eval/eval.json (same layout as sft/)
    sweeps/*.json               scaling / ablation sweeps ({"rows": [...]} as bench/results/*.json)

A directory holding eval.json itself is read as an evaluation of a model that was not trained
here. Every file is optional: a missing file is None, an unreadable JSON file is None with the
error kept in `problems`, and a corrupt JSONL line is skipped and counted, never raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("sft", "rm", "rft", "dpo", "ppo", "grpo")  # later stages, in pipeline order
STAGE_LABELS = {"base": "base", "sft": "SFT", "rm": "RM", "rft": "RFT", "dpo": "DPO", "ppo": "PPO", "grpo": "GRPO",
                # method names of alignment.json that are recipes, not stage directories
                "rpo": "RPO (DPO + NLL)", "rft_rpo": "RFT then RPO"}


@dataclass
class FileLog:
    """What was read: every path, its JSONL line counts and what went wrong."""

    read: list[tuple[str, str]] = field(default_factory=list)  # (path, note)
    problems: list[str] = field(default_factory=list)
    corrupt_lines: int = 0

    def json(self, path: Path):
        if not path.is_file():
            return None
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.problems.append(f"{path}: unreadable JSON ({e.__class__.__name__}: {e})")
            return None
        if not isinstance(obj, dict):  # every artifact tinylm writes is one JSON object
            self.problems.append(f"{path}: not a JSON object; ignored")
            return None
        self.read.append((str(path), ""))
        return obj

    def jsonl(self, path: Path) -> list[dict]:
        """Rows of a JSONL file; lines that are not a JSON object are skipped and counted."""
        if not path.is_file():
            return []
        rows, bad = [], 0
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            self.problems.append(f"{path}: unreadable ({e})")
            return []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
        self.corrupt_lines += bad
        note = f"{len(rows)} lines" + (f", {bad} corrupt line{'s' if bad != 1 else ''} skipped" if bad else "")
        self.read.append((str(path), note))
        if bad:
            self.problems.append(f"{path}: {bad} corrupt line{'s' if bad != 1 else ''} skipped")
        return rows

    def text(self, path: Path) -> str | None:
        if not path.is_file():
            return None
        try:
            out = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            self.problems.append(f"{path}: unreadable ({e})")
            return None
        self.read.append((str(path), ""))
        return out


@dataclass
class Stage:
    """One training stage directory (sft/, dpo/, ...): its config, curves, samples and results."""

    name: str
    dir: Path
    config: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    summary: dict | None = None
    eval: dict | None = None
    eval_path: Path | None = None

    @property
    def present(self) -> bool:
        return bool(self.config or self.metrics or self.summary or self.eval)


@dataclass
class Run:
    """Everything the report knows about one RUN_DIR argument."""

    dir: Path
    name: str
    log: FileLog
    config: dict | None = None
    prepare: dict | None = None
    tokenizer: dict | None = None
    meta: dict | None = None
    meta_path: Path | None = None
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    bpb: dict[str, dict] = field(default_factory=dict)  # text name -> bpb-*.json
    ifeval: dict[str, dict] = field(default_factory=dict)  # "base", "sft-sampled", ... -> ifeval-*.json
    eval: dict | None = None
    eval_path: Path | None = None
    eval_samples: str | None = None
    pipeline_log: str | None = None
    alignment: dict | None = None  # alignment.json: SFT and each aligned model on the same held-out instructions
    stages: dict[str, Stage] = field(default_factory=dict)
    sweeps: dict[str, dict] = field(default_factory=dict)  # path -> sweep JSON

    @property
    def trained(self) -> bool:
        """Did this directory record a pretraining run (as opposed to an imported or evaluated model)?"""
        return bool(self.config or self.metrics)

    def model_info(self) -> dict:
        """Parameter counts and FLOPs/token from config.json; for an imported model (a checkpoint
        meta.json only), computed from its saved model config."""
        info = (self.config or {}).get("model_info")
        if isinstance(info, dict):
            return info
        m = self.model_config()
        if not m:
            return {}
        try:
            from tinylm.config import ModelConfig
            from tinylm.model import describe

            return describe(ModelConfig(**m))
        except (TypeError, ValueError) as e:
            self.log.problems.append(f"{self.meta_path}: model config not understood ({e})")
            return {}

    def model_config(self) -> dict:
        m = ((self.config or {}).get("config") or {}).get("model")
        if m is None:  # an imported model: its checkpoint meta.json holds the model config
            m = ((self.meta or {}).get("config") or {}).get("model")
        return m if isinstance(m, dict) else {}

    def train_config(self) -> dict:
        return ((self.config or {}).get("config") or {}).get("train") or {}

    def hardware(self) -> dict:
        return (self.meta or {}).get("hardware") or {}

    def label(self, stage: str = "base") -> str:
        """How a model of this run is named in the report: "gc-1m base", "gc-1m SFT", "gc-1m DPO"; a model
        that was not pretrained here (an import, an evaluation directory) is just its name."""
        if stage == "base" and not self.trained:
            return self.name
        return f"{self.name} {STAGE_LABELS.get(stage, stage)}"

    def evals(self) -> list[tuple[str, dict, Path]]:
        """(model label, eval.json, path) for the base model and every later stage that has one."""
        out = []
        if self.eval:
            out.append((self.label("base"), self.eval, self.eval_path))
        for s in self.stages.values():
            if s.eval:
                out.append((self.label(s.name), s.eval, s.eval_path))
        return out


def display_name(run_dir: Path, config: dict | None) -> str:
    """The run's name in the report: its directory name, except that the pipeline's generic `default`
    becomes <corpus initials>-<preset> ("gc-1m" for gutenberg-children at the 1m preset), as the
    committed runs are named, so a reader never sees a model called "default"."""
    name = run_dir.name
    if name != "default" or not isinstance(config, dict):
        return name
    source = str(((config.get("data") or {}).get("source")) or "")
    model = ((config.get("config") or {}).get("model")) or {}
    try:
        from tinylm.config import MODEL_PRESETS, model_preset
        import dataclasses

        preset = next((p for p in MODEL_PRESETS if dataclasses.asdict(model_preset(
            p, vocab_size=model.get("vocab_size", 4096), seq_len=model.get("seq_len", 256))) == model), None)
    except (TypeError, ValueError, AttributeError):
        preset = None
    corpus = Path(source).name if source else ""
    initials = "".join(w[0] for w in re.split(r"[-_]+", corpus) if w) if "-" in corpus or "_" in corpus else corpus
    return "-".join(x for x in (initials, preset) if x) or name


def _newest_meta(run_dir: Path) -> Path | None:
    if (run_dir / "meta.json").is_file():
        return run_dir / "meta.json"
    ckpts = sorted((run_dir / "checkpoints").glob("step_*/meta.json"))
    return ckpts[-1] if ckpts else None


def _read_eval(log: FileLog, d: Path) -> tuple[dict | None, Path | None]:
    path = d / "eval.json"
    obj = log.json(path)
    if obj is None:
        return None, None
    if not isinstance(obj, dict) or not isinstance(obj.get("tasks", {}), dict):
        log.problems.append(f"{path}: not a tinylm.eval/1 object with a 'tasks' mapping; ignored")
        return None, None
    tasks = {}
    for name, t in obj.get("tasks", {}).items():  # keep tasks whose metrics can be read
        if isinstance(t, dict) and isinstance(t.get("metrics", {}), dict):
            t["metrics"] = {k: m for k, m in t.get("metrics", {}).items() if isinstance(m, dict)}
            tasks[name] = t
        else:
            log.problems.append(f"{path}: task {name!r} is malformed; ignored")
    obj["tasks"] = tasks
    return obj, path


def read_stage(log: FileLog, run_dir: Path, name: str) -> Stage:
    d = run_dir / name
    st = Stage(name, d)
    if not d.is_dir():
        return st
    st.config = log.json(d / "config.json")
    st.metrics = log.jsonl(d / "metrics.jsonl")
    st.samples = log.jsonl(d / "samples.jsonl")
    st.summary = log.json(d / "summary.json")
    st.eval, st.eval_path = _read_eval(log, d / "eval")
    return st


def is_sweep(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("rows"), list) and len(obj["rows"]) >= 2 \
        and all(isinstance(r, dict) for r in obj["rows"])


def read_sweeps(log: FileLog, paths) -> dict[str, dict]:
    """Sweep JSONs ({"rows": [...]}, as bench/results/*.json) from files or directories of them."""
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in files:
            obj = log.json(f)
            if isinstance(obj, dict) and (obj.get("kind") == "isoflop" or isinstance(obj.get("ablation"), dict)):
                log.read[-1] = (str(f), "scaling / ablation table (own section)")
            elif is_sweep(obj) and _sweep_axes(obj) is not None:
                out[str(f)] = obj
            elif obj is not None:
                log.read[-1] = (str(f), "not a sweep; unused")
    return out


X_KEYS = ("params", "params_non_embedding", "flops", "compute", "train_tokens", "tokens", "vocab_size",
          "n_embd", "n_layer", "seq_len", "lr", "batch_tokens", "value")
Y_KEYS = ("val_bpb", "val_loss", "bits_per_byte", "loss", "final_loss")


def _sweep_axes(obj) -> tuple[str, str] | None:
    """(x key, y key) of a sweep: the first known varying input and the first known loss metric."""
    rows = obj["rows"]
    named = [k for k in (obj.get("x"), obj.get("sweep"), obj.get("benchmark")) if isinstance(k, str)]
    y = next((k for k in Y_KEYS if all(isinstance(r.get(k), (int, float)) for r in rows)), None)
    for k in named + list(X_KEYS):
        vals = [r.get(k) for r in rows]
        if all(isinstance(v, (int, float)) for v in vals) and len(set(vals)) > 1:
            return (k, y) if y else None
    return None


sweep_axes = _sweep_axes


def load_run(path) -> Run:
    """Read one RUN_DIR (or an evaluation directory holding eval.json). Never raises on content."""
    d = Path(path)
    log = FileLog()
    name = d.name if d.name not in ("eval", "") else d.parent.name
    run = Run(dir=d, name=name, log=log)
    if not d.is_dir():
        log.problems.append(f"{d}: not a directory")
        return run
    if (d / "eval.json").is_file() and not (d / "config.json").is_file():
        run.eval, run.eval_path = _read_eval(log, d)
        run.eval_samples = log.text(d / "samples.md")
        if run.eval:
            run.name = (run.eval.get("model") or {}).get("name") or name
        return run
    run.config = log.json(d / "config.json")
    run.name = display_name(d, run.config)
    run.prepare = log.json(d / "prepare.json") or log.json(d / "data" / "prepare.json")
    run.tokenizer = log.json(d / "tokenizer.meta.json")
    run.meta_path = _newest_meta(d)
    run.meta = log.json(run.meta_path) if run.meta_path else None
    run.metrics = log.jsonl(d / "metrics.jsonl")
    run.samples = log.jsonl(d / "samples.jsonl")
    for f in sorted(d.glob("bpb-*.json"), key=lambda p: p.stem):
        obj = log.json(f)
        if isinstance(obj, dict) and isinstance(obj.get("bits_per_byte"), (int, float)):
            run.bpb[f.stem[len("bpb-"):]] = obj
    for f in sorted(d.glob("ifeval-*.json"), key=lambda p: p.stem):
        obj = log.json(f)
        if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)):
            run.ifeval[f.stem[len("ifeval-"):]] = obj
    run.eval, run.eval_path = _read_eval(log, d / "eval")
    run.eval_samples = log.text(d / "eval" / "samples.md")
    run.alignment = log.json(d / "alignment.json")
    log_text = log.text(d / "pipeline.log")
    run.pipeline_log = re.sub(r"\r", "\n", log_text) if log_text else None
    for s in STAGES:
        st = read_stage(log, d, s)
        if st.present:
            run.stages[s] = st
    if (d / "sweeps").is_dir():
        run.sweeps = read_sweeps(log, [d / "sweeps"])
    return run

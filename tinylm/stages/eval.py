"""Evaluate any model on any set of tasks; compare results across models.

Run: tinylm eval --model runs/default --tasks default
     tinylm eval --model ../shared/data/checkpoints/stories260K.bin --tokenizer ../shared/data/checkpoints/tok512.bin
     tinylm eval --list_tasks
     tinylm compare runs/default/eval runs/default/sft/eval runs/eval/stories260K [--out compare.md]
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import torch

from tinylm.config import EvalConfig, to_dict
from tinylm.eval import harness, lm as lm_io, tasks as registry
from tinylm.runtime import resolve_device
from tinylm.util import atomic_write_text


def default_out(cfg: EvalConfig, lm) -> Path:
    if cfg.out:
        return Path(cfg.out)
    spec = Path(cfg.model)
    if lm.info.get("kind") == "tinylm":
        run_dir = spec if (spec / "checkpoints").is_dir() else Path(lm.info["checkpoint"]).parent.parent
        return run_dir / "eval"
    return Path("runs/eval") / lm.info["name"]


def run(cfg: EvalConfig) -> dict:
    names = registry.expand(cfg.tasks)  # unknown names fail here, before any model is loaded
    device = resolve_device(cfg.device)
    lm = lm_io.load(cfg.model, cfg.tokenizer, device)
    lm.batch_tokens = cfg.batch_tokens
    if cfg.dtype not in ("fp32", "bf16"):
        raise ValueError(f"--dtype must be fp32 or bf16, got {cfg.dtype!r}")
    lm.autocast_dtype = torch.bfloat16 if cfg.dtype == "bf16" else None
    torch.manual_seed(0)
    print(f"eval: {lm.info['name']} ({lm.info['kind']}, {lm.info.get('params', 0):,} parameters, context "
          f"{lm.max_length}) on {len(names)} task(s): {', '.join(names)}")
    command = "tinylm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""
    return harness.run(lm, names, cfg.limit, default_out(cfg, lm), {"config": to_dict(cfg), "command": command})


def list_tasks() -> None:
    print(f"{'task':<22} {'chance':>6}  protocol")
    for name in registry.available():
        cls = registry._REGISTRY[name]
        chance = f"{cls.chance:.2f}" if cls.chance else ""
        print(f"{name:<22} {chance:>6}  {cls.protocol}")
    print("\nsuites: " + "; ".join(f"{k} = {','.join(v)}" for k, v in registry.SUITES.items()))


def compare(paths: list[str], out: str = "") -> str:
    from tinylm.eval.compare import compare_markdown, load_results

    docs = [load_results(p) for p in paths]
    table = compare_markdown(docs)
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, table)
        atomic_write_text(Path(out).with_suffix(".json"),
                          json.dumps({"models": [d["model"] for d in docs], "sources": paths}, indent=1) + "\n")
    return table

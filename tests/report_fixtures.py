"""Synthetic run directories for the report tests, written in the formats the stages write."""

from __future__ import annotations

import json
from pathlib import Path

from tinylm import config as C
from tinylm.model import describe

REPO = Path(__file__).resolve().parent.parent
STORY = 'Tom said "50% of the cake & 3_000 crumbs" <|endoftext|> see http://www.gutenberg.org ~ {x} #1 \\ “ok” 😀'


def _jsonl(path: Path, rows, corrupt: str | None = None) -> None:
    lines = [json.dumps(r) for r in rows]
    if corrupt is not None:
        lines.insert(len(lines) // 2, corrupt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _ifeval(score, ci, stage, decoding="greedy"):
    return {"checkpoint": "runs/t/checkpoints/step_000040", "stage": stage, "task": "instructions", "decoding": decoding,
            "n_prompts": 30, "n_responses": 30, "score": score, "ci95": ci, "perfect_rate": 0.1, "reference_score": 1.0,
            "by_kind": {"title": {"score": score + 0.1, "ci95": 0.05, "n": 15}, "keywords": {"score": score - 0.05, "ci95": 0.04, "n": 15}},
            "config": dict(C.to_dict(C.IFEvalConfig(checkpoint="runs/t", out=f"runs/t/ifeval-{stage}.json"))),
            "responses": [{"kind": "title", "prompt": "Give this story a title: Tom & Sue", "response": STORY, "score": 1.0},
                          {"kind": "keywords", "prompt": "Use the words cat, hat.", "response": "A cat.", "score": 0.5}]}


def _eval(name, acc, bpb):
    return {"schema": "tinylm.eval/1",
            "model": {"spec": f"runs/{name}", "name": name, "kind": "tinylm", "params": 12345, "seq_len": 32},
            "date": "2026-11-26T17:00:00Z", "code_version": "abc1234", "hardware": {"device": "cpu", "threads": 2},
            "seconds": 12.5, "limit": None,
            "tasks": {
                "blimp": {"metrics": {"acc": {"value": acc, "stderr": 0.0019, "ci95": [acc - 0.004, acc + 0.004]}},
                          "primary": "acc", "higher_is_better": True, "chance": 0.5, "n": 67000, "num_fewshot": 0,
                          "truncated": 0, "malformed": 2, "protocol": "minimal pairs, higher log-likelihood wins",
                          "breakdown": {"phenomenon": {"anaphor_agreement": {"acc": 0.7, "n": 2000}}}},
                "wikitext": {"metrics": {"bits_per_byte": {"value": bpb, "stderr": None, "ci95": None},
                                         "word_perplexity": {"value": 900.0}},
                             "primary": "bits_per_byte", "higher_is_better": False, "chance": None, "n": 62},
                "hellaswag": {"metrics": {"acc_norm": {"value": 0.26, "stderr": 0.004, "ci95": [0.252, 0.268]}},
                              "primary": "acc_norm", "higher_is_better": True, "chance": 0.25, "n": 10042},
            }}


def make_run(root: Path, name: str = "t", stages: bool = True) -> Path:
    """A run directory in the formats tinylm's stages write (see tinylm/train/loop.py, stages/*.py)."""
    run = root / name
    model = C.ModelConfig(vocab_size=320, seq_len=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    train = C.TrainConfig(run_dir=f"runs/{name}", data=f"runs/{name}/data", max_steps=40, total_batch_tokens=4096)
    _json(run / "config.json", {"stage": "pretrain", "config": C.to_dict(C.PretrainConfig(model, train)),
                                "model_info": describe(model), "data": {"dir": f"runs/{name}/data", "source": "tinystories"}})
    split = lambda docs, nbytes, toks: {"files": ["x.bin"], "source_files": ["a.txt"], "documents": docs, "bytes": nbytes,
                                        "tokens": toks, "bytes_per_token": nbytes / toks, "replaced_utf8": 0, "seconds": 1.0}
    _json(run / "prepare.json", {"source": "tinystories", "dtype": "uint16", "vocab_size": 320,
                                 "config": C.to_dict(C.PrepareConfig(corpus="tinystories", out=f"runs/{name}/data")),
                                 "train": split(400, 123457, 41152), "val": split(40, 12001, 4000)})
    _json(run / "tokenizer.meta.json", {"config": C.to_dict(C.TokenizerConfig(corpus="tinystories", vocab_size=320)),
                                        "vocab_size": 320, "sha256": "ab" * 32, "seconds": 0.5,
                                        "trained_on": {"documents": 400, "bytes": 123457, "files": ["a.txt"]},
                                        "valid": {"bytes": 12001, "tokens": 4000, "bytes_per_token": 3.00025}})
    fpt = describe(model)["flops_per_token"]
    rows = [{"step": 0, "tokens": 0, "val_bpb": 3.4567891, "elapsed_s": 0.0}]
    for s in range(10, 41, 10):
        row = {"step": s, "tokens": s * 4096, "loss_tokens": s * 4096, "lr": 3e-3 * s / 40, "loss": 6.0 - s / 10,
               "grad_norm": 0.5, "tok_per_s": 20000.0 + s, "mfu": round((20000.0 + s) * fpt / 4e11, 4), "elapsed_s": s * 0.2}
        if s % 20 == 0:
            row["val_bpb"] = 3.0 - s / 100 + 0.0012345
        rows.append(row)
    _jsonl(run / "metrics.jsonl", rows, corrupt='{"step": 25, "tokens": 1024')  # torn by a kill mid-write
    _jsonl(run / "samples.jsonl", [{"prompt": "Once upon a time", "text": STORY, "step": 20},
                                   {"prompt": "", "text": "Lily & Tom <|endoftext|>", "step": 40}])
    _json(run / "checkpoints" / "step_000040" / "meta.json",
          {"stage": "pretrain", "step": 40, "code_version": "0.1.0+gabc1234",
           "hardware": {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "torch": "2.13.0+cpu"}})
    _json(run / "bpb-tinystories.json", {"checkpoint": f"runs/{name}/checkpoints/step_000040", "text": "tinystories",
                                         "bits_per_byte": 1.8765432, "bytes": 794373, "tokens": 228153,
                                         "config": C.to_dict(C.BpbConfig(checkpoint=f"runs/{name}", out="x.json"))})
    if not stages:
        return run
    _json(run / "ifeval-base.json", _ifeval(0.123, 0.031, "base"))
    _json(run / "ifeval-sft.json", _ifeval(0.2468, 0.0399, "sft"))
    sft_cfg = C.SFTConfig(checkpoint=f"runs/{name}")
    _json(run / "sft" / "config.json", {"stage": "sft", "config": {"model": C.to_dict(model), "train": C.to_dict(sft_cfg.train),
                                                                   "sft": C.to_dict(sft_cfg)}})
    _jsonl(run / "sft" / "metrics.jsonl",
           [{"step": 0, "tokens": 0, "val_loss": 4.5781, "elapsed_s": 0.0}]
           + [{"step": s, "tokens": s * 1000, "loss_tokens": s * 600, "lr": 1e-3, "loss": 4 - s / 100, "grad_norm": 1.0,
               "tok_per_s": 9000.0, "mfu": None, "elapsed_s": s / 10, **({"val_loss": 3.3754} if s == 30 else {})}
              for s in (10, 20, 30)])
    _jsonl(run / "sft" / "samples.jsonl", [{"prompt": "Write a poem.", "text": "Roses & violets 100%", "step": 30}])
    _json(run / "sft" / "summary.json", {"step": 30, "tokens": 30000, "elapsed_s": 3.0, "val_loss": 3.3754,
                                         "data": {"mixture": "alpaca:1,instructions:1", "train_conversations": 6777,
                                                  "train_dropped_too_long": 22, "val_conversations": 49},
                                         "padding": {"computed_positions": 30000, "padding_fraction": 0.0746}})
    _jsonl(run / "dpo" / "metrics.jsonl", [{"step": s, "loss": 0.69 - s / 100, "reward_margin": s / 50,
                                            "accuracy": 0.5 + s / 100, "kl": s / 1000, "elapsed_s": s} for s in (1, 2, 3)])
    _json(run / "dpo" / "summary.json", {"step": 3, "val_accuracy": 0.6543, "elapsed_s": 3.0, "beta": 0.1})
    _json(run / "eval" / "eval.json", _eval(name, 0.6123, 1.9))
    (run / "eval" / "samples.md").write_text("# Samples\n\n**Prompt:** Once\n\n**Model:** once & again <b>bold</b>\n")
    _json(run / "sft" / "eval" / "eval.json", _eval(name, 0.6001, 1.95))
    return run

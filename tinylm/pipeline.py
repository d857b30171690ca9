"""The default pipeline that `tinylm pipeline` (and `make run`) runs: every stage in order, each
skipped when its artifact is up to date, training stages resumed from their newest checkpoint.

    tokenizer -> prepare -> pretrain -> bpb -> sample -> eval -> sft -> ifeval -> eval -> align -> report -> chat

It only orchestrates: each stage is `tinylm.stages.<name>.run(config)`, and no stage imports another.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tinylm import config as C

# What `tinylm pipeline` runs, in order: the one list that `tinylm --help`, `tinylm pipeline --help`,
# the Makefile and the README quote (tests/test_cli_errors.py checks them all against a real run).
PIPELINE_STAGES = ("tokenizer", "prepare", "pretrain", "bpb", "sample", "eval (base)", "sft", "ifeval (base, sft)",
                   "eval (sft)", "align (+ ifeval)", "report", "chat")
PIPELINE_ORDER = " -> ".join(PIPELINE_STAGES)


def _up_to_date(result_json: Path, checkpoint) -> bool:
    """An evaluation result that was computed on the newest checkpoint need not be computed again."""
    from tinylm.train.checkpoint import find_checkpoint

    try:
        return json.loads(result_json.read_text())["checkpoint"] == str(find_checkpoint(checkpoint))
    except (OSError, ValueError, KeyError):
        return False


def _pipeline_eval(p: C.PipelineConfig, ckpt: Path) -> None:
    """`tinylm eval` of one model into <ckpt>/eval, unless it already holds these tasks for the
    newest checkpoint."""
    from tinylm.eval import tasks as registry
    from tinylm.stages import eval as eval_stage
    from tinylm.train.checkpoint import find_checkpoint

    if not p.eval_tasks:
        return
    try:
        done = json.loads((ckpt / "eval" / "eval.json").read_text())
        if (done["model"]["checkpoint"] == str(find_checkpoint(ckpt)) and done.get("limit") == (p.eval_limit or None)
                and set(registry.expand(p.eval_tasks)) <= set(done["tasks"])):
            return
    except (OSError, ValueError, KeyError):
        pass
    eval_stage.run(C.EvalConfig(model=str(ckpt), tasks=p.eval_tasks, limit=p.eval_limit, device=p.device))


ALIGN_DEFAULTS = {"grpo": C.GRPOConfig, "dpo": C.DPOConfig, "ppo": C.PPOConfig, "rft": C.RFTConfig}


def _pipeline_align(p: C.PipelineConfig, run: Path, sft_dir: Path) -> Path | None:
    """The alignment stage after SFT (p.align), then its ifeval score. DPO with the chosen answers'
    NLL (RPO, nll_weight 1.0) on on-policy pairs is the default: of the methods measured on the
    reference SFT model it gave the best greedy held-out score (results/gc-1m-align/alignment.json)."""
    import importlib

    from tinylm.stages import ifeval

    if p.align in ("", "none"):
        return None
    if p.align not in ALIGN_DEFAULTS:
        raise ValueError(f"unknown alignment method {p.align!r}; choose from {', '.join(ALIGN_DEFAULTS)} or none")
    cls = ALIGN_DEFAULTS[p.align]
    out = run / p.align
    train = dataclasses.replace(cls().train, run_dir=str(out), device=p.device,
                                max_steps=p.align_steps or cls().train.max_steps)
    from tinylm.data.preference import TooFewPairsError

    try:
        importlib.import_module(f"tinylm.stages.{p.align}").run(cls(checkpoint=str(sft_dir), train=train), resume=True)
    except TooFewPairsError as e:  # e.g. a tiny smoke-test model whose answers all tie: the run still ends with its report
        print(f"align ({p.align}): skipped, {e}; the report and chat use the SFT model")
        return None
    if not _up_to_date(run / f"ifeval-{p.align}.json", out):
        ifeval.run(C.IFEvalConfig(checkpoint=str(out), n=p.ifeval_n, device=p.device, out=str(run / f"ifeval-{p.align}.json")))
    return out


def check_pipeline(p: C.PipelineConfig) -> None:
    """Check the whole pipeline configuration before the first stage: numeric ranges, the preset, the
    corpus, the SFT mixture and the evaluation tasks (a typo must not cost a tokenizer run)."""
    from tinylm.data.sources import resolve
    from tinylm.eval import tasks as registry
    from tinylm.tasks.mixture import check_mixture

    C.validate(p)
    C.model_preset(p.preset)
    if not (Path(p.run_dir) / "data" / "prepare.json").exists():
        resolve(p.corpus)  # the named corpus exists (or the path does)
    if p.sft_steps > 0:
        check_mixture(p.sft_mixture)
    if p.eval_tasks:
        registry.expand(p.eval_tasks)


def run_pipeline(p: C.PipelineConfig) -> None:
    """The default pipeline, PIPELINE_STAGES in order (bpb on 2 corpora, two chat answers at the end).
    Each stage is skipped when its artifact already exists, and training stages resume from their
    newest checkpoint, so running it again continues where it stopped."""
    from tinylm.stages import bpb, ifeval, prepare, pretrain, report, sample, sft, tok_train

    check_pipeline(p)
    run = Path(p.run_dir)
    tok_path, data = run / "tokenizer.json", run / "data"
    if not tok_path.exists():
        tok_train.run(C.TokenizerConfig(corpus=p.corpus, vocab_size=p.vocab_size, out=str(tok_path)))
    if not (data / "prepare.json").exists():
        prepare.run(C.PrepareConfig(corpus=p.corpus, tokenizer=str(tok_path), out=str(data),
                                    max_train_bytes=p.max_train_bytes))
    train = dataclasses.replace(C.PretrainConfig().train, run_dir=str(run), data=str(data), max_steps=p.max_steps,
                                device=p.device, compile=p.compile, tracker=p.tracker)
    pretrain.run(C.PretrainConfig(model=C.model_preset(p.preset), train=train, repeat_frac=p.repeat_frac), resume=True)
    for text in ("gutenberg-children", "tinystories"):
        out = run / f"bpb-{text}.json"
        if _up_to_date(out, run):
            continue
        try:
            bpb.run(C.BpbConfig(checkpoint=str(run), text=text, device=p.device, out=str(out)))
        except Exception as e:  # a missing evaluation corpus should not hide the trained model
            print(f"bpb {text}: skipped ({e})")
    sample.run(C.SampleConfig(checkpoint=str(run), prompt="Once upon a time", num_samples=2, device=p.device))
    _pipeline_eval(p, run)
    if p.sft_steps <= 0:
        if p.report:
            report.run([str(run)], out=str(run / "report"))
        return
    sft_dir = run / "sft"
    sft_train = dataclasses.replace(C.SFTConfig().train, run_dir=str(sft_dir), max_steps=p.sft_steps,
                                    device=p.device, compile=p.compile, tracker=p.tracker)
    sft.run(C.SFTConfig(checkpoint=str(run), mixture=p.sft_mixture, train=sft_train), resume=True)
    for name, ckpt in (("base", run), ("sft", sft_dir)):
        if _up_to_date(run / f"ifeval-{name}.json", ckpt):
            continue
        ifeval.run(C.IFEvalConfig(checkpoint=str(ckpt), n=p.ifeval_n, device=p.device,
                                  out=str(run / f"ifeval-{name}.json")))
    _pipeline_eval(p, sft_dir)
    aligned = _pipeline_align(p, run, sft_dir)
    if p.report:
        report.run([str(run)], out=str(run / "report"))
    cfg = C.ChatConfig(checkpoint=str(aligned or sft_dir), device=p.device, temperature=0.0)
    from tinylm.stages import chat

    for prompt in ("Write a short story about a dog named Max that uses the words ball, happy and garden.",
                   "Give three tips for staying healthy."):
        print(f"user> {prompt}\nbot> ", end="")
        chat.generate_once(dataclasses.replace(cfg, prompt=prompt))

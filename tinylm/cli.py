"""The `tinylm` command: one subcommand per stage, flags generated from the config dataclasses.

    tinylm info                      presets, parameter counts, FLOPs; corpora and the data directory
    tinylm tokenizer  [--field v]    train a byte-level BPE tokenizer          (TokenizerConfig)
    tinylm prepare    [--field v]    tokenize a corpus into token shards       (PrepareConfig)
    tinylm pretrain   [--preset P] [--model.field v] [--train.field v] [--resume]   (PretrainConfig)
    tinylm sft        [--field v] [--train.field v] [--resume]   instruction tuning         (SFTConfig)
    tinylm sample     [--field v]    generate text from a checkpoint           (SampleConfig)
    tinylm chat       [--field v]    chat in the terminal                      (ChatConfig)
    tinylm generate   --prompt P     one chat answer                           (ChatConfig)
    tinylm ifeval     [--field v]    instruction-following score               (IFEvalConfig)
    tinylm bpb        [--field v]    bits per byte of a checkpoint on a text   (BpbConfig)
    tinylm eval       --model M --tasks a,b [--limit N]   evaluation harness        (EvalConfig)
    tinylm compare    RESULTS...     one table across models' eval.json files
    tinylm export     --format hf|llama2c|gguf --checkpoint C --out D [--outtype f16]   (ExportConfig)
    tinylm import     --format hf|llama2c --path P [--tokenizer T] --out RUN    (ImportConfig)
    tinylm rm|rft|dpo|ppo|grpo [--field v] [--resume]   alignment after SFT (RMConfig, RFTConfig, ...)
    tinylm pipeline   [--field v]    the default pipeline, stage after stage    (PipelineConfig)
    tinylm sweep      --out DIR [--sizes LxD,..] [--budgets C,..] [--grid F=a,b] [--seeds s,..]   grid of runs
    tinylm scaling    SWEEP [--out DIR]   IsoFLOP + parametric scaling-law fits with bootstrap intervals, figures
    tinylm plan       --fit FIT.json --minutes M | --flops F   recommended shape and steps for a budget
    tinylm report     RUN_DIR [RUN_DIR ...] [--out DIR] [--no_pdf]   technical report from artifacts
    tinylm board      RUN_DIR [RUN_DIR ...] [--port P]   training curves of runs side by side (TensorBoard)
    tinylm serve      --model M [--port P] [--api_key K]   OpenAI-compatible API + chat page  (ServeConfig)

Every field of a stage's config is a flag; `--config FILE.json` loads a saved config first and
`--print_config` prints the resolved config without running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import json
import os
import re
import sys
import typing
from pathlib import Path

from tinylm import config as C
from tinylm.pipeline import PIPELINE_ORDER, PIPELINE_STAGES, run_pipeline  # noqa: F401 (PIPELINE_STAGES: tests)
from tinylm.util import load_average


@functools.lru_cache(maxsize=None)
def _field_help(cls) -> dict[str, str]:
    """Inline `# comments` after dataclass fields become --help text."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+):[^=\n]+=[^#\n]*#\s*(.+)$", src, re.M):
            helps[m.group(1)] = m.group(2).strip()
    return helps


def _add_config_flags(p: argparse.ArgumentParser, cls) -> None:
    for name, typ, default in C.flat_fields(cls):
        owner = cls  # the dataclass that declares this field, for its help comment
        for section in name.split(".")[:-1]:
            owner = typing.get_type_hints(owner)[section]
        help_text = _field_help(owner).get(name.split(".")[-1], "")
        metavar = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(typ, "STR")
        p.add_argument(f"--{name}", dest=f"cfg:{name}", default=None, metavar=metavar,
                       help=f"{help_text + ' ' if help_text else ''}(default: {default})")


def _build_config(cls, args, base=None):
    cfg = base if base is not None else cls()
    if getattr(args, "config", None):
        try:
            saved = json.loads(Path(args.config).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {args.config}: not a readable JSON config ({e})") from e
        saved = saved.get("config", saved) if isinstance(saved, dict) else saved  # accept a run's config.json too
        if not isinstance(saved, dict):
            raise ValueError(f"--config {args.config}: expected a JSON object of {cls.__name__} fields")
        try:
            cfg = C.from_dict(cls, saved)
        except TypeError as e:
            raise ValueError(f"--config {args.config}: does not match {cls.__name__} ({e})") from e
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    cfg = C.apply_overrides(cfg, overrides)
    C.validate(cfg)
    return cfg


STAGES = {
    "tokenizer": (C.TokenizerConfig, "train a byte-level BPE tokenizer on a corpus sample"),
    "prepare": (C.PrepareConfig, "tokenize a corpus into token shards (train-NNN.bin, val.bin)"),
    "pretrain": (C.PretrainConfig, "pretrain a GPT on prepared shards (resumable)"),
    "sft": (C.SFTConfig, "instruction-tune a pretrained checkpoint on a mixture of chat tasks (resumable)"),
    "sample": (C.SampleConfig, "generate text from a checkpoint (raw continuation)"),
    "chat": (C.ChatConfig, "chat with a model in the terminal (multi-turn, streaming, KV cache)"),
    "generate": (C.ChatConfig, "answer one prompt with the chat template (--prompt)"),
    "ifeval": (C.IFEvalConfig, "constraint satisfaction on held-out checkable instructions"),
    "bpb": (C.BpbConfig, "bits per byte of a checkpoint on a text file or corpus"),
    "eval": (C.EvalConfig, "evaluate a model (tinylm, llama2.c .bin or Hugging Face) on benchmark tasks"),
    "export": (C.ExportConfig, "export a checkpoint to Hugging Face (LlamaForCausalLM), llama2.c or GGUF (llama.cpp)"),
    "import": (C.ImportConfig, "import a Hugging Face Llama directory or a llama2.c .bin as a tinylm checkpoint"),
    "rm": (C.RMConfig, "train a reward model (SFT model + scalar head, Bradley-Terry) on preference pairs (resumable)"),
    "rft": (C.RFTConfig, "best-of-n rejection-sampling fine-tuning of an SFT model (resumable)"),
    "dpo": (C.DPOConfig, "direct preference optimisation of an SFT model (resumable)"),
    "ppo": (C.PPOConfig, "PPO (InstructGPT recipe) with checker and/or reward-model rewards (resumable)"),
    "grpo": (C.GRPOConfig, "GRPO with verifiable rewards from the constraint checker (resumable)"),
    "serve": (C.ServeConfig, "serve a model: OpenAI-compatible HTTP API and a chat page at /"),
    "pipeline": (C.PipelineConfig, f"run the default pipeline: {PIPELINE_ORDER}"),
}


ALIGN_STAGES = ("rm", "rft", "dpo", "ppo", "grpo")  # tinylm/stages/<name>.py, each with run(cfg, resume)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinylm", allow_abbrev=False,
        description="Train your own Llama-style GPT from scratch: tokenizer -> data -> pretraining -> "
                    "sampling and evaluation. Each subcommand is one stage; its config fields are flags.",
        epilog="Example: tinylm pipeline --max_steps 500     (see README.md for the full walkthrough)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="model presets (parameters, FLOPs/token), named corpora, data directory",
                   allow_abbrev=False)
    for name, (cls, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=f"{help_text}. Config: {cls.__name__}.",
                           usage=f"tinylm {name} [--flag VALUE ...]   (tinylm {name} --help lists every flag)",
                           allow_abbrev=False)
        p.add_argument("--config", metavar="FILE.json", help="load a saved config (e.g. a run's config.json) first")
        p.add_argument("--print_config", action="store_true", help="print the resolved config as JSON and exit")
        if name in ("pretrain", "sft", *ALIGN_STAGES):
            p.add_argument("--resume", action="store_true",
                           help="continue from the newest checkpoint in train.run_dir (exact: same losses)")
        if name == "eval":
            p.add_argument("--list_tasks", action="store_true", help="list the evaluation tasks and suites, then exit")
        if name == "pretrain":
            p.add_argument("--preset", choices=list(C.MODEL_PRESETS), default=None,
                           help=f"model size preset (default: {C.DEFAULT_MODEL}); --model.* flags override it")
        _add_config_flags(p, cls)
    p = sub.add_parser("compare", help="one table across models from their eval.json results (with chance and CIs)",
                       allow_abbrev=False)
    p.add_argument("results", nargs="+", metavar="RESULTS", help="eval output directories or eval.json files")
    p.add_argument("--out", default="", help="also write the table to this Markdown file")
    _add_report_parser(sub)
    p = sub.add_parser("board", help="training curves of several runs side by side in TensorBoard",
                       description="Open TensorBoard on the runs' tb/ event files (--train.tracker tensorboard); a run "
                                   "trained without a tracker gets tb/ written from its metrics.jsonl first.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run directories (pretraining, sft, ...)")
    p.add_argument("--port", type=int, default=6006, help="TensorBoard's port (default: 6006)")
    p.add_argument("--print_only", action="store_true", help="print the tensorboard command instead of running it")
    _add_experiment_parsers(sub)
    return parser


def _add_experiment_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of pretraining runs (sizes x FLOP budgets, or fields x seeds), resumable "
                                     "cell by cell, into one results table",
                       description="Each cell is an ordinary pretraining run in OUT/cells/; finished cells are skipped, "
                                   "a killed one resumes. Writes OUT/sweep.json and OUT/sweep.csv. --model.* and "
                                   "--train.* flags set the base config of every cell. Start the same command "
                                   "again (e.g. one per core, each with --train.threads 1) and the processes "
                                   "share the cells.")
    p.add_argument("--out", required=True, help="sweep directory (cells, sweep.json, sweep.csv)")
    p.add_argument("--name", default="", help="sweep name in the table (default: the --out directory's name)")
    p.add_argument("--sizes", default="", help="model shapes LAYERSxWIDTH, comma-separated (e.g. 2x64,4x128)")
    p.add_argument("--budgets", default="", help="training FLOPs per cell, comma-separated (e.g. 1e12,3e12); steps follow")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="a config field and its values (repeatable: the grid is their product)")
    p.add_argument("--seeds", default="", help="train.seed values, comma-separated (default: the base seed)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:FIELD=V[,FIELD=V]",
                   help="an ablation arm, compared with the unchanged base ('baseline') at the same seeds (repeatable)")
    p.add_argument("--head_dim", type=int, default=32, help="--sizes: attention head width (n_head = width / head_dim)")
    p.add_argument("--min_steps", type=int, default=10, help="skip budget cells with fewer optimizer steps")
    p.add_argument("--warmup_frac", type=float, default=0.1, help="budget cells: warmup at most this fraction of the steps")
    p.add_argument("--val_windows", type=int, default=128, help="validation windows for the final bits per byte")
    p.add_argument("--match", choices=("tokens", "wallclock"), default="tokens",
                   help="variants train the baseline's steps (tokens) or the steps their measured throughput buys "
                        "in the baseline's time (wallclock)")
    p.add_argument("--reuse", default="", metavar="TABLE",
                   help="a sweep.json of this same sweep (e.g. committed from another machine): its finished cells "
                        "with an identical config are taken over, not retrained")
    p.add_argument("--preset", choices=list(C.MODEL_PRESETS), default=None, help="base model preset (default: 1m)")
    _add_config_flags(p, C.PretrainConfig)

    p = sub.add_parser("scaling", help="fit scaling laws to an IsoFLOP sweep (approaches 2 and 3, bootstrap intervals, figures)")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep directory or its sweep.json")
    p.add_argument("--out", default="", help="output directory for fit.json and the figures (default: the sweep directory)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    p.add_argument("--y", default="val_bpb", help="the loss column to fit")

    p = sub.add_parser("plan", help="measure throughput of candidate shapes and recommend shape + steps for a budget")
    p.add_argument("--fit", required=True, help="fit.json written by `tinylm scaling`")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="wall-clock budget on this machine")
    budget.add_argument("--flops", type=float, help="training FLOPs budget")
    p.add_argument("--sizes", default="", help="candidate shapes LAYERSxWIDTH (default: the sweep's)")
    p.add_argument("--head_dim", type=int, default=0, help="attention head width (default: the sweep's)")
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per shape")
    p.add_argument("--out", default="", help="also write the plan as JSON here")
    _add_config_flags(p, C.PretrainConfig)


def cmd_scaling(args) -> None:
    from tinylm.experiments import scaling, sweep

    table = sweep.read_table(args.sweep)
    out = Path(args.out or (args.sweep if Path(args.sweep).is_dir() else Path(args.sweep).parent))
    out.mkdir(parents=True, exist_ok=True)
    fit = scaling.analyse(table, y=args.y, n_boot=args.bootstrap)
    fit["command"] = "tinylm " + " ".join(sys.argv[1:])
    fit["figures"] = scaling.plot(table, fit, out)
    C.save_json(fit, out / "fit.json")
    print(scaling.summary(fit))
    print(f"wrote {out / 'fit.json'} and {', '.join(str(out / f) for f in fit['figures'])}")


def cmd_plan(args) -> None:
    from tinylm.experiments import plan, sweep

    for flag, v in (("--minutes", args.minutes), ("--flops", args.flops)):
        if v is not None and not v > 0:  # checked before measuring throughput or reading the fit
            raise ValueError(f"{flag} must be > 0, got {v}")
    try:
        fit = json.loads(Path(args.fit).read_text())
        base_model = fit.get("base_model") or {}
        shapes = sweep.parse_sizes(args.sizes) if args.sizes else [tuple(s) for s in fit["shapes"]]
        head_dim = args.head_dim or fit.get("head_dim") or 32
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--fit {args.fit}: not a fit written by `tinylm scaling` ({e})") from None
    base = C.PretrainConfig(model=C.from_dict(C.ModelConfig, base_model) if base_model else C.ModelConfig())
    cfg = _build_config(C.PretrainConfig, args, base)
    cands = [plan.shape_config(cfg.model, L, D, head_dim) for L, D in shapes]
    table = plan.measure_throughput(cands, cfg.train, steps=args.steps)
    result = plan.recommend(table, fit, minutes=args.minutes, flops=args.flops, batch_tokens=cfg.train.total_batch_tokens)
    print(plan.format_plan(result))
    if args.out:
        C.save_json({**result, "command": "tinylm " + " ".join(sys.argv[1:]), "loadavg": load_average()}, args.out)


def _int_list(flag: str, text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a comma-separated list of integers") from None


def cmd_sweep(args) -> None:
    from tinylm.experiments import sweep

    base = _build_config(C.PretrainConfig, args, C.PretrainConfig(model=C.model_preset(args.preset or C.DEFAULT_MODEL)))
    spec = sweep.SweepSpec(name=args.name or Path(args.out).name, base=base, sizes=sweep.parse_sizes(args.sizes),
                           budgets=sweep.parse_budgets(args.budgets), grid=sweep.parse_grid(args.grid),
                           variants=sweep.parse_variants(args.variant),
                           seeds=_int_list("--seeds", args.seeds), head_dim=args.head_dim,
                           min_steps=args.min_steps, warmup_frac=args.warmup_frac, val_windows=args.val_windows,
                           match=args.match)
    if spec.budgets and not spec.sizes:
        raise sweep.SweepError("--budgets needs --sizes (an IsoFLOP grid is model sizes x budgets)")
    table = sweep.run(spec, args.out, reuse=args.reuse)
    print(f"sweep {spec.name}: {len(table['rows'])} cells in {Path(args.out) / 'sweep.json'}"
          + (f", {len(table['skipped'])} skipped (too few steps)" if table["skipped"] else ""))
    if table.get("ablation"):
        print(sweep.format_ablation(table))


def _add_report_parser(sub) -> None:
    """`tinylm report` reads artifacts only, so it takes run directories rather than a config."""
    p = sub.add_parser("report", help="write the technical report (md, html, tex, pdf) from run artifacts",
                       allow_abbrev=False,
                       description="Write report.md, a self-contained report.html and report.tex/.pdf from what "
                                   "one or more runs left on disk. Several runs are compared side by side.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or evaluation directories with eval.json)")
    p.add_argument("--out", default=None, help="output directory (default: <first RUN_DIR>/report)")
    p.add_argument("--no_pdf", action="store_true", help="write md, html and tex only")
    p.add_argument("--sweeps", nargs="*", default=None, metavar="PATH",
                   help="sweep / scaling-fit / ablation JSON files or directories for the scaling and ablation sections "
                        "(default: bench/results, results/scaling, results/ablations where present)")
    p.add_argument("--watts", type=float, default=None, help="assumed power draw for the cost estimate (default: from the hardware)")
    p.add_argument("--usd_per_kwh", type=float, default=None, help="electricity price (default: 0.15)")
    p.add_argument("--usd_per_hour", type=float, default=None, help="cloud price of the machine per hour (default: from the hardware)")
    p.add_argument("--data_stats_s", type=float, default=300.0,
                   help="time budget (s) for the data statistics (document lengths, 13-gram contamination), computed once "
                        "and cached as RUN/data_stats.json; 0 uses only the cache")


def cmd_info() -> None:
    from tinylm.data.sources import CORPORA, DATA_ENV, data_dir
    from tinylm.model import describe

    print(f"{'preset':<7} {'layers':>6} {'d':>5} {'heads':>5} {'kv':>3} {'params':>12} {'non-emb':>12} {'MFLOP/tok':>10}")
    for name in C.MODEL_PRESETS:
        cfg = C.model_preset(name)
        d = describe(cfg)
        mark = " (default)" if name == C.DEFAULT_MODEL else ""
        print(f"{name:<7} {cfg.n_layer:>6} {cfg.n_embd:>5} {cfg.n_head:>5} {cfg.n_kv_head:>3} "
              f"{d['params']:>12,} {d['params_non_embedding']:>12,} {d['flops_per_token'] / 1e6:>10.2f}{mark}")
    print(f"(vocab {C.ModelConfig.vocab_size}, context {C.ModelConfig.seq_len}; training FLOPs per token, PaLM convention)\n")
    root = data_dir()
    print(f"data directory: {root or f'none (set ${DATA_ENV}); named corpora use the Hugging Face Hub'}")
    for c in CORPORA.values():
        print(f"  {c.name:<20} {c.about}")


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _reject_unknown(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> None:
    """An unknown flag is reported by the subcommand it was given to, with that subcommand's usage
    and the closest flags it does have (a typo such as --train.max_step)."""
    sub = _subparser(parser, command)
    known = [o for a in sub._actions for o in a.option_strings]
    flags = [x for x in extras if x.startswith("-")] or extras
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=3, cutoff=0.8)
        hints.append(f"{flag} (did you mean {' or '.join(close)}?)" if close else flag)
    sub.error(f"unrecognized argument(s): {', '.join(hints)}; `tinylm {command or ''} --help` lists them all".replace("  ", " "))


def _debug() -> bool:
    return os.environ.get("TINYLM_DEBUG", "") not in ("", "0")


def main(argv=None) -> int:
    """Run one subcommand. Bad input of any kind ends in one line `error: ...` on stderr and exit
    status 1 (usage errors: the subcommand's usage and status 2); TINYLM_DEBUG=1 re-raises instead."""
    return one_line_errors(_main, argv)


def one_line_errors(fn, *args) -> int:
    """fn(*args) with main's error contract: its return value, or one `error:` line and status 1
    (130 on Ctrl-C); TINYLM_DEBUG=1 re-raises. Module entry points (python -m tinylm.eval.alignment) use it too."""
    from safetensors import SafetensorError

    try:
        return fn(*args)
    except KeyboardInterrupt:
        if _debug():
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, SafetensorError, RuntimeError) as e:
        # DataError, ChatFormatError, ResumeMismatchError, ConfigError, JSON errors are ValueErrors;
        # NonFiniteLossError and a checkpoint that cannot be loaded are RuntimeErrors; a full disk
        # or a missing file is an OSError. Their messages name the file or flag and the problem.
        if _debug():
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg} (TINYLM_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, with what is needed to report it
        if _debug():
            raise
        msg = " ".join(str(e).split())
        print(f"error: unexpected {type(e).__name__}: {msg} (this is a bug in tinylm; run again with "
              "TINYLM_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1


def _main(argv=None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _reject_unknown(parser, args.command, extras)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "info":
        cmd_info()
        return 0
    if args.command == "compare" or (args.command == "eval" and args.list_tasks):
        from tinylm.stages import eval as eval_stage

        eval_stage.list_tasks() if args.command == "eval" else eval_stage.compare(args.results, args.out)
        return 0
    if args.command == "board":
        from tinylm.train.tracker import TrackerError, board

        try:
            return board(args.runs, args.port, args.print_only)
        except (TrackerError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if args.command == "report":
        from tinylm.stages import report

        sweeps = args.sweeps if args.sweeps is not None else [p for p in ["bench/results", "results/scaling", "results/ablations"]
                                                              if Path(p).is_dir()]
        report.run(args.runs, out=args.out, pdf=not args.no_pdf, sweeps=sweeps, watts=args.watts,
                   usd_per_kwh=args.usd_per_kwh, usd_per_hour=args.usd_per_hour,
                   data_stats_s=args.data_stats_s or None)
        return 0
    if args.command in EXPERIMENTS:  # SweepError / FitError are ValueErrors: main() prints their one line
        EXPERIMENTS[args.command](args)
        return 0
    cls = STAGES[args.command][0]
    sub = _subparser(parser, args.command)
    try:
        base = C.PretrainConfig(model=C.model_preset(args.preset or C.DEFAULT_MODEL)) if args.command == "pretrain" else None
        cfg = _build_config(cls, args, base)
    except ValueError as e:
        sub.error(str(e))
    if args.print_config:
        print(json.dumps(C.to_dict(cfg), indent=2))
        return 0
    if args.command == "tokenizer":
        from tinylm.stages import tok_train
        tok_train.run(cfg)
    elif args.command == "prepare":
        from tinylm.stages import prepare
        prepare.run(cfg)
    elif args.command == "pretrain":
        from tinylm.stages import pretrain
        pretrain.run(cfg, resume=args.resume)
    elif args.command == "sft":
        from tinylm.stages import sft
        sft.run(cfg, resume=args.resume)
    elif args.command == "chat":
        from tinylm.stages import chat
        chat.chat(cfg)
    elif args.command == "generate":
        from tinylm.stages import chat
        if not cfg.prompt:
            sub.error("generate needs --prompt")
        chat.generate_once(cfg)
    elif args.command == "ifeval":
        from tinylm.stages import ifeval
        ifeval.run(cfg)
    elif args.command in ("export", "import"):
        from tinylm.stages import convert
        convert.export(cfg) if args.command == "export" else convert.import_model(cfg)
    elif args.command == "sample":
        from tinylm.stages import sample
        sample.run(cfg)
    elif args.command == "bpb":
        from tinylm.stages import bpb
        bpb.run(cfg)
    elif args.command == "eval":
        from tinylm.stages import eval as eval_stage
        doc = eval_stage.run(cfg)
        if not doc["run_tasks"]:  # every task skipped: say so with a failing status
            raise ValueError("no task produced a result: " + "; ".join(f"{n}: {e}" for n, e in doc["run_errors"].items()))
    elif args.command in ALIGN_STAGES:
        import importlib
        importlib.import_module(f"tinylm.stages.{args.command}").run(cfg, resume=args.resume)
    elif args.command == "serve":
        from tinylm.stages import serve
        serve.run(cfg)
    elif args.command == "pipeline":
        run_pipeline(cfg)
    return 0


EXPERIMENTS = {"sweep": cmd_sweep, "scaling": cmd_scaling, "plan": cmd_plan}


if __name__ == "__main__":
    sys.exit(main())

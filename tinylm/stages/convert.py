"""Move models in and out of tinylm: Hugging Face (transformers), llama2.c and GGUF (llama.cpp) formats.

Run: tinylm export --format hf --checkpoint runs/default/sft --out runs/default/export-hf
     tinylm export --format llama2c --checkpoint runs/default --out runs/default/export-llama2c
     tinylm export --format gguf --checkpoint runs/default/sft --out runs/default/model.gguf [--outtype f16|q8_0]
     tinylm import --format llama2c --path ../shared/data/checkpoints/stories260K.bin \\
                   --tokenizer ../shared/data/checkpoints/tok512.bin --out runs/stories260K
     tinylm import --format hf --path some-llama-dir --out runs/imported
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tinylm.config import ExportConfig, ImportConfig, to_dict
from tinylm.interop import hf as hf_io
from tinylm.interop import llama2c, read_model
from tinylm.tokenizer import Tokenizer
from tinylm.train.checkpoint import find_checkpoint, load_model, save_checkpoint
from tinylm.util import atomic_write_text, code_version


def scores_of(ckpt: Path) -> dict[str, str]:
    """Evaluation results computed on exactly this checkpoint, found beside its run (bpb-*.json,
    ifeval-*.json in the run directory or its parent), for the model card."""
    found = {}
    run = ckpt.parent.parent
    for f in sorted([*run.glob("*.json"), *run.parent.glob("*.json")]):
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(r, dict) or r.get("checkpoint") != str(ckpt):
            continue
        if "bits_per_byte" in r:
            found[f"bits per byte, {r['text']}"] = f"{r['bits_per_byte']:.4f}"
        elif "score" in r and "task" in r:
            found[f"{r['task']} constraint satisfaction ({r['decoding']})"] = f"{r['score']:.3f} ± {r['ci95']:.3f}"
    return found


def export(cfg: ExportConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: an existing file; export writes a directory (model and tokenizer files), "
                         "so choose a new path or a directory")
    model, tok, meta = load_model(cfg.checkpoint, "cpu")
    if cfg.format == "hf":
        ckpt = find_checkpoint(cfg.checkpoint)
        hf_io.export_hf(model, tok, meta, out, scores_of(ckpt), checkpoint=ckpt)
    elif cfg.format == "llama2c":
        out.mkdir(parents=True, exist_ok=True)
        llama2c.export(model, tok, out / "model.bin", out / "tokenizer.bin")
    elif cfg.format == "gguf":
        from tinylm.interop import gguf as gguf_io

        from tinylm.report.model_card import card_for_checkpoint

        into_dir = out.suffix != ".gguf"
        if into_dir:
            out = out / f"model-{cfg.outtype}.gguf"
        gguf_io.write_gguf(model, tok, out, cfg.outtype, meta)
        # the model card beside the file, as GGUF repositories carry it: README.md in an export
        # directory; <name>.md beside a named file (a README.md already there is not the export's)
        ckpt = find_checkpoint(cfg.checkpoint)
        card = out.parent / "README.md" if into_dir else out.with_suffix(".md")
        atomic_write_text(card, card_for_checkpoint(ckpt, meta, scores_of(ckpt), fmt="gguf"))
    else:
        raise ValueError(f"unknown export format {cfg.format!r}; choose hf, llama2c or gguf")
    print(f"export: {find_checkpoint(cfg.checkpoint)} -> {out} ({cfg.format}"
          + (f", {cfg.outtype}, {out.stat().st_size / 1e6:.1f} MB; model card {card.name})" if cfg.format == "gguf" else ")"))
    return out


def import_model(cfg: ImportConfig) -> Path:
    if not cfg.path:
        raise ValueError("import needs --path")
    model, tok = read_model(cfg.format, cfg.path, cfg.tokenizer)
    model_cfg = model.cfg
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = Path(tok.path)
        if cfg.format == "llama2c":  # the checkpoint holds the converted tokenizer.json
            tok_path = Path(tmp) / "tokenizer.json"
            llama2c.hf_tokenizer(cfg.tokenizer).save(str(tok_path))  # as converted, no runtime flags
            tok = Tokenizer.load(tok_path)
        elif cfg.format == "hf":  # the export's special-token marks removed (interop/hf.py)
            tok_path = Path(tmp) / "tokenizer.json"
            tok_path.write_text(hf_io.unmarked_tokenizer_json(Path(tok.path).read_text(encoding="utf-8")),
                                encoding="utf-8")
            tok = Tokenizer.load(tok_path)
        if tok.vocab_size != model_cfg.vocab_size:
            print(f"note: tokenizer has {tok.vocab_size} tokens, the model {model_cfg.vocab_size}")
        meta = {"stage": "import", "tokens_seen": 0, "config": {"model": to_dict(model_cfg)},
                "tokenizer_sha256": tok.sha256, "code_version": code_version(),
                "source": {"format": cfg.format, "path": str(cfg.path), "tokenizer": str(cfg.tokenizer or tok_path)}}
        ckpt = save_checkpoint(cfg.out, 0, model, None, meta, tokenizer_path=tok_path)
    print(f"import: {cfg.path} ({cfg.format}, {model.num_params():,} parameters) -> {ckpt}")
    return ckpt

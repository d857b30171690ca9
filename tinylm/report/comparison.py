"""Comparison with published small models, on one footing: bits per byte on TinyStories text.

Published numbers are cross-entropy losses in nats per token of each model's own tokenizer, on the
authors' own validation split. A loss per token becomes bits per byte with the tokenizer's bytes per
token on the text:

    bpb = loss_nats / ln 2 x tokens / byte            (tokens / byte = 1 / bytes per token)

so a converted number is only as good as (a) the bytes per token, measured here with the published
tokenizer on TinyStories text, and (b) how close that text is to the authors' validation split. (a) is
exact for our text; its spread between two TinyStories samples (train head vs validation head) is
given as the conversion's uncertainty. (b) is checked where a published model's weights are here:
stories260K is scored by the same harness and its measured loss is set against its reported one.
Rows say "measured here" or "reported, converted".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tinylm.report.document import Missing, Paragraph, Section, Table, ffloat, fpct

LN2 = math.log(2)

# llama2.c README (karpathy/llama2.c, "Models" table): val loss in nats/token on its TinyStories split.
PUBLISHED = [
    {"model": "stories260K", "params": 260e3, "tokenizer": "tok512", "val_loss": 1.297,
     "source": "llama2.c README", "context": 512},
    {"model": "stories15M", "params": 15e6, "tokenizer": "llama2-32k", "val_loss": 1.072,
     "source": "llama2.c README", "context": 256},
    {"model": "stories42M", "params": 42e6, "tokenizer": "llama2-32k", "val_loss": 0.847,
     "source": "llama2.c README", "context": 1024},
    {"model": "stories110M", "params": 110e6, "tokenizer": "llama2-32k", "val_loss": 0.760,
     "source": "llama2.c README", "context": 1024},
]
TOKENIZER_FILES = {"tok512": "checkpoints/tok512.bin", "llama2-32k": "checkpoints/tokenizer.bin"}
TEXTS = {"valid": "tinystories/valid-v1-head.txt", "train": "tinystories/train-00.txt.xz"}


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """Nats per token -> bits per byte: loss / ln 2 / (bytes per token)."""
    return loss_nats / LN2 / bytes_per_token


def nats_per_token(bpb: float, bytes_per_token: float) -> float:
    """Bits per byte -> nats per token (the inverse of `bits_per_byte`)."""
    return bpb * LN2 * bytes_per_token


def _read(path: Path, limit: int = 2_000_000) -> str:
    import lzma

    raw = lzma.open(path).read(limit) if path.name.endswith(".xz") else path.read_bytes()[:limit]
    return raw.decode("utf-8", errors="replace").replace("<|endoftext|>", "")


def measure(data_root: Path) -> dict:
    """Bytes per token of each published tokenizer on each TinyStories text (llama2.c's convention: each
    text encoded with a leading space piece, as SentencePiece's add_dummy_prefix does)."""
    from tinylm.interop.llama2c import hf_tokenizer

    out = {}
    for name, rel in TOKENIZER_FILES.items():
        path = data_root / rel
        if not path.is_file():
            continue
        tok = hf_tokenizer(path)
        out[name] = {}
        for tname, trel in TEXTS.items():
            if not (data_root / trel).is_file():
                continue
            text = _read(data_root / trel)
            paras = [p for p in text.split("\n") if p.strip()]
            n_bytes = sum(len(p.encode("utf-8")) for p in paras)
            n_tok = sum(len(e.ids) for e in tok.encode_batch(paras))
            out[name][tname] = {"bytes": n_bytes, "tokens": n_tok, "bytes_per_token": n_bytes / max(n_tok, 1)}
    return out


def published_stats(cache_dir: Path | None, compute: bool = True) -> dict | None:
    """measure() over the data directory, cached as CACHE/published_tokenizers.json (only the cache is
    read when `compute` is False)."""
    cache = Path(cache_dir) / "published_tokenizers.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            return json.loads(cache.read_text())
        except (OSError, ValueError):
            pass
    if not compute:
        return None
    try:
        from tinylm.data.sources import data_dir

        root = data_dir()
    except Exception:  # noqa: BLE001
        root = None
    if root is None:
        return None
    try:
        stats = measure(root)
    except Exception:  # noqa: BLE001 - a tokenizer file that cannot be read leaves the rows unconverted
        return None
    if cache is not None and stats:
        try:
            from tinylm.util import atomic_write_text

            atomic_write_text(cache, json.dumps(stats, indent=1) + "\n")
        except OSError:
            pass
    return stats


def _measured_ts(run) -> tuple[float, float] | None:
    """(bits per byte, bytes per token) of a run's own model on the TinyStories validation head."""
    b = run.bpb.get("tinystories")
    if isinstance(b, dict) and all(isinstance(b.get(k), (int, float)) for k in ("bits_per_byte", "bytes", "tokens")):
        return b["bits_per_byte"], b["bytes"] / b["tokens"]
    t = ((run.eval or {}).get("tasks") or {}).get("bpb-tinystories") or {}
    m = t.get("metrics") or {}
    bpb, tppl = (m.get("bits_per_byte") or {}).get("value"), (m.get("token_perplexity") or {}).get("value")
    if isinstance(bpb, (int, float)) and isinstance(tppl, (int, float)) and bpb > 0 and tppl > 1:
        return bpb, math.log2(tppl) / bpb
    return None


def comparison_section(ctx) -> Section:
    s = Section("Comparison with published models")
    cache_dir = next((r.dir for r in ctx.trained), None)
    stats = getattr(ctx, "published", None)
    if stats is None:
        stats = published_stats(cache_dir, compute=getattr(ctx, "compute_stats", False))
    rows, notes = [], []
    measured = {}
    for r in ctx.runs:
        got = _measured_ts(r)
        if got is None:
            continue
        bpb, bpt = got
        label = r.label("base")
        measured[r.name] = (bpb, bpt)
        params = r.model_info().get("params")
        rows.append([label, f"{params / 1e6:.2f}M" if isinstance(params, (int, float)) else "n/a",
                     ffloat(bpt, 3), ffloat(nats_per_token(bpb, bpt), 3), ffloat(bpb, 3), "measured here"])
    for p in PUBLISHED:
        bt = ((stats or {}).get(p["tokenizer"]) or {})
        v, t = (bt.get("valid") or {}).get("bytes_per_token"), (bt.get("train") or {}).get("bytes_per_token")
        if isinstance(v, (int, float)):
            conv = bits_per_byte(p["val_loss"], v)
            unc = abs(conv - bits_per_byte(p["val_loss"], t)) if isinstance(t, (int, float)) else None
            cell = ffloat(conv, 3) + (f" ± {unc:.3f}" if unc is not None else "")
            bpt_cell = ffloat(v, 3)
        else:
            cell, bpt_cell = "n/a (tokenizer not here)", "n/a"
        rows.append([f"{p['model']} (llama2.c)", f"{p['params'] / 1e6:.2f}M", bpt_cell, ffloat(p["val_loss"], 3), cell,
                     f"reported ({p['source']}), converted"])
    if not rows:
        return s.add(Missing("Not available: no model here was scored on TinyStories (bpb-tinystories) and the "
                             "published tokenizers are not in the data directory."))
    s.add(Paragraph("The closest published models at this scale are llama2.c's `stories*` Llama models, trained on "
                    "TinyStories (Eldan & Li 2023). Their published losses are nats per token of their own tokenizers "
                    "on their own validation split; they become bits per byte as bpb = loss / ln 2 x tokens / byte, "
                    "with tokens per byte measured here by running each published tokenizer over the TinyStories "
                    "validation head. The ± is how much that conversion moves when the bytes per token are measured on "
                    "the TinyStories train head instead, i.e. its sensitivity to the text sample."))
    s.add(Table(["model", "parameters", "bytes/token", "loss (nats/token)", "bits/byte (TinyStories)", "how"], rows,
                align="lrrrrl",
                caption="This run and published small models on TinyStories, in bits per byte (lower is better). "
                        "Measured rows are scored by the same harness on the TinyStories validation head; "
                        "reported rows are the authors' losses converted with measured bytes per token.",
                source="bpb-tinystories.json / eval.json of each run; llama2.c README; published_tokenizers.json"))
    s260 = measured.get("stories260K")
    v260 = (((stats or {}).get("tok512") or {}).get("valid") or {}).get("bytes_per_token")
    if s260 and isinstance(v260, (int, float)):
        here = nats_per_token(s260[0], s260[1])
        notes.append(f"Cross-check: stories260K measured here costs {ffloat(here, 3)} nats per token on our text, against "
                     f"{ffloat(PUBLISHED[0]['val_loss'], 3)} reported on llama2.c's split ({fpct(here / PUBLISHED[0]['val_loss'] - 1)} "
                     "apart). Our text is the v1 validation head scored as one document without per-story BOS tokens, "
                     "llama2.c's split starts each story with BOS; converted rows are therefore optimistic against measured "
                     "ones by about that much, and only differences larger than that gap are resolved.")
    notes.append("The TinyStories paper's own models (TinyStories-1M to -33M) are evaluated there by GPT-4 grading, not by "
                 "a loss it reports as a number, and their weights are not in this data directory, so they have no row.")
    s.add(Paragraph(" ".join(notes)))
    return s

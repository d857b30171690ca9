"""Statistics of a run's pretraining text for the report's data section (Llama 2 §2.1 / GPT-3 App. C style):
document lengths, a short excerpt, bytes per token on each evaluation text, and the contamination check
(word n-gram overlap between the training text and every evaluation set).

    stats = data_stats(run_dir, corpus="gutenberg-children", tasks=["wikitext", "hellaswag", ...])

This is the one part of the report that reads text rather than artifacts, so it is computed once and
cached as RUN/data_stats.json (keyed by the corpus files' sizes and mtimes, the task list and n); the
report only reads that file. It is bounded in time: past `budget_s` seconds the scan of the training
text stops and the result says which fraction of the training bytes it covered.

Contamination follows GPT-3 (Brown et al. 2020, App. C) and Llama 2 (Touvron et al. 2023, App. A.6) in
spirit: text is lower-cased and split into words ([a-z0-9]+ runs), an evaluation example is "dirty" when
any of its word 13-grams also occurs in the training text, and the share of the evaluation set's
distinct 13-grams found in training is reported too. Examples shorter than 13 words cannot be checked
and are counted as such. N-grams are compared by a 64-bit polynomial hash of word ids (collisions are
negligible at these sizes: ~1e8 n-grams against 2^64 values).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from tinylm.util import load_average

SCHEMA = "tinylm.data_stats/1"
N = 13
WORD = re.compile(r"[a-z0-9]+")
_P = np.uint64(1_000_003)  # hash base


class _Vocab:
    """Word -> small integer id, shared by training and evaluation text within one computation."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def encode(self, text: str) -> np.ndarray:
        get = self.ids.setdefault
        words = WORD.findall(text.lower())
        return np.fromiter((get(w, len(self.ids) + 1) for w in words), dtype=np.uint64, count=len(words))


def ngram_hashes(ids: np.ndarray, n: int = N) -> np.ndarray:
    """64-bit hashes of every window of n consecutive word ids (uint64 arithmetic wraps, as intended):
    h = sum_k ids[i + k] * P^(n-1-k) mod 2^64.   ids: (L,) -> (max(L - n + 1, 0),)"""
    if len(ids) < n:
        return np.zeros(0, dtype=np.uint64)
    m = len(ids) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _P + ids[k:k + m]
    return h


def eval_texts(task: str) -> list[str]:
    """The examples of an evaluation task as plain texts (context + correct continuation), from the
    same files the task scores. Raises when the task's data is not available."""
    from tinylm.eval import tasks as registry
    from tinylm.eval.tasks.multiple_choice import MultipleChoiceTask

    t = registry.get(task)
    if isinstance(t, MultipleChoiceTask):
        docs, _ = t.docs()
        return [d.contexts[d.gold] + d.continuations[d.gold] for d in docs]
    if hasattr(t, "documents"):
        return list(t.documents())
    if task == "wikitext":
        from tinylm.eval.tasks.base import find_data
        from tinylm.eval.tasks.perplexity import wikitext_pages

        return wikitext_pages(find_data(task, "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw").read_text("utf-8"))
    if task == "lambada":
        from tinylm.eval.tasks.base import find_data, read_jsonl

        return read_jsonl(find_data(task, "lambada/lambada_test.jsonl"), lambda r: r["text"], task)[0]
    if task == "blimp":
        from tinylm.eval.tasks.blimp import read_blimp

        return [r["sentence_good"] for r in read_blimp(task)[0]]
    raise ValueError(f"{task}: no texts to check (a generation task)")


# evaluation tasks that read the same data: checked once, under the first name
SAME_DATA = {"mmlu-5shot": "mmlu", "mmlu-cloze": "mmlu", "mmlu-cloze-5shot": "mmlu", "ifeval-sampled": "ifeval"}
NOT_CHECKED = {"ifeval": "its instructions are generated from the pretraining corpora by design",
               "samples": "a fixed prompt set for generation, not scored",
               "copy": "its passages come from the validation splits (see the held-out split row)"}


def _files_key(files) -> list:
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append([str(f), st.st_size, int(st.st_mtime)])
        except OSError:
            out.append([str(f), None, None])
    return out


def _is_prose(p: str) -> bool:
    """A paragraph of running text: 35+ words, 2+ sentence ends, mostly lower-case words (not a contents list)."""
    words = p.split()
    caps = sum(1 for w in words if w[:1].isupper())
    return len(words) >= 35 and len(re.findall(r"[.!?][\"'”’]?\s", p + " ")) >= 2 and caps / len(words) < 0.25 \
        and not re.search(r"\bchapter\b", p, re.I)


def _excerpt(doc: str, chars: int = 320) -> str:
    """The first real prose paragraph of a document (titles and contents lists skipped), cut at a word."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]
    pick = next((p for p in paras if _is_prose(p)), "")
    pick = " ".join(pick.split())
    return pick if len(pick) <= chars else pick[:chars].rsplit(" ", 1)[0] + " ..."


def compute(source, tasks: list[str], tokenizer=None, budget_s: float = 300.0, n: int = N) -> dict:
    """Document lengths, excerpt, bytes per token and n-gram contamination of `source` (a resolved
    tinylm.data.sources.Source) against `tasks`. `tokenizer`: a tinylm Tokenizer or None."""
    t0 = time.time()
    vocab = _Vocab()
    out = {"schema": SCHEMA, "n": n, "source": source.name, "tasks": {}, "notes": []}
    # 1. evaluation n-grams (small): hash -> example membership
    ev_hashes, ev_meta = [], {}
    val_docs = []
    try:
        from tinylm.data.sources import ReadStats

        val_docs = list(source.documents("valid", ReadStats())) if source.valid_files else []
    except Exception as e:  # noqa: BLE001 - a missing held-out split is reported, not fatal
        out["notes"].append(f"held-out split not read: {e}")
    texts_by_task = {}
    if val_docs:
        texts_by_task["held-out split"] = val_docs
    for task in tasks:
        task = SAME_DATA.get(task, task)
        if task in texts_by_task or task in NOT_CHECKED:
            continue
        try:
            texts_by_task[task] = eval_texts(task)
        except Exception as e:  # noqa: BLE001 - data not present here: say so in the report
            out["tasks"][task] = {"error": f"{e.__class__.__name__}: {e}"}
    for task, texts in texts_by_task.items():
        hs, owners, short = [], [], 0
        for i, text in enumerate(texts):
            h = np.unique(ngram_hashes(vocab.encode(text), n))
            if len(h) == 0:
                short += 1
            hs.append(h)
            owners.append(np.full(len(h), i, dtype=np.int64))
        h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
        ev_meta[task] = (h, np.concatenate(owners) if owners else np.zeros(0, np.int64), len(texts), short)
        ev_hashes.append(h)
        entry = {"examples": len(texts), "too_short": short, "bytes": sum(len(t.encode("utf-8")) for t in texts)}
        if tokenizer is not None:
            sample = texts if entry["bytes"] < 5_000_000 else texts[: max(1, len(texts) // 4)]
            nb = sum(len(t.encode("utf-8")) for t in sample)
            ntok = sum(len(ids) for ids in tokenizer.encode_batch(sample)) if hasattr(tokenizer, "encode_batch") \
                else sum(len(tokenizer.encode(t)) for t in sample)
            entry["tokens_measured"] = ntok
            entry["bytes_per_token"] = nb / max(ntok, 1)
        out["tasks"][task] = entry
    all_ev = np.unique(np.concatenate(ev_hashes)) if ev_hashes else np.zeros(0, np.uint64)
    # 2. one pass over the training text: lengths, excerpt, n-gram hits against all_ev
    from tinylm.data.sources import ReadStats

    lengths, hit_parts, scanned_bytes, excerpt, partial = [], [], 0, "", False
    t_scan = time.time()  # the budget bounds the scan of the training text (the evaluation side is small)
    stats = ReadStats()
    total_bytes = sum(os.path.getsize(f) for f in source.train_files) if source.train_files else None
    for doc in source.documents("train", stats):
        b = len(doc.encode("utf-8"))
        lengths.append(b)
        scanned_bytes += b
        if not excerpt:
            excerpt = _excerpt(doc)
        if len(all_ev):
            h = ngram_hashes(vocab.encode(doc), n)
            idx = np.minimum(np.searchsorted(all_ev, h), len(all_ev) - 1)  # all_ev is sorted: O(len(h) log m)
            hit_parts.append(np.unique(h[all_ev[idx] == h]))
        if time.time() - t_scan > budget_s:
            partial = True
            break
    hits = np.unique(np.concatenate(hit_parts)) if hit_parts else np.zeros(0, np.uint64)
    for task, (h, owners, count, short) in ev_meta.items():
        found = np.isin(h, hits)
        dirty = int(len(np.unique(owners[found]))) if len(h) else 0
        out["tasks"][task].update({"ngrams": int(len(h)), "ngrams_in_train": int(found.sum()), "dirty_examples": dirty,
                                   "checkable": count - short})
    out["train"] = {"documents_scanned": len(lengths), "bytes_scanned": scanned_bytes, "partial": partial,
                    "doc_bytes": lengths, "excerpt": excerpt}
    out["valid"] = {"doc_bytes": [len(d.encode("utf-8")) for d in val_docs]}
    if partial:
        out["notes"].append(f"training text scan stopped at the {budget_s:.0f} s budget after {len(lengths):,} documents "
                            f"({scanned_bytes:,} bytes)")
    out["seconds"] = round(time.time() - t0, 1)
    out["loadavg"] = load_average()
    out["compressed_train_bytes"] = total_bytes
    return out


def data_stats(run_dir, corpus: str | None, tasks: list[str], tokenizer_path=None, budget_s: float = 300.0,
               refresh: bool = False) -> dict | None:
    """RUN/data_stats.json, computed when missing or stale (different corpus files, tasks or n). Returns
    None with no error when the corpus cannot be read here (no data directory): the section says so."""
    from tinylm.data.sources import resolve

    run_dir = Path(run_dir)
    cache = run_dir / "data_stats.json"
    if not corpus:
        return None
    try:
        source = resolve(corpus)
    except Exception:  # noqa: BLE001 - no local data: only a cached result can be used
        source = None
    key = {"corpus": corpus, "files": _files_key(source.train_files + source.valid_files) if source else None,
           "tasks": sorted(set(tasks)), "n": N}
    if cache.is_file() and not refresh:
        try:
            old = json.loads(cache.read_text())
            if old.get("schema") == SCHEMA and (source is None or old.get("key") == key):
                return old
        except (OSError, ValueError):
            pass
    if source is None or not source.train_files:
        return None
    tok = None
    if tokenizer_path and Path(tokenizer_path).is_file():
        try:
            from tinylm.tokenizer import Tokenizer

            tok = Tokenizer.load(tokenizer_path)
        except Exception:  # noqa: BLE001
            tok = None
    result = compute(source, tasks, tok, budget_s)
    result["key"] = key
    result["tokenizer"] = str(tokenizer_path) if tok is not None else None
    try:
        from tinylm.util import atomic_write_text

        atomic_write_text(cache, json.dumps(result) + "\n")
    except OSError:
        pass  # a read-only run directory: the numbers are still used for this report
    return result


SFT_SCHEMA = "tinylm.sft_data/1"


def sft_data(stage_dir, mixture: str, seed: int = 0, refresh: bool = False) -> dict | None:
    """What the SFT mixture holds, per task and per instruction kind, with the first training example of
    each (the task files are read again with the run's seed, exactly as `tinylm sft` drew them), cached as
    STAGE_DIR/data_stats.json. None when the tasks' data is not readable here."""
    from collections import Counter

    cache = Path(stage_dir) / "data_stats.json"
    if cache.is_file() and not refresh:
        try:
            old = json.loads(cache.read_text())
            if old.get("schema") == SFT_SCHEMA and old.get("mixture") == mixture and old.get("seed") == seed:
                return old
        except (OSError, ValueError):
            pass
    try:
        from tinylm.tasks import get_task
        from tinylm.tasks.mixture import parse_mixture

        parts = parse_mixture(mixture)
        tasks = []
        for name, w in parts:
            ex = get_task(name, seed).examples("train")
            kinds = Counter(str((e.meta or {}).get("kind") or name) for e in ex)
            first = {}
            for e in ex:
                k = str((e.meta or {}).get("kind") or name)
                if k not in first:
                    msgs = e.messages
                    first[k] = {"user": next((m["content"] for m in msgs if m["role"] == "user"), ""),
                                "assistant": next((m["content"] for m in msgs if m["role"] == "assistant"), "")}
            tasks.append({"task": name, "weight": w, "examples": len(ex), "kinds": dict(kinds), "example": first})
    except Exception as e:  # noqa: BLE001 - no data here: the section falls back to the artifacts
        return {"schema": SFT_SCHEMA, "mixture": mixture, "seed": seed, "error": f"{e.__class__.__name__}: {e}"}
    out = {"schema": SFT_SCHEMA, "mixture": mixture, "seed": seed, "tasks": tasks}
    try:
        from tinylm.util import atomic_write_text

        atomic_write_text(cache, json.dumps(out, indent=1) + "\n")
    except OSError:
        pass
    return out

"""The pretraining-data section, laid out as Llama 2 §2.1 / Llama 1 §2.1 do it: what the text is (a table of
sources with documents, bytes, tokens, share, epochs and licence), how it was cleaned and what is held out,
how long its documents are, what it reads like, how well the tokenizer compresses each evaluation text,
and whether the evaluation sets occur in it (n-gram contamination).

Counts come from prepare.json and are checked against the token shards' headers when the shards are
beside the run; licence and cleaning come from the data directory's SOURCES.md (the provenance record
of every file in it); lengths, excerpt, bytes per token and contamination from RUN/data_stats.json
(tinylm/report/data_stats.py computes it once, bounded in time).
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from tinylm.report import figures
from tinylm.report.artifacts import Run
from tinylm.report.document import (Bullets, Figure, Missing, Paragraph, Section, Table, Verbatim, fbytes, ffloat,
                                    fint, fpct, slug)
from tinylm.report.sections_setup import Context, missing, pretrain_numbers, rel

# Licences of the named corpora when no SOURCES.md can be read (as that file states them).
KNOWN_LICENCES = {
    "gutenberg-children": "public domain in the USA (Project Gutenberg)",
    "gutenberg-general": "public domain in the USA (Project Gutenberg)",
    "tinystories": "CDLA-Sharing-1.0",
}
LICENCE_RE = re.compile(r"(public domain in the USA|public domain|CDLA-[A-Za-z]+-[0-9.]+|CC BY(?:-[A-Z]+)* [0-9.]+|"
                        r"Apache-2\.0|MIT)")


def sources_md(corpus: str) -> tuple[Path | None, str | None]:
    """(path, text) of the data directory's SOURCES.md, when there is one."""
    try:
        from tinylm.data.sources import data_dir

        root = data_dir()
    except Exception:  # noqa: BLE001 - $TINYLM_DATA_DIR pointing nowhere: no provenance, not a crash
        return None, None
    if root is None or not (root / "SOURCES.md").is_file():
        return None, None
    return root / "SOURCES.md", (root / "SOURCES.md").read_text(encoding="utf-8", errors="replace")


def corpus_block(text: str, paths: list[str]) -> str:
    """The `## Section` of SOURCES.md that lists any of `paths` (relative to the data directory)."""
    blocks = re.split(r"\n(?=## )", text)
    for p in paths:
        for b in blocks:
            if p in b:
                return b
    return ""


def licence_of(corpus: str, text: str | None, paths: list[str]) -> tuple[str, str]:
    """(licence, where it was read): from the table row naming the file, else from its SOURCES.md section."""
    if text:
        for line in text.splitlines():
            if any(p in line for p in paths):
                m = LICENCE_RE.search(line)
                if m:
                    return m.group(1), "SOURCES.md"
        m = LICENCE_RE.search(corpus_block(text, paths))
        if m:
            return m.group(1), "SOURCES.md"
    if corpus in KNOWN_LICENCES:
        return KNOWN_LICENCES[corpus], "tinylm's corpus table"
    return "not recorded", ""


def cleaning_steps(block: str) -> list[str]:
    """The numbered steps of a SOURCES.md section's cleaning list: '**Header and footer.** ...' -> short items."""
    out = []
    items = re.split(r"\n(?=\d+\.\s+\*\*)", block)
    for item in items:
        m = re.match(r"\d+\.\s+\*\*([^*]+)\*\*\s*(.*)", item, flags=re.S)
        if not m:
            continue
        title = m.group(1).strip().rstrip(".")
        rest = " ".join(m.group(2).split("\n\n")[0].split())  # the item's first paragraph, lines joined
        rest = re.sub(r"^\*\s+", "", rest)
        first = re.split(r"(?<=[.])\s", rest, maxsplit=1)[0] if rest else ""
        first = first if len(first) <= 220 else first[:220].rsplit(" ", 1)[0] + " ..."
        out.append(f"{title}: {first}" if first else title)
    return out


def corpus_paths(run: Run) -> list[str]:
    """The corpus files relative to the data directory (named corpora), or as given."""
    p = run.prepare or {}
    files = list((p.get("train") or {}).get("source_files") or []) + list((p.get("val") or {}).get("source_files") or [])
    out = []
    for f in files:
        parts = Path(f).parts
        out.append("/".join(parts[-3:-1]) if len(parts) >= 3 else str(f))  # e.g. english/gutenberg-children
    return sorted(set(out))


def shard_check(run: Run) -> str:
    """Whether prepare.json's token counts equal the sums of the token shards' headers (when the shards are here)."""
    from tinylm.data.shards import read_header

    data = ((run.config or {}).get("data") or {}).get("dir")
    cands = [run.dir / "data"] + ([Path(data)] if data else [])
    d = next((c for c in cands if c.is_dir() and list(c.glob("*.bin"))), None)
    p = run.prepare or {}
    if d is None:
        return "The token shards are not beside this run, so the counts are prepare.json's (written as the shards were)."
    parts = []
    for split, pattern in (("train", "train-*.bin"), ("val", "val*.bin")):
        files = sorted(d.glob(pattern))
        want = (p.get(split) or {}).get("tokens")
        if not files or not isinstance(want, int):
            continue
        try:
            got = sum(read_header(f)["count"] for f in files)
        except Exception as e:  # noqa: BLE001 - a damaged shard is reported by name
            return f"A token shard in {rel(d)} could not be read ({e})."
        parts.append(f"{split}: {fint(got)} tokens in {len(files)} shard header(s), "
                     + ("equal to prepare.json" if got == want else f"but prepare.json says {fint(want)}: they do not match"))
    return ("Shard check (" + rel(d) + "): " + "; ".join(parts) + ".") if parts else \
        f"No shard in {rel(d)} matched prepare.json's splits."


def data_table(run: Run, licence: str, lic_src: str) -> Table | None:
    p = run.prepare or {}
    tr, va = p.get("train") or {}, p.get("val") or {}
    if not tr:
        return None
    consumed = pretrain_numbers(run)["tokens"]
    sources = p.get("sources") if isinstance(p.get("sources"), list) else None  # per-source counts, when recorded
    rows = []
    if sources:
        total = sum(s.get("tokens") or 0 for s in sources) or 1
        for s in sources:
            share = (s.get("tokens") or 0) / total
            rows.append([str(s.get("name", "?")), "train", fint(s.get("documents")), fbytes(s.get("bytes")),
                         fint(s.get("tokens")), fpct(share),
                         ffloat(consumed * share / s["tokens"], 2) if consumed and s.get("tokens") else "n/a",
                         str(s.get("licence") or licence)])
    else:
        rows.append([str(p.get("source", "?")), "train", fint(tr.get("documents")), fbytes(tr.get("bytes")),
                     fint(tr.get("tokens")), "100%",
                     ffloat(consumed / tr["tokens"], 2) if consumed and tr.get("tokens") else "n/a", licence])
    if va:
        rows.append([str(p.get("source", "?")), "held out", fint(va.get("documents")), fbytes(va.get("bytes")),
                     fint(va.get("tokens")), "0%", "0 (never trained on)", licence])
    return Table(["source", "split", "documents", "size", "tokens", "share of training", "epochs", "licence"], rows,
                 align="llrrrrrl",
                 caption=f"Pretraining data of {run.name}. Epochs = tokens consumed by pretraining x share / tokens of "
                         "the source; below 1, part of the text was never seen.",
                 source=rel(run.dir / "prepare.json") + (f"; licence: {lic_src}" if lic_src else ""))


def _dist(xs: list[int]) -> str:
    q = statistics.quantiles(xs, n=10) if len(xs) >= 2 else [xs[0]] * 9
    return f"median {fbytes(statistics.median(xs))}, 10th-90th percentile {fbytes(q[0])}-{fbytes(q[-1])}"


def contamination_table(ds: dict) -> tuple[Table | None, list[str]]:
    rows, dirty_sets, notes = [], [], []
    tasks = ds.get("tasks") or {}
    for task, e in sorted(tasks.items(), key=lambda kv: (kv[0] != "held-out split", kv[0])):
        if not isinstance(e, dict):
            continue
        if task == "held-out split" and f"bpb-{ds.get('source')}" in tasks:  # the same books, scored by eval
            continue
        if "error" in e:
            notes.append(f"{task}: not checked ({e['error'][:160]})")
            continue
        if not isinstance(e.get("ngrams"), int):
            continue
        checkable = e.get("checkable") or 0
        frac = e["dirty_examples"] / checkable if checkable else None
        rows.append([task, fint(e.get("examples")), fint(checkable), fint(e.get("dirty_examples")),
                     fpct(frac) if frac is not None else "n/a",
                     fpct(e["ngrams_in_train"] / e["ngrams"], 2) if e["ngrams"] else "n/a"])
        if frac is not None and frac >= 0.01:
            dirty_sets.append((task, frac))
    if not rows:
        return None, notes
    n = ds.get("n", 13)
    part = (ds.get("train") or {})
    scope = (f"the first {fint(part.get('documents_scanned'))} training documents ({fbytes(part.get('bytes_scanned'))})"
             if part.get("partial") else f"all {fint(part.get('documents_scanned'))} training documents")
    t = Table(["evaluation set", "examples", f"checkable (>= {n} words)", "dirty examples", "dirty share",
               f"{n}-grams found in training"], rows, align="lrrrrr",
              caption=f"Contamination: an example is dirty when any of its word {n}-grams occurs in {scope} "
                      f"(GPT-3 App. C). Read the dirty share: near 0% means the scores are not inflated by memorised "
                      f"test text.", source="data_stats.json")
    reading = []
    heavy = [(t, f) for t, f in dirty_sets if (ds["tasks"][t].get("ngrams_in_train") or 0) >= 0.01 * (ds["tasks"][t].get("ngrams") or 1)]
    light = [(t, f) for t, f in dirty_sets if (t, f) not in heavy]
    if heavy:
        reading.append("Sets with at least 1% dirty examples and 1% of their 13-grams in training: "
                       + ", ".join(f"{t} ({fpct(f)})" for t, f in heavy)
                       + "; their scores may be inflated by text seen in training, and a clean subset should be scored "
                         "before a claim rests on them.")
    if light:
        reading.append("Dirty by the any-13-gram rule but with under 1% of their 13-grams in training: "
                       + ", ".join(f"{t} ({fpct(f)} of examples, {fpct(ds['tasks'][t]['ngrams_in_train'] / ds['tasks'][t]['ngrams'], 2)} "
                                   "of 13-grams)" for t, f in light)
                       + "; long documents share stock phrases and quotations, not copied text.")
    if not dirty_sets:
        reading.append(f"No evaluation set has 1% or more dirty examples: the {n}-gram overlaps are isolated stock phrases "
                       "and quotations, not copies of test items.")
    return t, reading + notes


def bpt_table(run: Run, ds: dict | None) -> Table | None:
    """Bytes per token of the run's tokenizer on each evaluation text: measured with tokenizer.json when it
    was available to data_stats, else derived from eval.json (bytes/token = log2(token perplexity) / bits per byte)."""
    rows = []
    tasks = (ds or {}).get("tasks") or {}
    for task, e in sorted(tasks.items()):
        if task == "held-out split" and f"bpb-{(ds or {}).get('source')}" in tasks:
            continue
        if isinstance(e, dict) and isinstance(e.get("bytes_per_token"), (int, float)):
            rows.append([task, fbytes(e.get("bytes")), ffloat(e["bytes_per_token"], 3), "measured (tokenizer.json)"])
    seen = {r[0] for r in rows}
    for task, t in sorted(((run.eval or {}).get("tasks") or {}).items()):
        if task in seen or not isinstance(t, dict):
            continue
        m = t.get("metrics") or {}
        bpb = (m.get("bits_per_byte") or {}).get("value")
        tppl = (m.get("token_perplexity") or {}).get("value")
        if isinstance(bpb, (int, float)) and isinstance(tppl, (int, float)) and bpb > 0 and tppl > 1:
            rows.append([task, fbytes(t.get("bytes")), ffloat(math.log2(tppl) / bpb, 3),
                         "derived: log2(token perplexity) / bits per byte"])
    if not rows:
        return None
    return Table(["text", "size", "bytes per token", "how"], rows, align="lrrl",
                 caption=f"How well {run.name}'s tokenizer compresses each evaluation text: fewer bytes per token than "
                         "on the training text means the text is further from the training distribution.",
                 source="data_stats.json; " + rel(run.eval_path) if run.eval_path else "data_stats.json")


def _corpus_info(run: Run):
    p = run.prepare
    corpus = str(p.get("source", "?"))
    paths = corpus_paths(run)
    md_path, md = sources_md(corpus)
    return corpus, paths, md_path, md


def _data_stats(ctx: Context, run: Run) -> dict | None:
    return ctx.data_stats.get(run.name) if isinstance(getattr(ctx, "data_stats", None), dict) else None


def data_section(ctx: Context) -> Section:
    """The body's data section (Llama 1, section 2.1): what the corpus is, the data table, the document
    lengths and the contamination check. Cleaning, an excerpt and the tokenizer go to `data_appendix`."""
    s = Section("Pretraining data")
    for run in ctx.trained or ctx.runs:
        if not run.prepare:
            s.add(missing(run, "prepare.json (or data/prepare.json)"))
            continue
        corpus, paths, md_path, md = _corpus_info(run)
        lic, lic_src = licence_of(corpus, md, paths)
        about = ""
        try:
            from tinylm.data.sources import CORPORA

            about = CORPORA[corpus].about if corpus in CORPORA else ""
        except Exception:  # noqa: BLE001
            pass
        s.add(Paragraph(f"{run.name} is pretrained on `{corpus}`" + (f": {about}" if about else ".")
                        + " The text is tokenized once into flat token shards; the held-out split is whole documents "
                          "that pretraining never reads, and its bits per byte is the validation curve. Cleaning, an "
                          "excerpt and the tokenizer are in the appendix, Pretraining data in detail."))
        table = data_table(run, lic, lic_src)
        if table:
            s.add(table)
        s.add(Paragraph(shard_check(run)))
        ds = _data_stats(ctx, run)
        if not ds:
            s.add(Missing(f"Not available: document lengths and contamination need the corpus text, which is "
                          f"not readable here, and {rel(run.dir / 'data_stats.json')} does not exist."))
            continue
        tr, va = ds.get("train") or {}, ds.get("valid") or {}
        lengths, vlengths = tr.get("doc_bytes") or [], va.get("doc_bytes") or []
        f = figures.histogram({"training": lengths, "held out": vlengths},
                              ctx.fig_dir / f"doc_lengths_{slug(run.name)}.png", "document length (bytes, log scale)")
        if f and lengths:
            cap = (f"Document lengths of `{corpus}`: training {_dist(lengths)}"
                   + (f"; held out {_dist(vlengths)}" if len(vlengths) >= 2 else "")
                   + ". Whole books are far longer than the 256-token context, so the model sees windows of them.")
            s.add(Figure(f, cap, "data_stats.json"))
        ct, reading = contamination_table(ds)
        if ct or reading:
            s.add(Paragraph(contamination_summary(ds) + " ".join(reading)
                            + (" The table per evaluation set: appendix, Pretraining data in detail." if ct else "")))
    return s


def contamination_summary(ds: dict) -> str:
    """One sentence for the body: how many evaluation sets were checked against the training text and
    the largest dirty share among them (the table goes to the appendix)."""
    n = ds.get("n", 13)
    tasks = ds.get("tasks") or {}
    shares = [(e["dirty_examples"] / e["checkable"], t) for t, e in tasks.items()
              if isinstance(e, dict) and isinstance(e.get("ngrams"), int) and e.get("checkable")
              and isinstance(e.get("dirty_examples"), int)
              and not (t == "held-out split" and f"bpb-{ds.get('source')}" in tasks)]  # as in the table
    if not shares:
        return ""
    top, name = max(shares)
    return (f"Contamination check (GPT-3 App. C): an example of an evaluation set is dirty when any of its word "
            f"{n}-grams occurs in the training text; of {len(shares)} sets checked, the dirtiest is {name} with "
            f"{fpct(top)} of its checkable examples. ")


def data_appendix(ctx: Context) -> Section:
    """Pretraining data in detail: cleaning and held-out policy, an excerpt, the tokenizer, and its
    bytes per token on every evaluation text."""
    s = Section("Pretraining data in detail")
    for run in ctx.trained or ctx.runs:
        if not run.prepare:
            continue
        corpus, paths, md_path, md = _corpus_info(run)
        sub = Section(f"{run.name}: `{corpus}`")
        s.subsections.append(sub)
        steps = cleaning_steps(corpus_block(md, paths)) if md else []
        policy = ["tinylm's `prepare` reads documents separated by `<|endoftext|>` lines, counts (never drops silently) "
                  "bytes that are not UTF-8, turns CRLF into LF, and writes every document after an `<|endoftext|>` "
                  "token; the data is not re-filtered or de-duplicated by tinylm."]
        if steps:
            policy += [f"Upstream ({rel(md_path)}): {x}" for x in steps]
        else:
            policy.append("No provenance record (SOURCES.md) was found in the data directory to describe upstream cleaning.")
        sub.add(Paragraph("Cleaning and held-out policy:"), Bullets(policy))
        ds = _data_stats(ctx, run)
        if ds:
            tr = ds.get("train") or {}
            if tr.get("excerpt"):
                sub.add(Verbatim(tr["excerpt"], f"Excerpt of `{corpus}` (first prose paragraph of the first training document)"))
            bt = bpt_table(run, ds)
            if bt:
                sub.add(bt)
            ct, _ = contamination_table(ds)
            if ct:
                sub.add(ct)
            if ds.get("seconds") is not None:
                sub.add(Paragraph(f"These statistics took {ds['seconds']} s to compute (load average "
                                  f"{', '.join(str(x) for x in ds.get('loadavg') or [])} when done) and are cached in "
                                  f"{rel(run.dir / 'data_stats.json')}."))
        t = run.tokenizer
        if not t:
            sub.add(missing(run, "tokenizer.meta.json"))
        else:
            trained_on = t.get("trained_on") or {}
            valid = t.get("valid") or {}
            sub.add(Table(["tokenizer", "value"], [
                ["type", "byte-level BPE (Hugging Face tokenizers)"],
                ["vocabulary", fint(t.get("vocab_size"))],
                ["trained on", f"{fint(trained_on.get('bytes'))} bytes, {fint(trained_on.get('documents'))} documents "
                               f"of `{(t.get('config') or {}).get('corpus', '?')}`"],
                ["bytes per token (held-out text)", ffloat(valid.get("bytes_per_token"), 3)],
                ["training time", f"{t.get('seconds')} s"],
                ["sha256", f"`{str(t.get('sha256', ''))[:16]}...`"],
            ], caption=f"Tokenizer of {run.name}.", align="ll", source=rel(run.dir / "tokenizer.meta.json")))
    return s

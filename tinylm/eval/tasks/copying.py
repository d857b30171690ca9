"""In-context copying: can the model reproduce a passage it has just read?

Copying from the context is what induction heads do (Olsson et al. 2022, "In-context Learning and
Induction Heads"), and it is what the checkable instructions that tiny models fail need: use the
words the prompt names, end with the sentence it quotes, title a story with one of its words.
This task measures that ability directly, on natural text, for any model the harness loads.

Each example is a passage P of 20-60 words, the opening sentences of a run of prose paragraphs of
the TinyStories validation head or of a gutenberg-children validation book (alternating; the runs
are cut as the checkable instructions cut them, so no headings or verse). With a blank line as separator it is scored twice:

    repeat   log P(P | P + "\\n\\n")   the passage again, right after itself
    control  log P(P | Q + "\\n\\n")   the same passage after an unrelated passage Q of the set

so the two differ only in whether the context holds the answer. Metrics:
    copy_gain   mean over passages of 1 - nats(repeat) / nats(control): 0 = the earlier copy
                does not help at all, 1 = the repeat costs nothing (primary; with its interval)
    acc         the whole repeat is the greedy continuation (every token the argmax)
    bits_per_byte_repeat, bits_per_byte_control   over all passages' UTF-8 bytes
Passages whose two copies do not fit in the model's context are skipped and counted.
"""

from __future__ import annotations

import math
import re

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, TaskDataError, find_data, mean_metric, point_metric

SOURCES = ("tinystories", "gutenberg-children")
MIN_WORDS, MAX_WORDS = 20, 60
_SENT_END = re.compile(r"(?<=[.!?])\s+")


def lead_passage(doc: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str | None:
    """The document's first sentences, at most `max_words` words and at least `min_words`
    (whitespace normalised), or None when the opening cannot make such a passage."""
    out, n = [], 0
    for sent in _SENT_END.split(" ".join(doc.split()[: 4 * max_words])):
        w = len(sent.split())
        if n + w > max_words:
            break
        out.append(sent)
        n += w
    return " ".join(out) if n >= min_words else None


def copy_passages(limit: int, sources=SOURCES) -> list[str]:
    """Up to `limit` distinct passages, taken in turn from each source's validation documents."""
    from tinylm.data.sources import CORPORA, DataError, ReadStats, resolve
    from tinylm.tasks.instructions import gutenberg_passages

    streams = []
    for s in sources:
        try:
            src = resolve(s)
        except DataError as e:  # a data directory without this corpus: the harness records it and goes on
            raise TaskDataError(str(e)) from e
        if src.hub is not None:  # no local copy: say where it was expected
            find_data("copy", CORPORA[s].valid[0], None)
        docs = src.documents("valid", ReadStats())
        streams.append(iter(gutenberg_passages(docs, 10 * limit)))
    out, seen = [], set()
    while streams and len(out) < limit:
        for it in list(streams):
            for doc in it:
                p = lead_passage(doc)
                if p and p not in seen:
                    seen.add(p)
                    out.append(p)
                    break
            else:
                streams.remove(it)
            if len(out) >= limit:
                break
    return out


@register("copy")
class Copy(EvalTask):
    primary = "copy_gain"
    chance = 0.0
    protocol = ("in-context copying: a 20-60 word validation passage scored right after itself and after an "
                "unrelated passage; copy_gain = 1 - nats(repeat)/nats(control), acc = greedy exact repeat")

    def run(self, lm, limit: int = 0) -> dict:
        passages = copy_passages(limit or 200)
        fits = [p for p in passages if 2 * len(lm.tok.encode(p)) + 4 <= lm.max_length]
        skipped = len(passages) - len(fits)
        if len(fits) < 2:
            return self.result({"copy_gain": mean_metric([])}, 0, skipped_too_long=skipped)
        reqs = [(p + "\n\n", p) for p in fits] + [(fits[i - 1] + "\n\n", p) for i, p in enumerate(fits)]
        res = lm.loglikelihood(reqs, desc=self.name)
        rep, ctrl = res[: len(fits)], res[len(fits):]
        n_bytes = sum(len(p.encode("utf-8")) for p in fits)
        gains = [1 - r / c for (r, _), (c, _) in zip(rep, ctrl) if c < 0]

        def bpb(rows):
            return point_metric(-sum(ll for ll, _ in rows) / math.log(2) / n_bytes)

        return self.result({"copy_gain": mean_metric(gains), "acc": mean_metric([float(g) for _, g in rep]),
                            "bits_per_byte_repeat": bpb(rep), "bits_per_byte_control": bpb(ctrl)},
                           len(fits), skipped_too_long=skipped, bytes=n_bytes)

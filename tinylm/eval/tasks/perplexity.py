"""Language modelling: bits per byte, byte and word perplexity of whole documents.

- `wikitext`: lm-evaluation-harness's `wikitext` task on WikiText-2 raw test. Documents are the
  62 articles, split at top-level headings (" = Title = ") as the harness's
  `EleutherAI/wikitext_document_level` builds them; each is scored after the harness's
  `wikitext_detokenizer` with disjoint rolling windows (context_len 1), while words and bytes are
  counted on the original page, as the harness does (so word perplexity is per original word).
- `bpb-tinystories`, `bpb-gutenberg-children`, `bpb-gutenberg-general`: the validation split of a
  named corpus (`tinylm info`), scored as `tinylm bpb` does by default: overlapping windows, every
  token after the first window predicted from at least half a context. In-domain perplexity is
  where tiny models differ most.
- `bpb:PATH`: any text file (.txt/.txt.xz/.jsonl, documents separated by <|endoftext|> lines).

bits/byte = -sum log p / ln 2 / UTF-8 bytes; byte perplexity = 2^(bits/byte); word perplexity =
exp(-sum log p / words). No standard error: the documents are few and long.
"""

from __future__ import annotations

import math
import re

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, find_data, hub_rows, point_metric


def wikitext_detokenizer(text: str) -> str:
    """lm-evaluation-harness's wikitext detokenizer (from Megatron-LM): undo WikiText's spacing."""
    s = text.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    for p in (":", ";", ".", "!", "?", ","):
        s = s.replace(f" {p} ", f"{p} ")
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    s = s.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    s = s.replace(" " + chr(176) + " ", chr(176))
    s = s.replace(" \n", "\n").replace("\n ", "\n")
    s = s.replace(" N ", " 1 ").replace(" 's", "'s")
    return s


def wikitext_pages(raw: str) -> list[str]:
    """Split WikiText raw text into articles at top-level headings (" = Title = ")."""
    pages, cur = [], []
    for line in raw.split("\n"):
        r = line.replace("= = =", "===").replace("= =", "==").strip()
        if r.startswith("= ") and r.endswith(" ="):
            page = "\n".join(cur)
            if page.strip():
                pages.append(page)
            cur = []
        cur.append(line)
    page = "\n".join(cur)
    if page.strip():
        pages.append(page)
    return pages


def _metrics(ll: float, n_bytes: int, n_words: int, n_tokens: int) -> dict:
    bpb = -ll / math.log(2) / max(n_bytes, 1)
    return {"bits_per_byte": point_metric(bpb), "byte_perplexity": point_metric(2 ** bpb),
            "word_perplexity": point_metric(math.exp(-ll / max(n_words, 1))),
            "token_perplexity": point_metric(math.exp(-ll / max(n_tokens, 1)))}


class _Perplexity(EvalTask):
    primary = "bits_per_byte"
    higher_is_better = False
    chance = None


@register("wikitext")
class WikiText(_Perplexity):
    protocol = ("lm-eval wikitext: WikiText-2 raw test, 62 articles, detokenized, disjoint rolling windows; "
                "words/bytes of the original page")

    def run(self, lm, limit: int = 0) -> dict:
        path = find_data(self.name, "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw",
                         "EleutherAI/wikitext_document_level")
        if path is None:
            pages = [r["page"] for r in hub_rows(self.name, "EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test",
                                                "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw")]
        else:
            pages = wikitext_pages(path.read_text(encoding="utf-8"))
        pages = pages[:limit] if limit else pages
        scored = lm.loglikelihood_rolling([wikitext_detokenizer(p) for p in pages], context_len=1, desc=self.name)
        ll = sum(x for x, _ in scored)
        words = sum(len(re.split(r"\s+", p)) for p in pages)
        n_bytes = sum(len(p.encode("utf-8")) for p in pages)
        return self.result(_metrics(ll, n_bytes, words, sum(n for _, n in scored)), len(pages),
                           bytes=n_bytes, words=words, context_len=1)


class _TextBpb(_Perplexity):
    source = ""

    def documents(self):
        from tinylm.data.sources import CORPORA, ReadStats, iter_file_documents, resolve

        if self.source in CORPORA:
            root_missing = resolve(self.source).hub is not None
            if root_missing:  # no local copy: find_data explains where it was expected
                find_data(self.name, CORPORA[self.source].valid[0], None)
            return list(resolve(self.source).documents("valid", ReadStats()))
        return list(iter_file_documents(self.source, ReadStats()))

    def run(self, lm, limit: int = 0) -> dict:
        docs = self.documents()
        docs = docs[:limit] if limit else docs
        ctx = max(lm.max_length // 2, 1)
        scored = lm.loglikelihood_rolling(docs, context_len=ctx, desc=self.name)
        ll = sum(x for x, _ in scored)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        words = sum(len(d.split()) for d in docs)
        return self.result(_metrics(ll, n_bytes, words, sum(n for _, n in scored)), len(docs),
                           bytes=n_bytes, words=words, context_len=ctx)


@register("bpb-tinystories")
class BpbTinyStories(_TextBpb):
    source = "tinystories"
    protocol = "bits per byte on the TinyStories validation head (v1), windows overlapping by half a context"


@register("bpb-gutenberg-children")
class BpbGutenbergChildren(_TextBpb):
    source = "gutenberg-children"
    protocol = "bits per byte on the 16 gutenberg-children validation books, windows overlapping by half a context"


@register("bpb-gutenberg-general")
class BpbGutenbergGeneral(_TextBpb):
    source = "gutenberg-general"
    protocol = "bits per byte on the 16 gutenberg-general validation books, windows overlapping by half a context"


@register("bpb:")
class BpbFile(_TextBpb):
    protocol = "bits per byte on a text file, windows overlapping by half a context"

    def __init__(self, path: str = ""):
        from pathlib import Path

        if not path or not Path(path).exists():
            raise ValueError(f"bpb:{path}: no such file")
        self.source = path

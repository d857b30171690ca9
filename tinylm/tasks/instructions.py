"""Instructions with checkable constraints, generated from the pretraining corpora.

Each short story (a TinyStories story, or a passage of a children's book from Project Gutenberg)
yields several instructions whose reference answer is (part of) the story itself:

    keywords       "Write a short story about Max that uses the words ball, happy and garden."
    continue       "Continue this story: <first two sentences>"
    ends_with      "Write a short story that ends with: "<last sentence>""
    max_sentences  "Write a story about Lily in at most 4 sentences."
    title          "Give this story a title. <story>"

Every example carries its constraints in `meta["constraints"]`, and `check(example, response)`
scores any response against them: the score is the mean of per-constraint scores in [0, 1], with
per-constraint detail. SFT trains on the train split; evaluation and RL prompt with the test split
and use the same checker as the metric and the reward. The split is by story (a held-out story
never appears in training in any form) and fixed by the seed.
"""

from __future__ import annotations

import random
import re
from itertools import islice

from tinylm.data.sources import resolve
from tinylm.tasks.base import CheckResult, Example, Task, in_heldout

KINDS = ("keywords", "continue", "ends_with", "max_sentences", "title")
MAX_RESPONSE_WORDS = 90  # keeps prompt + answer inside a 256-token context
STOPWORDS = set("""
a about after again all also always am an and any are around as at away back be because been before
being big but by came can come could day did do does down each even every far for from get go going
good got had has have he her here him his how i if in into is it its just know like little look made
make many may me more much must my new next no not now of off oh on once one only or other our out
over play played put ran run said saw say see she so some something soon still such take than that
the their them then there these they thing things this those time to told too took two up upon us
very want wanted was way we went were what when where which while who why will with would yes yet
you your felt feel very really thought looked asked know knew came come went going every everyone
""".split())
NOT_NAMES = {"The", "She", "He", "They", "It", "One", "Once", "But", "And", "Then", "When", "I", "We",
             "You", "Mom", "Dad", "Mommy", "Daddy", "Mr", "Mrs", "Miss", "Oh", "Yes", "No", "So", "Suddenly",
             "After", "Her", "His", "This", "That", "There", "What", "Why", "How", "Let", "Thank", "Every",
             "In", "On", "At", "As", "If", "Sir", "Lady", "God", "Now", "Well", "Do", "Don", "Can", "Is"}

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"”’'])\s+")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")  # Unicode letters: "habitué" is one word, not "habitu"


_SPEAKER = re.compile(r"^[A-Z][A-Z’' .-]{2,}[.:]")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Capt|Col|Gen|Rev|Prof|Lieut|No|vs)|\b[A-Z])\.$")


def sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? (not after "Mr." or an initial) and at line breaks: a line of
    verse without a full stop is still a unit, so unpunctuated output cannot pass as one sentence."""
    out: list[str] = []
    for line in text.splitlines():
        start = len(out)
        for piece in _SENT_SPLIT.split(" ".join(line.split())):
            piece = piece.strip()
            if not piece:
                continue
            if len(out) > start and _ABBREV.search(out[-1]):  # "Mr. Smith", "J. Smith": not a sentence end
                out[-1] += " " + piece
            else:
                out.append(piece)
    return out


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[\"“”‘’']", "", s).lower().split())


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word.lower())}s?\b", text.lower()) is not None


def names_in(text: str) -> list[str]:
    """Capitalised words that appear at least twice and not only at sentence starts: names."""
    counts: dict[str, int] = {}
    mid: set[str] = set()
    for sent in sentences(text):
        words = _WORD.findall(sent)
        for i, w in enumerate(words):
            if re.fullmatch(r"[A-Z][a-z]{2,}", w) and w not in NOT_NAMES:
                counts[w] = counts.get(w, 0) + 1
                if i > 0:
                    mid.add(w)
    return sorted((w for w, c in counts.items() if c >= 2 and w in mid), key=lambda w: (-counts[w], w))


def content_words(text: str) -> list[str]:
    seen, out = set(), []
    for w in _WORD.findall(text):
        lw = w.lower()
        if w.isascii() and w.isalpha() and w[0].islower() and len(lw) >= 4 and lw not in STOPWORDS and lw not in seen:
            seen.add(lw)
            out.append(lw)
    return out


# ---------------------------------------------------------------------------------------------
# Checks: each returns a score in [0, 1]


def _check_one(c: dict, response: str) -> float:
    kind = c["type"]
    sents = sentences(response)
    if kind == "include_words":
        return sum(_has_word(response, w) for w in c["words"]) / len(c["words"])
    if kind == "mentions_any":
        return float(any(_has_word(response, w) for w in c["words"]))
    if kind == "min_sentences":
        return float(len(sents) >= c["n"])
    if kind == "max_sentences":  # a story: some words, in at most n sentences
        return float(1 <= len(sents) <= c["n"] and len(_WORD.findall(response)) >= 5)
    if kind == "ends_with":
        return float(bool(sents) and _norm(response).endswith(_norm(c["text"])))
    if kind == "no_copy":  # a continuation must add text, not repeat the prompt
        return float(_norm(c["text"]) not in _norm(response) and len(_WORD.findall(response)) >= 5)
    if kind == "exact":  # a copy: the text itself, up to spacing, quotes and case
        return float(_norm(response) == _norm(c["text"]))
    if kind == "title":
        words = _WORD.findall(response)
        one_line = "\n" not in response.strip()
        return float(one_line and 1 <= len(words) <= 8 and not response.strip().endswith("."))
    raise ValueError(f"unknown constraint type {kind!r}")


def repair_response(constraints: list[dict], response: str) -> str | None:
    """The smallest edit of a model's answer that meets its constraints, where one is mechanical:
    `ends_with` replaces the answer's last sentence by the required one (the story the model wrote,
    ending as asked); `max_sentences` keeps the first n sentences. Other constraints (words to use,
    a title) have no such edit. Returns the edited answer when every constraint then passes, else
    None (an answer that already passes is returned unchanged)."""
    text = response
    for c in constraints:
        sents = sentences(text)
        if c["type"] == "ends_with" and not _check_one(c, text):
            if len(sents) < 2:
                return None
            text = " ".join(sents[:-1] + [" ".join(c["text"].split())])
        elif c["type"] == "max_sentences" and not _check_one(c, text):
            text = " ".join(sents[: c["n"]])
    return text if check_constraints(constraints, text).score == 1.0 else None


def check_constraints(constraints: list[dict], response: str) -> CheckResult:
    details = [dict(c, score=_check_one(c, response)) for c in constraints]
    return CheckResult(sum(d["score"] for d in details) / len(details), details)


# ---------------------------------------------------------------------------------------------
# Generation


def _fit(sents: list[str], max_words: int) -> list[str]:
    out, n = [], 0
    for s in sents:
        w = len(s.split())
        if n + w > max_words:
            break
        out.append(s)
        n += w
    return out


def make_examples(story: str, key: str, rng: random.Random) -> list[Example]:
    """All instructions one story supports (none when it is too short or too long to use)."""
    sents = _fit(sentences(story), MAX_RESPONSE_WORDS)
    if len(sents) < 3:
        return []
    text = " ".join(sents)
    names = names_in(text)
    name = names[0] if names else None
    about = f" about {name}" if name else ""
    words = content_words(text)
    out = []

    def ex(kind, prompt, answer, constraints):
        out.append(Example([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                           {"key": key, "kind": kind, "constraints": constraints}))

    if len(words) >= 3:
        pick = rng.sample(words, 3)
        ex("keywords", f"Write a short story{about} that uses the words {pick[0]}, {pick[1]} and {pick[2]}.", text,
           [{"type": "include_words", "words": pick + ([name] if name else [])}])
    if len(sents) >= 4:
        head, rest = " ".join(sents[:2]), " ".join(sents[2:])
        cons = [{"type": "no_copy", "text": head}, {"type": "min_sentences", "n": 2}]
        # keep the story's characters: only when the reference itself names one of them
        named = [n for n in (names_in(head) or ([name] if name else [])) if _has_word(rest, n)]
        if named:
            cons.append({"type": "mentions_any", "words": named})
        ex("continue", f"Continue this story: {head}", rest, cons)
    ex("ends_with", f"Write a short story that ends with: \"{sents[-1]}\"", text,
       [{"type": "ends_with", "text": sents[-1]}])
    n = len(sents) + rng.randint(0, 1)
    ex("max_sentences", f"Write a story{about} in at most {n} sentences.", text,
       [{"type": "max_sentences", "n": n}] + ([{"type": "mentions_any", "words": [name]}] if name else []))
    if words:
        noun = words[0]
        title = f"{name} and the {noun.capitalize()}" if name else f"The {noun.capitalize()}"
        ex("title", f"Give this story a title.\n\n{text}", title,
           [{"type": "title"}, {"type": "mentions_any", "words": ([name] if name else []) + words[:8]}])
    return out


REPEAT_PROMPTS = ('Repeat this sentence: "{}"', 'Say exactly this: "{}"', 'Copy this text:\n\n{}')


def make_repeat_examples(story: str, key: str, rng: random.Random) -> list[Example]:
    """Copying drills from one story: one of its sentences, and its first sentences (at most 45
    words), each to be repeated verbatim. Copying from the prompt is what the checkable kinds need
    (the words to use, the sentence to end with, a title word) and what a tiny model cannot do
    after pretraining (the `copy` evaluation task measures it)."""
    sents = _fit(sentences(story), MAX_RESPONSE_WORDS)
    if len(sents) < 3:
        return []
    out = []
    for kind, text in (("repeat_sentence", rng.choice([s for s in sents if len(s.split()) >= 5] or sents)),
                       ("repeat_passage", " ".join(_fit(sents, 45)))):
        if text:
            prompt = rng.choice(REPEAT_PROMPTS).format(text)
            out.append(Example([{"role": "user", "content": prompt}, {"role": "assistant", "content": text}],
                               {"key": key, "kind": kind, "constraints": [{"type": "exact", "text": text}]}))
    return out


def gutenberg_passages(docs, max_passages: int):
    """Runs of prose paragraphs of 40-90 words from books (verse, headings and lists skipped)."""
    n = 0
    for book in docs:
        buf: list[str] = []
        for para in book.split("\n\n"):
            para = para.strip()
            prose = (len(para) > 60 and "\n" not in para and para[0].isalpha() and not para.isupper()
                     and not _SPEAKER.match(para))  # play scripts ("MAGGIE. Then ...") are not stories
            if not prose:
                buf = []
                continue
            buf.append(para)
            words = sum(len(p.split()) for p in buf)
            if words >= 40:
                if words <= MAX_RESPONSE_WORDS:
                    yield " ".join(buf)
                    n += 1
                    if n >= max_passages:
                        return
                buf = []


class Instructions(Task):
    """Checkable instructions from TinyStories and/or gutenberg-children passages."""

    checkable = True
    make = staticmethod(make_examples)

    def __init__(self, sources=("tinystories", "gutenberg-children"), seed: int = 0, heldout_percent: float = 5.0,
                 max_stories: int = 3000):
        self.sources, self.seed, self.heldout_percent, self.max_stories = tuple(sources), seed, heldout_percent, max_stories
        base = getattr(self, "base_name", "instructions")
        self.name = base if len(self.sources) > 1 else f"{base}-{self.sources[0]}"
        self._all: list[Example] | None = None

    def _stories(self, source: str):
        docs = resolve(source).documents("train")
        if source.startswith("gutenberg"):
            return gutenberg_passages(docs, self.max_stories)
        return islice(docs, self.max_stories)

    def _load(self) -> list[Example]:
        if self._all is None:
            out = []
            for source in self.sources:
                for i, story in enumerate(self._stories(source)):
                    key = f"{source}-{i}"
                    rng = random.Random(f"{self.seed}:{key}")
                    out += self.make(story, key, rng)
            self._all = out
        return self._all

    def examples(self, split: str) -> list[Example]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; expected train or test")
        want = split == "test"
        return [e for e in self._load() if in_heldout(e.meta["key"], self.seed, self.heldout_percent) == want]

    def check(self, example: Example, response: str) -> CheckResult:
        return check_constraints(example.meta["constraints"], response)

    def repair(self, example: Example, response: str) -> str | None:
        return repair_response(example.meta["constraints"], response)


class Repeat(Instructions):
    """Copying drills (`make_repeat_examples`) from the same stories, with the same keys and so the
    same train/test split as `Instructions`: a held-out story's sentences are never drilled."""

    base_name = "repeat"
    make = staticmethod(make_repeat_examples)

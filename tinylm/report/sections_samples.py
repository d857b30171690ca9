"""Qualitative samples: a few short, chosen samples side by side in tables; every sample in a linked file.

Which samples are shown is decided by one documented rule (`problems`), never by hand: a sample is left
out of the tables when it

  - contains a literal control token (`<|end|>`, `<|endoftext|>`, `<|user|>`, ...), which means the
    text was decoded with special tokens kept or the model emitted one as text;
  - contains Project Gutenberg boilerplate (a "Project Gutenberg" / "*** START OF" / "E-text" /
    "Produced by" / "Transcriber" line), i.e. data-cleaning residue, not model behaviour;
  - repeats itself: the same word three times in a row (`The "The "The`), or a word 3-gram
    occurring three or more times, or fewer than 60% distinct word 4-grams;
  - is (nearly) empty: fewer than 5 words.

Among the prompts every model answered, the tables show the first ones whose answers pass the rule for
the most models (at most three); an answer that fails it is shown as "filtered: <reason>". All samples,
filtered or not, go to samples_all.md beside the report.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tinylm.report.document import Missing, Paragraph, Section, Table, ffloat
from tinylm.report.sections_setup import Context, rel

CELL_CHARS = 160  # a table cell shows at most this many characters of a sample
CONTROL = re.compile(r"<\|(?:endoftext|end|user|assistant|system|pad)\|>")
GUTENBERG = re.compile(r"project gutenberg|\*\*\* ?start of|\be-?text\b|gutenberg\.org|^produced by|\btranscriber",
                       re.I | re.M)


def problems(text: str) -> list[str]:
    """Why a sample should not be shown as representative (empty list: it passes). See the module docstring."""
    text = str(text)
    out = []
    if CONTROL.search(text):
        out.append("control token")
    if GUTENBERG.search(text):
        out.append("Gutenberg boilerplate")
    words = re.findall(r"\w+", text.lower())
    if len(words) < 5:
        out.append("empty")
        return out
    tri = Counter(zip(words, words[1:], words[2:]))
    four = list(zip(words, words[1:], words[2:], words[3:]))
    stutter = any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    if stutter or (tri and max(tri.values()) >= 3) or (len(four) >= 8 and len(set(four)) / len(four) < 0.6):
        out.append("repetition")
    return out


def cell(text: str, n: int = CELL_CHARS) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[:n].rsplit(" ", 1)[0] + " ..."


def _pick(prompts: list[str], answers: dict[str, dict[str, str]], k: int = 3) -> list[str]:
    """The first `k` prompts (in order) with the most answers that pass `problems`."""
    scored = [(-sum(1 for a in answers.values() if p in a and not problems(a[p])), i, p) for i, p in enumerate(prompts)]
    return [p for _, _, p in sorted(scored)[:k]]


def side_by_side(prompts: list[str], answers: dict[str, dict[str, str]], caption: str, source: str,
                 k: int = 3, strip_prompt: bool = False) -> Table | None:
    if not prompts or not answers:
        return None
    rows = []
    for p in _pick(prompts, answers, k):
        row = [cell(p, 90)]
        for a in answers.values():
            if p not in a:
                row.append("")
                continue
            why = problems(a[p])
            text = a[p][len(p):] if strip_prompt and a[p].startswith(p) else a[p]
            row.append(f"(filtered: {', '.join(why)})" if why else cell(text))
        rows.append(row)
    return Table(["prompt", *answers], rows, caption=caption, source=source, align="l" * (1 + len(answers)), wrap=True)


def _eval_samples(ctx: Context):
    models = [(label, ev, path) for r in ctx.runs for label, ev, path in r.evals()
              if isinstance(((ev.get("tasks") or {}).get("samples") or {}).get("samples"), list)]
    answers, prompts = {}, []
    for label, ev, _ in models:
        got = {}
        for x in ev["tasks"]["samples"]["samples"]:
            if isinstance(x, dict) and isinstance(x.get("prompt"), str):
                got[x["prompt"]] = str(x.get("output", ""))
                if x["prompt"] not in prompts:
                    prompts.append(x["prompt"])
        answers[label] = got
    return prompts, answers, models


def _ifeval_pairs(run):
    greedy = {run.label(n if n != "base" else "base"): d for n, d in run.ifeval.items()
              if not n.endswith("sampled") and isinstance(d.get("responses"), list)}
    answers, prompts, kinds = {}, [], {}
    for label, d in greedy.items():
        got = {}
        for r in d["responses"]:
            if isinstance(r, dict) and isinstance(r.get("prompt"), str):
                score = r.get("score")
                got[r["prompt"]] = str(r.get("response", "")) + (f" [score {ffloat(score, 2)}]" if isinstance(score, (int, float)) else "")
                kinds.setdefault(r["prompt"], r.get("kind"))
                if r["prompt"] not in prompts:
                    prompts.append(r["prompt"])
        answers[label] = got
    # one prompt per kind, continuations (which quote a long passage) last
    first_of_kind, seen = [], set()
    for p in sorted(prompts, key=lambda p: kinds.get(p) == "continue"):
        if kinds.get(p) not in seen:
            seen.add(kinds.get(p))
            first_of_kind.append(p)
    return first_of_kind, answers, greedy


def all_samples_md(ctx: Context) -> str:
    """Every sample the runs wrote, with the rule's verdict, for samples_all.md."""
    out = ["# All samples", "", "Every sample from the runs' artifacts. A verdict other than `ok` is why the report's "
           "tables leave it out (see tinylm/report/sections_samples.py for the rule).", ""]

    def block(title, text):
        why = problems(text)
        out.extend([f"**{title}** ({', '.join(why) or 'ok'})", "", "~~~~text", str(text).replace("~~~~", "~ ~ ~"), "~~~~", ""])
    for r in ctx.runs:
        for x in r.samples:
            block(f"{r.label('base')} pretraining, step {x.get('step')}, prompt {x.get('prompt', '')!r}", x.get("text", ""))
        for st in r.stages.values():
            for x in st.samples:
                block(f"{r.label(st.name)} training, step {x.get('step')}, prompt {x.get('prompt', '')!r}", x.get("text", ""))
        for n, d in r.ifeval.items():
            for x in d.get("responses") or []:
                if isinstance(x, dict):
                    block(f"{r.label(n.split('-')[0])} ifeval-{n} ({x.get('kind')}, score {x.get('score')}): "
                          f"{str(x.get('prompt', ''))[:200]!r}", x.get("response", ""))
        for label, ev, _ in r.evals():
            for x in ((ev.get("tasks") or {}).get("samples") or {}).get("samples") or []:
                if isinstance(x, dict):
                    block(f"{label} eval prompt ({x.get('kind')}): {x.get('prompt', '')!r}", x.get("output", ""))
    return "\n".join(out) + "\n"


def counts(ctx: Context) -> tuple[int, Counter]:
    n, why = 0, Counter()
    texts = []
    for r in ctx.runs:
        texts += [x.get("text", "") for x in r.samples]
        for st in r.stages.values():
            texts += [x.get("text", "") for x in st.samples]
        for d in r.ifeval.values():
            texts += [x.get("response", "") for x in d.get("responses") or [] if isinstance(x, dict)]
        for _, ev, _ in r.evals():
            texts += [x.get("output", "") for x in ((ev.get("tasks") or {}).get("samples") or {}).get("samples") or []
                      if isinstance(x, dict)]
    for t in texts:
        n += 1
        p = problems(t)
        why.update(p if p else ["ok"])
    return n, why


def samples_section(ctx: Context) -> Section:
    s = Section("Qualitative samples")
    n, why = counts(ctx)
    if n == 0:
        return s.add(Missing("Not available: no samples.jsonl, ifeval responses or eval samples in any run."))
    s.add(Paragraph(
        f"The runs wrote {n} samples; {why['ok']} pass the selection rule and the rest are left out of the tables: "
        + ", ".join(f"{k} {v}" for k, v in why.most_common() if k != "ok")
        + ". The rule (tinylm/report/sections_samples.py) drops text with a literal control token, Project Gutenberg "
          "boilerplate, a word repeated three times in a row or a word 3-gram three times, under 60% distinct 4-grams, "
          "or under 5 words; it is applied to every model alike, so a model whose answers all fail shows "
          "\"filtered\" cells. Every sample, with its verdict, is in `samples_all.md` beside this report."))
    prompts, answers, models = _eval_samples(ctx)
    t = side_by_side(prompts, answers, "The evaluation's fixed prompts, each model's continuation side by side (prompt text "
                     "not repeated in the cells; temperature 0.8, top-k 50, seed 0).",
                     ", ".join(rel(Path(p)) for _, _, p in models if p), strip_prompt=True)
    if t:
        s.add(t)
    for run in ctx.trained:
        first, ans, greedy = _ifeval_pairs(run)
        t = side_by_side(first, ans, f"Held-out instructions, one of each kind, answered by {' and '.join(ans)} "
                                     "(greedy; constraint score in brackets).",
                         ", ".join(rel(run.dir / f"ifeval-{n}.json") for n in run.ifeval if not n.endswith("sampled")))
        if t:
            s.add(t)
    return s

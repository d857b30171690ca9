"""Markdown rendering of a report Document (GitHub-flavoured: pipe tables, fenced code)."""

from __future__ import annotations

import os
from pathlib import Path

from tinylm.report.document import Bullets, Document, Figure, Missing, Paragraph, Table, Verbatim, spans, walk


def _text(text: str, in_table: bool = False) -> str:
    out = []
    for code, piece in spans(text):
        if code:
            tick = "``" if "`" in piece else "`"
            piece = f"{tick}{piece}{tick}"
        else:
            for ch in "\\*<":
                piece = piece.replace(ch, "\\" + ch)
            piece = piece.replace("\n", " ")
        if in_table:
            piece = piece.replace("|", "\\|")
        out.append(piece)
    return "".join(out)


def _table(t: Table, n: int) -> str:
    align = t.align or "l" + "r" * (len(t.header) - 1)
    rule = ["---" if a == "l" else "---:" if a == "r" else ":---:" for a in align]
    lines = ["| " + " | ".join(_text(h, True) for h in t.header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_text(c, True) for c in row) + " |" for row in t.rows]
    cap = f"*Table {n}: {_text(t.caption)}*" + (f" Source: {_text(t.source)}." if t.source else "")
    return "\n".join(lines) + "\n\n" + cap


def _fence(text: str) -> str:
    fence = "~~~~" if "```" in text else "```"
    return f"{fence}text\n{text}\n{fence}"


def render_md(doc: Document, out_dir) -> str:
    out = [f"# {_text(doc.title)}", "", f"*{_text(doc.subtitle)}, {doc.date}*", "", "## Abstract", "", _text(doc.abstract), ""]
    counters = {"table": 0, "figure": 0}
    if doc.summary:
        counters["table"] += 1
        out += [_table(doc.summary, counters["table"]), ""]
    for appendix, part in ((False, doc.sections), (True, doc.appendix)):
        if appendix and part:
            out += ["## Appendix", ""]
        for num, depth, s in walk(part, letters=appendix):
            out += [f"{'#' * (2 + depth)} {num} {_text(s.title)}", ""]
            for b in s.blocks:
                if isinstance(b, Paragraph):
                    out.append(_text(b.text))
                elif isinstance(b, Bullets):
                    out.append("\n".join(f"- {_text(i)}" for i in b.items))
                elif isinstance(b, Table):
                    counters["table"] += 1
                    out.append(_table(b, counters["table"]))
                elif isinstance(b, Figure):
                    counters["figure"] += 1
                    rel = Path(os.path.relpath(b.path, out_dir)).as_posix()
                    out.append(f"![Figure {counters['figure']}]({rel})\n\n*Figure {counters['figure']}: {_text(b.caption)}*"
                               + (f" Source: {_text(b.source)}." if b.source else ""))
                elif isinstance(b, Verbatim):
                    out.append((f"**{_text(b.label)}**\n\n" if b.label else "") + _fence(b.text))
                elif isinstance(b, Missing):
                    out.append(f"> {_text(b.text)}")
                out.append("")
    return "\n".join(out).rstrip() + "\n"

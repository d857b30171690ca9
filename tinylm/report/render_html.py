"""Self-contained HTML rendering: inline CSS, figures as base64 data URIs, no external URL anywhere.

Text from artifacts (samples, prompts) is escaped, and "://" inside it is written as "&#58;//" so a
URL quoted in a sample (Project Gutenberg headers have them) stays text that displays the same but
is never a link or a fetch.
"""

from __future__ import annotations

import base64
import html

from tinylm.report.document import Bullets, Document, Figure, Missing, Paragraph, Table, Verbatim, spans, walk

CSS = """
body { font-family: "Times New Roman", Times, "Liberation Serif", serif; max-width: 52rem; margin: 2rem auto;
       padding: 0 1.2rem; line-height: 1.45; color: #111; background: #fff; }
h1 { font-size: 1.7rem; text-align: center; margin-bottom: .2rem; }
.subtitle { text-align: center; color: #444; margin-top: 0; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: .15rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.abstract { margin: 1.2rem 3rem; font-size: .95rem; }
.abstract h2 { text-align: center; border: 0; font-size: 1rem; margin: 0 0 .3rem; }
table { border-collapse: collapse; margin: .8rem auto .2rem; font-size: .86rem; border-top: 2px solid #000;
        border-bottom: 2px solid #000; }
th { border-bottom: 1px solid #000; font-weight: 600; }
th, td { padding: .18rem .6rem; vertical-align: top; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } td.l, th.l { text-align: left; }
td.c, th.c { text-align: center; }
.caption { text-align: center; font-size: .85rem; color: #333; margin: .2rem 2rem 1rem; }
.source { color: #666; }
figure { margin: 1rem 0; text-align: center; } figure img { max-width: 100%; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: .5rem .7rem; font-size: .8rem; white-space: pre-wrap;
      word-break: break-word; }
.label { font-size: .85rem; font-weight: 600; margin-bottom: -.4rem; }
code { font-size: .88em; background: #f3f3f3; padding: 0 .15em; }
.missing { border-left: 3px solid #c90; background: #fff8e6; padding: .3rem .7rem; font-size: .92rem; }
nav ol { columns: 2; font-size: .9rem; list-style-position: inside; }
.wide { overflow-x: auto; }
"""


def esc(text: str) -> str:
    return html.escape(str(text), quote=True).replace("://", "&#58;//")


def _text(text: str) -> str:
    return "".join(f"<code>{esc(p)}</code>" if code else esc(p) for code, p in spans(text))


def _table(t: Table, n: int) -> str:
    align = t.align or "l" + "r" * (len(t.header) - 1)
    head = "".join(f'<th class="{a}">{_text(h)}</th>' for h, a in zip(t.header, align))
    body = "".join("<tr>" + "".join(f'<td class="{a}">{_text(c)}</td>' for c, a in zip(row, align)) + "</tr>"
                   for row in t.rows)
    src = f' <span class="source">Source: {_text(t.source)}.</span>' if t.source else ""
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            f'<div class="caption">Table {n}: {_text(t.caption)}{src}</div>')


def _figure(f: Figure, n: int) -> str:
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    src = f' <span class="source">Source: {_text(f.source)}.</span>' if f.source else ""
    return (f'<figure><img alt="Figure {n}" src="data:image/png;base64,{data}">'
            f'<figcaption class="caption">Figure {n}: {_text(f.caption)}{src}</figcaption></figure>')


def render_html(doc: Document) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_text(doc.title)}</h1>", f'<p class="subtitle">{_text(doc.subtitle)}<br>{esc(doc.date)}</p>',
           f'<div class="abstract"><h2>Abstract</h2><p>{_text(doc.abstract)}</p></div>']
    counters = {"table": 0, "figure": 0}
    if doc.summary:
        counters["table"] += 1
        out.append(_table(doc.summary, counters["table"]))
    toc = "".join(f'<li><a href="#s{num}">{_text(s.title)}</a></li>' for num, depth, s in walk(doc.sections) if depth == 0)
    out.append(f"<nav><ol>{toc}</ol></nav>")
    for appendix, part in ((False, doc.sections), (True, doc.appendix)):
        if appendix and part:
            out.append("<h2>Appendix</h2>")
        for num, depth, s in walk(part, letters=appendix):
            h = "h2" if depth == 0 else "h3"
            out.append(f'<{h} id="s{num}">{num} {_text(s.title)}</{h}>')
            for b in s.blocks:
                if isinstance(b, Paragraph):
                    out.append(f"<p>{_text(b.text)}</p>")
                elif isinstance(b, Bullets):
                    out.append("<ul>" + "".join(f"<li>{_text(i)}</li>" for i in b.items) + "</ul>")
                elif isinstance(b, Table):
                    counters["table"] += 1
                    out.append(_table(b, counters["table"]))
                elif isinstance(b, Figure):
                    counters["figure"] += 1
                    out.append(_figure(b, counters["figure"]))
                elif isinstance(b, Verbatim):
                    label = f'<p class="label">{_text(b.label)}</p>' if b.label else ""
                    out.append(f"{label}<pre>{esc(b.text)}</pre>")
                elif isinstance(b, Missing):
                    out.append(f'<p class="missing">{_text(b.text)}</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"

"""The report as data: a Document of Sections holding paragraphs, tables, figures and verbatim text.

The section builders fill it from artifacts; three renderers (Markdown, HTML, LaTeX) turn it into
files. Text is plain: the only inline markup is `backticks` for code, which every renderer knows,
so escaping happens in exactly one place per output format. The number formatters live here too,
so that a number reads the same in every format and tests can look for it verbatim.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]
    compact: bool = False  # a reference list: small type, no bullet marks, hanging indent (PDF only)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    source: str = ""  # the artifact(s) the numbers come from
    align: str = ""  # one of l/r/c per column; default: first column left, the others right
    wrap: bool = False  # long text cells: paragraph columns that wrap (samples side by side)


@dataclass
class Figure:
    path: Path  # a PNG written by figures.py
    caption: str
    source: str = ""


@dataclass
class Verbatim:
    text: str  # shown as-is (samples, commands)
    label: str = ""  # a short heading above the block


@dataclass
class Missing:
    text: str  # "Not available: ..."


Block = Paragraph | Bullets | Table | Figure | Verbatim | Missing


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    date: str
    abstract: str
    sections: list[Section]
    summary: Table | None = None  # the table right after the abstract
    appendix: list = field(default_factory=list)  # sections after the references, numbered A, B, ...
    files: dict = field(default_factory=dict)  # extra files written beside the report: name -> text

    def figures(self) -> list[Figure]:
        out = []

        def walk(s):
            out.extend(b for b in s.blocks if isinstance(b, Figure))
            for sub in s.subsections:
                walk(sub)
        for s in self.sections + list(self.appendix):
            walk(s)
        return out


# --------------------------------------------------------------------------- number formatting

def _bad(x) -> bool:
    """Not a finite number (None, NaN, a string where a number belongs in a hand-edited artifact)."""
    return not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x)


def num(x):
    """`x` when it is a finite number, else None: artifact values are checked once, where they are read."""
    return None if _bad(x) else x


def fint(x) -> str:
    """1328256 -> '1,328,256'."""
    return "n/a" if _bad(x) else f"{int(round(x)):,}"


def ffloat(x, digits: int = 3) -> str:
    return "n/a" if _bad(x) else f"{x:.{digits}f}"


def fpct(x, digits: int = 1) -> str:
    """0.3567 -> '35.7%'."""
    return "n/a" if _bad(x) else f"{100 * x:.{digits}f}%"


def fsi(x, digits: int = 3) -> str:
    """26214400 -> '26.2M'; 9535488 -> '9.54M' (3 significant digits)."""
    if _bad(x):
        return "n/a"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def fduration(seconds) -> str:
    """1885.28 -> '31.4 min'; 216.5 -> '3.6 min'; 42 -> '42 s'; 7300 -> '2.03 h'."""
    if _bad(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fbytes(n) -> str:
    """182056016 -> '182.1 MB' (decimal units, as the README quotes sizes)."""
    if _bad(n):
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def fci(value, half, digits: int = 3) -> str:
    """'0.612 ± 0.004' (value and 95% CI half-width), or just the value without a CI."""
    if _bad(value):
        return "n/a"
    return f"{value:.{digits}f}" + ("" if _bad(half) else f" ± {half:.{digits}f}")


def slug(text: str, max_len: int = 48) -> str:
    """A file-name-safe form of a user-given name: `my_run&50%#1_{x}` -> `my_run-50-1_x-3f2a1c`.

    Only [A-Za-z0-9._-] survive; when anything had to change, a short hash of the original keeps two
    names that differ only in punctuation apart. Names of runs and stages reach file names only
    through this, so no renderer ever has to escape a path."""
    import hashlib

    s = str(text)
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.")[:max_len] or "x"
    if clean == s:
        return clean
    return f"{clean}-{hashlib.sha1(s.encode('utf-8')).hexdigest()[:6]}"


def spans(text: str) -> list[tuple[bool, str]]:
    """Split plain text at backticks: [(is_code, piece), ...]. An unpaired backtick stays literal."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # odd number of backticks: keep the last one as a character
        parts = parts[:-2] + [parts[-2] + "`" + parts[-1]]
    return [(i % 2 == 1, p) for i, p in enumerate(parts) if p]


def walk(sections: list[Section], prefix: str = "", letters: bool = False):
    """Yield (number, depth, section) in document order: ("3", 0, s), ("3.1", 1, sub), ...; with `letters`
    (the appendix) the top level is lettered: ("A", 0, s), ("A.1", 1, sub)."""
    for i, s in enumerate(sections, 1):
        num = f"{prefix}{chr(64 + i) if letters and not prefix else i}"
        yield num, prefix.count("."), s
        yield from walk(s.subsections, num + ".")

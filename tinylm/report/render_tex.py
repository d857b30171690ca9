"""LaTeX rendering in a NeurIPS-like one-column layout, and the PDF build.

The preamble is our own and needs only what Debian's texlive-latex-base, texlive-latex-recommended
and texlive-fonts-recommended ship: Times (mathptmx), booktabs, graphicx, float, longtable,
tabularx, caption, hyperref, microtype. `build_pdf` runs latexmk (or pdflatex twice) when one is
installed and otherwise says why the PDF was skipped.

Artifact text reaches pdflatex only through `tex_escape`: LaTeX specials are escaped, common
Unicode punctuation is mapped to TeX, Latin letters pass through (inputenc utf8 + T1 handle them),
and anything else becomes its closest ASCII or "?" so a stray emoji cannot stop the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import unicodedata
from pathlib import Path

from tinylm.report.document import Bullets, Document, Figure, Missing, Paragraph, Table, Verbatim, spans, walk

SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
           "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
           "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
UNICODE = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$", "×": r"$\times$",
           "“": "``", "”": "''", "‘": "`", "’": "'", "—": "---", "–": "--", "…": r"\ldots{}",
           "·": r"\textperiodcentered{}", "•": r"\textbullet{}", "°": r"\textdegree{}", "\u00a0": "~",
           "\u00ad": "", "\ufeff": "", "«": r"\guillemotleft{}", "»": r"\guillemotright{}", "≈": r"$\approx$",
           "≤": r"$\leq$", "≥": r"$\geq$", "−": "-", "£": r"\pounds{}", "€": "EUR", "§": r"\S{}"}


TT = {"'": r"\textquotesingle{}", "`": r"\textasciigrave{}", "“": '"', "”": '"', "‘": r"\textquotesingle{}",
      "’": r"\textquotesingle{}", "-": "-{}"}  # typewriter text: straight quotes, no -- ligatures


def tex_escape(text: str, tt: bool = False) -> str:
    out = []
    text = str(text)
    for i, ch in enumerate(text):
        if ch == "-" and not tt and text[i + 1:i + 2] == "-":  # "--limit": two hyphens, not an en dash
            out.append("-{}")
        elif tt and ch in TT:
            out.append(TT[ch])
        elif ch in SPECIAL:
            out.append(SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch if ch.isprintable() or ch == "\n" else " ")
        elif ch in UNICODE:
            out.append(UNICODE[ch])
        elif 0xC0 <= ord(ch) <= 0x17F and ch not in "×÷":  # Latin-1 and Latin Extended-A letters: T1 has them
            out.append(ch)
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(tex_escape(ascii_, tt) if ascii_ else "?")
    return "".join(out)


def _text(text: str) -> str:
    out = []
    for code, piece in spans(text):
        if code:
            out.append(r"\texttt{" + tex_escape(piece, tt=True).replace("/", r"/\allowbreak{}") + "}")
        else:
            out.append(tex_escape(piece).replace("\n", " "))
    return "".join(out)


PREAMBLE = r"""\documentclass[10pt,letterpaper]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{mathptmx}
\usepackage[scaled=0.92]{helvet}
\usepackage{courier}
\usepackage[textwidth=5.5in,textheight=9in,top=1in,headheight=12pt,headsep=25pt,footskip=30pt]{geometry}
\usepackage{graphicx,booktabs,float,longtable,tabularx,array,textcomp}
\usepackage[font=small,labelfont=bf,skip=4pt]{caption}
\usepackage{microtype}
\usepackage[hidelinks]{hyperref}
% no placeins: its barrier at every section left most of a page blank whenever a section opened with a
% figure that did not fit below the previous section's last float (the appendix starts with \clearpage)
\renewcommand{\topfraction}{0.9}\renewcommand{\bottomfraction}{0.8}\renewcommand{\textfraction}{0.07}
\renewcommand{\floatpagefraction}{0.85}\setcounter{topnumber}{3}\setcounter{totalnumber}{5}
\setlength{\parindent}{0pt}
\setlength{\parskip}{4.5pt}
\setlength{\emergencystretch}{3em}
\sloppy
\renewcommand{\arraystretch}{1.1}
\makeatletter
\renewcommand{\section}{\@startsection{section}{1}{\z@}{-1.7ex \@plus -0.5ex \@minus -0.2ex}%
  {1.1ex \@plus 0.3ex \@minus 0.2ex}{\large\bfseries\raggedright}}
\renewcommand{\subsection}{\@startsection{subsection}{2}{\z@}{-1.8ex \@plus -0.5ex \@minus -0.2ex}%
  {0.8ex \@plus 0.2ex}{\normalsize\bfseries\raggedright}}
\makeatother
\newcommand{\missing}[1]{\par\noindent\fbox{\parbox{\dimexpr\linewidth-2\fboxsep-2\fboxrule}{\small #1}}\par}
\newenvironment{sample}[1]{\par\smallskip\noindent{\small\bfseries #1}\par\nopagebreak\vspace{-2pt}%
  \begin{list}{}{\leftmargin=1em\rightmargin=0pt}\item\footnotesize\ttfamily\raggedright}{\end{list}}
"""


def _width(t: Table) -> int:
    """Rough width in characters: the widest cell of each column plus padding."""
    cols = list(zip(t.header, *t.rows)) if t.rows else [(h,) for h in t.header]
    return sum(max(len(str(c)) for c in col) + 3 for col in cols)


def _table(t: Table) -> str:
    align = t.align or "l" + "r" * (len(t.header) - 1)
    head = " & ".join(r"\textbf{" + _text(h) + "}" if h else "" for h in t.header) + r" \\"
    body = "\n".join(" & ".join(_text(c) for c in row) + r" \\" for row in t.rows)
    caption = _text(t.caption)
    note = r"{\footnotesize Source: " + _text(t.source) + ".}" if t.source else ""
    source = r"\par\smallskip" + note if note else ""
    width = _width(t)
    if t.wrap:  # paragraph columns: the first (prompt) narrower, the others share the rest
        n = len(t.header)
        first = 0.22 if n > 2 else 0.3
        rest = (0.96 - first) / max(n - 1, 1)
        spec = "".join(f">{{\\raggedright\\arraybackslash}}p{{{w:.3f}\\linewidth}}" for w in [first] + [rest] * (n - 1))
        spaced = "\n\\addlinespace\n".join(" & ".join(_text(c) for c in row) + r" \\" for row in t.rows)  # rows apart
        tab = f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n{head}\n\\midrule\n{spaced}\n\\bottomrule\n\\end{{tabular}}"
        return f"\\begin{{table}}[!htbp]\n\\centering\\footnotesize\n\\caption{{{caption}}}\n{tab}\n{source}\n\\end{{table}}\n"
    if len(t.rows) > 22:  # can break across pages; never resized
        spec = align
        if width > 90:  # paragraph columns, widths in proportion to their widest cell
            cols = list(zip(t.header, *t.rows))
            chars = [max(len(str(c)) for c in col) + 3 for col in cols]
            spec = "".join(f">{{\\raggedright\\arraybackslash}}p{{{0.92 * c / sum(chars):.3f}\\linewidth}}" for c in chars)
        return (f"{{\\small\\begin{{longtable}}{{{spec}}}\n\\caption{{{caption}}}\\\\\n\\toprule\n{head}\n\\midrule\n"
                f"\\endhead\n{body}\n\\bottomrule\n\\end{{longtable}}}}\n" + (r"\begin{center}" + note + r"\end{center}" + "\n" if note else ""))
    if width <= 95:
        tab = f"\\begin{{tabular}}{{{align}}}\n\\toprule\n{head}\n\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}"
    elif len(t.header) <= 3:  # a text column: let the last one wrap
        spec = align[:-1] + ">{\\raggedright\\arraybackslash}X"
        tab = (f"\\begin{{tabularx}}{{\\linewidth}}{{{spec}}}\n\\toprule\n{head}\n\\midrule\n{body}\n\\bottomrule\n"
               f"\\end{{tabularx}}")
    else:
        tab = (f"\\resizebox{{\\linewidth}}{{!}}{{\\begin{{tabular}}{{{align}}}\n\\toprule\n{head}\n\\midrule\n{body}\n"
               f"\\bottomrule\n\\end{{tabular}}}}")
    return f"\\begin{{table}}[!htbp]\n\\centering\\small\n\\caption{{{caption}}}\n{tab}\n{source}\n\\end{{table}}\n"


def _png_inches(path: Path, dpi: int = 150) -> float:
    """Width of a PNG written at `dpi`, from its IHDR header (so a small figure is not blown up)."""
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big") / dpi if head[:8] == b"\x89PNG\r\n\x1a\n" else 6.4


def _figure(f: Figure, out_dir: Path) -> str:
    rel = Path(os.path.relpath(f.path, out_dir)).as_posix()
    frac = min(0.9, 0.85 * _png_inches(Path(f.path)) / 6.4)  # 6.4 in of figure ~ 85% of the text width
    src = f" Source: {_text(f.source)}." if f.source else ""
    return (f"\\begin{{figure}}[!htbp]\n\\centering\n\\includegraphics[width={frac:.2f}\\linewidth,height=0.34\\textheight,"
            f"keepaspectratio]{{{rel}}}\n\\caption{{{_text(f.caption)}{src}}}\n\\end{{figure}}\n")


VERBATIM_COLS = 78  # characters per line of \footnotesize Courier that fit in the 5.5in text width


def _verbatim(v: Verbatim) -> str:
    lines = []
    for line in v.text.expandtabs(4).splitlines() or [""]:
        line = line.rstrip()
        # leading indentation (verse) is kept; a wrapped line's continuation is indented
        lines += textwrap.wrap(line, VERBATIM_COLS, subsequent_indent="    ") or [""]
    # "{}" first: after a line break (\\) a line starting with "[" would be read as its optional [length]
    body = "\\\\\n".join("{}" + (tex_escape(ln, tt=True).replace(" ", "~") or r"\mbox{}") for ln in lines)
    return f"\\begin{{sample}}{{{_text(v.label)}}}\n{body}\n\\end{{sample}}\n"


def _block(b, out_dir: Path) -> str:
    if isinstance(b, Paragraph):
        return _text(b.text) + "\n"
    if isinstance(b, Bullets) and b.compact:
        return ("{\\footnotesize\\begin{list}{}{\\leftmargin=1.5em\\itemindent=-1.5em\\itemsep=1pt\\parsep=0pt\\topsep=0pt}\n"
                + "\n".join(f"\\item {_text(i)}" for i in b.items) + "\n\\end{list}}\n")
    if isinstance(b, Bullets):
        return ("\\begin{itemize}\\setlength{\\itemsep}{1pt}\n" + "\n".join(f"\\item {_text(i)}" for i in b.items)
                + "\n\\end{itemize}\n")
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return _figure(b, out_dir)
    if isinstance(b, Verbatim):
        return _verbatim(b)
    if isinstance(b, Missing):
        return f"\\missing{{{_text(b.text)}}}\n"
    return ""


def render_tex(doc: Document, out_dir) -> str:
    out_dir = Path(out_dir)
    out = [PREAMBLE, r"\begin{document}",
           r"\begin{center}\rule{\linewidth}{4pt}\\[0.15in]{\LARGE\bfseries " + _text(doc.title) + r"\par}"
           r"\vspace{0.12in}\rule{\linewidth}{1pt}\\[0.1in]" + _text(doc.subtitle) + r"\\" + tex_escape(doc.date)
           + r"\end{center}",
           r"\begin{center}{\large\bfseries Abstract}\end{center}",
           r"\begin{quote}\small " + _text(doc.abstract) + r"\end{quote}"]
    if doc.summary:
        out.append(_table(doc.summary))
    for appendix, part in ((False, doc.sections), (True, doc.appendix)):
        if appendix and part:
            out.append(r"\clearpage\appendix")
        for num, depth, s in walk(part, letters=appendix):
            out.append(("\\section{" if depth == 0 else "\\subsection{") + _text(s.title) + "}")
            for b in s.blocks:
                out.append(_block(b, out_dir))
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def tex_engine() -> str | None:
    return shutil.which("latexmk") or shutil.which("pdflatex")


INSTALL_HINT = ("apt-get install --no-install-recommends texlive-latex-base texlive-latex-recommended "
                "texlive-fonts-recommended latexmk")


def build_pdf(tex_path, timeout: float = 900.0) -> tuple[Path | None, str]:
    """Compile report.tex next to itself. Returns (pdf path, note) or (None, why it was skipped).

    The engine writes into a temporary directory (pdflatex -output-directory / latexmk -outdir) and only
    the finished PDF is moved beside the .tex, so neither a success nor a failure leaves .aux, .log,
    .out, .fls or .fdb_latexmk files in the report directory; a failure's first errors are in the note."""
    import tempfile

    tex_path = Path(tex_path)
    engine = tex_engine()
    if engine is None or shutil.which("pdflatex") is None:
        return None, f"skipped: no TeX engine (pdflatex) on PATH; install one with `{INSTALL_HINT}`"
    common = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error"]
    tex_path.with_suffix(".pdf").unlink(missing_ok=True)  # a PDF of an earlier report must not pass for this one
    with tempfile.TemporaryDirectory(prefix="tinylm-tex-") as tmp:
        if Path(engine).name == "latexmk":
            runs = [["latexmk", "-pdf", "-quiet", f"-outdir={tmp}", *common, tex_path.name]]
        else:
            runs = [["pdflatex", f"-output-directory={tmp}", *common, tex_path.name]] * 2  # 2nd pass: references
        for cmd in runs:
            try:
                proc = subprocess.run(cmd, cwd=tex_path.parent, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return None, f"failed: {cmd[0]} did not finish in {timeout:.0f} s"
            if proc.returncode != 0:
                log = Path(tmp) / tex_path.with_suffix(".log").name
                lines = log.read_text(errors="replace").splitlines() if log.exists() else proc.stdout.splitlines()
                errors = [ln for ln in lines if ln.startswith("!") or re.match(r"^\S+\.tex:\d+: ", ln)][:3]
                return None, f"failed: {cmd[0]} exit {proc.returncode}: {' | '.join(errors) or 'no error line in the log'}"
        built = Path(tmp) / tex_path.with_suffix(".pdf").name
        if not built.exists():
            return None, "failed: no PDF was produced"
        pdf = tex_path.with_suffix(".pdf")
        tmp_pdf = pdf.with_name(f".{pdf.name}.tmp")
        shutil.copyfile(built, tmp_pdf)
        os.replace(tmp_pdf, pdf)  # atomic: a reader never sees half a PDF
    return pdf, f"built with {Path(engine).name}"

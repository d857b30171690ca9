"""The technical report of one or more runs, generated from their artifacts only.

Run: tinylm report runs/gc-1m [runs/other ...] [--out DIR] [--no_pdf] [--sweeps bench/results]

Writes DIR/report.md, DIR/report.html (figures embedded), DIR/report.tex and DIR/report.pdf (when a
TeX engine is installed; see README) and DIR/figures/*.png. DIR defaults to <first run>/report.
"""

from __future__ import annotations

import time
from pathlib import Path

from tinylm.report.build import write_report
from tinylm.progress import summary
from tinylm.report.cost import CostAssumptions


def run(run_dirs: list[str], out: str | None = None, pdf: bool = True, sweeps=(), watts=None,
        usd_per_kwh=None, usd_per_hour=None) -> dict:
    missing = [d for d in run_dirs if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"not a directory: {', '.join(missing)}")
    cost = CostAssumptions(watts=watts, usd_per_hour=usd_per_hour)
    if usd_per_kwh is not None:
        cost.usd_per_kwh = usd_per_kwh
    out_dir = Path(out) if out else Path(run_dirs[0]) / "report"
    t0 = time.time()
    paths = write_report(run_dirs, out_dir, pdf=pdf, cost=cost, sweeps=sweeps)
    for kind in ("md", "html", "tex"):
        print(f"report: wrote {paths[kind]}")
    print(f"report: {out_dir / 'report.pdf'}: {paths['pdf_note']}" if paths["pdf"] else f"report: PDF {paths['pdf_note']}")
    summary("report", f"{len(run_dirs)} run(s), {'md, html, tex, pdf' if paths['pdf'] else 'md, html, tex'}",
            time.time() - t0, out_dir)
    return paths

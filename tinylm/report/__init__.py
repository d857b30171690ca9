"""The technical report: `tinylm report RUN_DIR [RUN_DIR ...]` reads what runs left on disk and writes
report.md, a self-contained report.html and report.tex + report.pdf. Training code never imports it.

    artifacts.py        tolerant readers (missing files are None, corrupt JSONL lines skipped and counted)
    document.py         the document model (sections of paragraphs, tables, figures) and number formats
    figures.py          matplotlib figures as PNG
    cost.py             energy and money estimate, every assumption stated
    sections_setup.py   summary, data, architecture, training, cost, loss curves
    sections_results.py instruction tuning, alignment, evaluation
    sections_extra.py   samples, scaling and ablations, limitations and reproducibility
    render_md.py / render_html.py / render_tex.py   one renderer per format (+ the PDF build)
    build.py            read -> document -> files
"""

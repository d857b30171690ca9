"""The technical report: `tinylm report RUN_DIR [RUN_DIR ...]` reads what runs left on disk and writes
report.md, a self-contained report.html and report.tex + report.pdf. Training code never imports it.

    artifacts.py        tolerant readers (missing files are None, corrupt JSONL lines skipped and counted)
    document.py         the document model (sections of paragraphs, tables, figures) and number formats
    figures.py          matplotlib figures as PNG
    cost.py             energy and money estimate, every assumption stated
    sections_setup.py   summary, data, architecture, training, cost, loss curves
    sections_frame.py   abstract, introduction, related work, conclusion, references
    sections_data.py    pretraining data (table, lengths, contamination) and its appendix
    sections_results.py instruction tuning, evaluation
    sections_alignment.py  alignment stages and the SFT-vs-aligned comparison
    sections_experiments.py  scaling (IsoFLOP, fits) and ablations, from sweep tables
    sections_samples.py side-by-side samples; the full sets in samples_all.md
    sections_extra.py   other sweeps, limitations and reproducibility
    model_card.py       the Hugging Face model card written beside the report and into exports
    render_md.py / render_html.py / render_tex.py   one renderer per format (+ the PDF build)
    build.py            read -> document -> files
"""

"""The technical report: built from a tiny synthetic run directory written in the same formats the
stages write (config.json, prepare.json, metrics.jsonl with a torn line, sft/, dpo/, eval/eval.json),
and from the committed results/gc-1m when it is present."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
from report_fixtures import REPO, STORY, _eval, _ifeval, _json, _jsonl, make_run  # noqa: F401

from tinylm import config as C
from tinylm.cli import main
from tinylm.model import describe
from tinylm.report.artifacts import load_run
from tinylm.report.build import build_document, write_report
from tinylm.report.cost import CostAssumptions, estimate
from tinylm.report.document import fci, ffloat, fint
from tinylm.report.render_html import render_html
from tinylm.report.render_md import render_md
from tinylm.report.render_tex import build_pdf, tex_engine, tex_escape
from tinylm.report.sections_extra import power_law


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = make_run(root)
    out = root / "out"
    paths = write_report([run], out, pdf=False)
    return run, out, paths, paths["md"].read_text(), paths["html"].read_text(), paths["tex"].read_text()


SECTIONS = ["Introduction", "Related work", "Pretraining data", "Architecture", "Training details", "Estimated cost",
            "Loss curves", "Instruction tuning", "Alignment", "Evaluation", "Comparison with published models",
            "Qualitative samples", "Scaling", "Ablations", "Limitations", "Conclusion", "References", "Other sweeps",
            "Reproducibility: commands and files"]


def test_every_figure_shown_exists_and_a_stale_one_is_removed(tmp_path):
    run = make_run(tmp_path)
    stale = tmp_path / "out" / "figures" / "lr_schedule.png"  # a figure an earlier report version wrote
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"png")
    keep = tmp_path / "out" / "notes.txt"  # the user's own file beside the report stays
    keep.write_text("mine")
    paths = write_report([run], tmp_path / "out", pdf=False)
    shown = set(re.findall(r"\(figures/([^)]+\.png)\)", paths["md"].read_text()))
    assert shown and {p.name for p in (tmp_path / "out" / "figures").glob("*.png")} == shown
    assert not stale.exists() and keep.read_text() == "mine"


def test_report_contains_every_section_whose_artifacts_exist(built):
    _, _, _, md, html, tex = built
    for title in SECTIONS:
        assert title in md and title in html and title in tex
    assert "DPO (t)" in md  # the dpo/ stage is picked up as an alignment subsection
    for absent in ("no sft/", "no eval/eval.json", "no config.json", "no prepare.json", "no rm/, dpo/"):
        assert absent not in md
    assert "Not available: no sweep results" in md  # nothing given for section 10


def test_missing_stages_are_named_never_a_crash(tmp_path):
    bare = make_run(tmp_path, "bare", stages=False)
    (bare / "config.json").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = write_report([bare, empty], tmp_path / "out", pdf=False)
    md = paths["md"].read_text()
    assert f"Not available: no sft/ directory in {bare}." in md
    assert "no eval/eval.json" in md and "no config.json" in md and "no rm/, dpo/, ppo/ or grpo/ directory" in md
    assert "Loss curves" in md and "Figure 1" in md  # metrics.jsonl alone still draws the curves


def test_figures_exist_and_are_nonempty_pngs(built):
    run, out, _, md, _, _ = built
    figs = sorted((out / "figures").glob("*.png"))
    assert len(figs) >= 5  # loss curves, lr, sft curves, ifeval bars, dpo curves
    for f in figs:
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"figures/{f.name}" in md


def test_numbers_in_report_equal_the_artifacts(built):
    run, _, _, md, html, tex = built
    cfg = json.loads((run / "config.json").read_text())
    prep = json.loads((run / "prepare.json").read_text())
    expected = [
        fint(cfg["model_info"]["params"]), fint(cfg["model_info"]["params_non_embedding"]),
        fint(cfg["model_info"]["flops_per_token"]), fint(prep["train"]["tokens"]), fint(prep["train"]["bytes"]),
        "163,840",  # tokens at the last metrics line: 40 x 4096
        ffloat(3.0 - 40 / 100 + 0.0012345, 4),  # final val_bpb
        ffloat(1.8765432, 4),  # bpb-tinystories.json
        fci(0.2468, 0.0399), fci(0.123, 0.031),  # ifeval sft / base
        "4.578", "3.375",  # SFT held-out loss before / after
        fci(0.6123, 0.004), fci(0.6001, 0.004), "1.900", "1.950",  # eval.json, base and sft
        "0.6543",  # dpo summary val_accuracy
        "Test CPU, 2 threads",  # hardware from checkpoints/*/meta.json
    ]
    for s in expected:
        assert s in md, s
        assert s.replace("±", "$\\pm$") in tex, s
    assert "0.500" in md  # blimp chance level column


def test_eval_table_has_a_column_per_model_and_compares_runs(tmp_path):
    a = make_run(tmp_path, "alpha")
    b = make_run(tmp_path, "beta", stages=False)
    _json(b / "eval" / "eval.json", _eval("beta", 0.55, 2.5))
    doc = build_document([a, b], tmp_path / "figs")
    md = render_md(doc, tmp_path)
    header = next(line for line in md.splitlines() if line.startswith("| task | metric | chance"))
    assert header.endswith("| alpha base | alpha SFT | beta base |")  # "<run> <stage>", never a bare "sft"
    assert "beta base against alpha base: worse on blimp" in md  # 0.55 vs 0.6123, intervals +-0.004
    assert "alpha SFT against alpha base: worse on blimp" in md and "| 1 doc" not in md


def test_html_is_self_contained_and_escaped(built):
    _, _, _, _, html, _ = built
    assert "http://" not in html and "https://" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<|endoftext|>" not in html and "&lt;|endoftext|&gt;" in html
    assert "<b>bold</b>" not in html  # eval/samples.md is shown as text, not markup
    assert "<link" not in html and "@import" not in html


def test_corrupt_metrics_lines_are_skipped_and_counted(built, tmp_path):
    run, _, _, md, _, _ = built
    assert "Corrupt metrics lines skipped: 1 in total" in md
    assert "1 corrupt line skipped" in md
    assert len(load_run(run).metrics) == 5


def test_tex_escapes_specials_and_unknown_unicode():
    out = tex_escape(STORY)
    for raw in ("50%", "3_000", " {x}", " #1", "😀", "<|"):
        assert raw not in out
    assert "&" not in out.replace(r"\&", "") and r"\{x\}" in out
    assert r"50\%" in out and r"3\_000" in out and r"\textless{}" in out and "?" in out
    assert r"\textbackslash{}" in out and "``ok''" in out


def test_commands_are_rebuilt_from_saved_configs(built):
    _, _, _, md, _, _ = built
    assert "tinylm pretrain --model.vocab_size 320" in md and "--train.max_steps 40" in md
    assert "--train.seed" not in md  # flags at their default are omitted
    assert "tinylm bpb --checkpoint runs/t --out x.json" in md
    assert "tinylm sft --checkpoint runs/t" in md


def test_cost_estimate_states_its_assumptions():
    c = estimate(3600, {"torch_threads": 2, "cpu": "AMD EPYC"}, CostAssumptions())
    assert c.watts == 8.0 and math.isclose(c.kwh, 0.008) and math.isclose(c.usd_energy, 0.0012)
    assert "2 CPU core(s) x 4 W" in c.power_basis
    g = estimate(1800, {"gpu": "NVIDIA H100 80GB HBM3"}, CostAssumptions(usd_per_kwh=0.2))
    assert g.watts == 700 and math.isclose(g.kwh, 0.35) and math.isclose(g.usd_cloud, 1.25)
    w = estimate(3600, {}, CostAssumptions(watts=65))
    assert w.kwh == 0.065 and "--watts" in w.power_basis


def test_sweep_section_fits_a_power_law(tmp_path):
    a, b = power_law([1e6, 1e7, 1e8], [4.0 * x ** -0.1 for x in (1e6, 1e7, 1e8)])
    assert math.isclose(a, 4.0, rel_tol=1e-9) and math.isclose(b, -0.1, rel_tol=1e-9)
    sweep = {"benchmark": "scaling", "rows": [{"params": p, "val_bpb": 4.0 * p ** -0.1} for p in (1e6, 3e6, 1e7)]}
    _json(tmp_path / "sweeps" / "scaling.json", sweep)
    _json(tmp_path / "sweeps" / "not_a_sweep.json", {"rows": [{"choice": "a"}, {"choice": "b"}]})
    run = make_run(tmp_path, "s", stages=False)
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[tmp_path / "sweeps"]), tmp_path)
    assert re.search(r"^### [A-Z]\.1 scaling$", md, re.M) and "val_bpb = 4 x params^-0.1000" in md
    assert "not a sweep" in md


def test_real_gc1m_results_build_without_crashing(tmp_path):
    runs = [REPO / "results" / "gc-1m", REPO / "results" / "stories260K"]
    if not runs[0].is_dir():
        pytest.skip("results/gc-1m not present")
    doc = build_document(runs, tmp_path / "figs", sweeps=[REPO / "bench" / "results"])
    md, html = render_md(doc, tmp_path), render_html(doc)
    assert "1,328,256" in md and "26,214,400" in md and "1.5360" in md and "0.289 ± 0.039" in md
    assert "2.8130" in md and "1.1444" in md  # stories260K side by side
    assert "http://" not in html and "https://" not in html


def test_cli_report_writes_md_html_tex(tmp_path, capsys):
    run = make_run(tmp_path, "c", stages=False)
    assert main(["report", str(run), "--out", str(tmp_path / "r"), "--no_pdf", "--sweeps"]) == 0
    for name in ("report.md", "report.html", "report.tex"):
        assert (tmp_path / "r" / name).stat().st_size > 1000
    assert "PDF skipped (--no_pdf)" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope"), "--no_pdf"]) == 1


@pytest.mark.skipif(tex_engine() is None or shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_pdf_builds_when_a_tex_engine_is_installed(built):
    _, out, paths, _, _, _ = built
    pdf, note = build_pdf(paths["tex"])
    assert pdf is not None, note
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20000


def test_malformed_artifacts_are_reported_not_fatal(tmp_path):
    run = make_run(tmp_path, "bad")
    cfg = json.loads((run / "config.json").read_text())
    cfg["model_info"] = {"params": "many", "flops_per_token": None}
    _json(run / "config.json", cfg)
    _jsonl(run / "metrics.jsonl", [{"step": "ten", "tokens": "x", "loss": "nan?"}, [1, 2], {"step": 10, "loss": 3.0}])
    _json(run / "eval" / "eval.json", {"schema": "tinylm.eval/1", "tasks": {"blimp": [1, 2], "piqa": {"metrics": {"acc": 0.6}}}})
    (run / "sft" / "summary.json").write_text("{not json")
    _json(run / "dpo" / "summary.json", [1, 2, 3])
    (run / "ifeval-sft.json").write_text("")
    md = write_report([run], tmp_path / "out", pdf=False)["md"].read_text()
    assert "Corrupt metrics lines skipped: 1 in total" in md
    assert "task 'blimp' is malformed" in md and "sft/summary.json: unreadable JSON" in md
    assert "dpo/summary.json: not a JSON object" in md
    assert "could not be built" not in md  # every section coped on its own, not through the safety net


def test_imported_model_architecture_comes_from_its_checkpoint_meta(tmp_path):
    model = C.ModelConfig(vocab_size=512, seq_len=512, n_layer=5, n_head=8, n_kv_head=4, n_embd=64, ffn_hidden=172)
    imported = tmp_path / "stories260K"
    _json(imported / "checkpoints" / "step_000000" / "meta.json",
          {"stage": "import", "config": {"model": C.to_dict(model)}, "code_version": "0.1.0"})
    _json(imported / "bpb-tinystories.json", {"text": "tinystories", "bits_per_byte": 1.1444, "bytes": 794373})
    md = render_md(build_document([make_run(tmp_path, "t", stages=False), imported], tmp_path / "figs"), tmp_path)
    params = fint(describe(model)["params"])
    assert any(line.startswith("| parameters |") and line.endswith(f"| {params} |") for line in md.splitlines())
    assert "stories260K/checkpoints/step_000000/meta.json" in md and "1.1444" in md


def test_tex_sample_lines_starting_with_a_bracket_are_not_line_break_lengths():
    from tinylm.report.document import Verbatim
    from tinylm.report.render_tex import _verbatim

    tex = _verbatim(Verbatim("Their side.\n\n[9]\nTHE END", "gc-1m"))
    assert "\\\\\n{}[9]" in tex  # "\\[9]" would be a line break with an optional length: LaTeX error


HOSTILE = "my_run&50%#1_{x}"


def test_hostile_run_name_is_safe_in_every_format(tmp_path):
    run = make_run(tmp_path, HOSTILE)
    have_tex = tex_engine() is not None and shutil.which("pdflatex") is not None
    out = tmp_path / "out"
    paths = write_report([run], out, pdf=have_tex)
    figs = [f.name for f in (out / "figures").glob("*.png")]
    assert figs and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in figs), figs  # file names are slugs
    tex, html, md = paths["tex"].read_text(), paths["html"].read_text(), paths["md"].read_text()
    assert HOSTILE not in tex and r"my\_run\&50\%\#1\_\{x\}" in tex
    assert all(re.fullmatch(r"[A-Za-z0-9._/-]+", g) for g in re.findall(r"\\includegraphics\[[^]]*\]\{([^}]*)\}", tex))
    assert "my_run&amp;50%#1_{x}" in html and "my_run&50%" not in html
    assert f"{HOSTILE} SFT" in md  # the name stays readable where it is text
    if have_tex:
        assert paths["pdf"] is not None, paths["pdf_note"]
        assert sorted(p.name for p in out.iterdir()) == ["figures", "model_card.md", "report.html", "report.md",
                                                         "report.pdf", "report.tex", "samples_all.md"]


@pytest.mark.skipif(tex_engine() is None or shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_failed_pdf_build_leaves_no_debris(tmp_path):
    tex = tmp_path / "report.tex"
    tex.write_text("\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n")
    pdf, note = build_pdf(tex)
    assert pdf is None and note.startswith("failed:") and "Undefined control sequence" in note
    assert [p.name for p in tmp_path.iterdir()] == ["report.tex"]  # no .aux/.log/.out/.fls/.fdb_latexmk


def test_double_hyphen_flags_are_not_typeset_as_dashes():
    assert tex_escape("a subset (--limit)") == "a subset (-{}-limit)"
    assert "--" not in tex_escape("--limit", tt=True)


def test_model_card_has_the_hf_sections_and_loads_with_huggingface_hub(tmp_path):
    from tinylm.report.model_card import card_for_run

    run = load_run(make_run(tmp_path))
    base, sft = card_for_run(run, "base"), card_for_run(run, "sft")
    for card in (base, sft):
        for h in ("## Model details", "## Uses", "## Bias, risks and limitations", "## Training details",
                  "## Evaluation", "## Environmental impact", "## How to use"):
            assert h in card, h
    assert "# t SFT: a tinylm model" in sft and "mixture `alpaca:1,instructions:1`, 6,777 training conversations" in sft
    assert "blimp (acc, n=67,000) | 0.600 ± 0.004 (chance 0.5)" in sft  # the SFT model's own eval.json
    assert "blimp (acc, n=67,000) | 0.612 ± 0.004 (chance 0.5)" in base and "bits per byte, tinystories | 1.8765" in base
    hub = pytest.importorskip("huggingface_hub")
    loaded = hub.ModelCard(sft)
    assert loaded.data.license == "cc-by-nc-4.0" and "text-generation" == loaded.data.pipeline_tag  # Alpaca's terms
    assert hub.ModelCard(base).data.license == "mit"


def test_report_writes_the_model_card_next_to_it(built):
    _, out, paths, _, _, _ = built
    card = (out / "model_card.md").read_text()
    assert card.startswith("---\n") and "# t DPO: a tinylm model" in card  # the run's last stage


# --------------------------------------------------------------------------- data section, comparison, samples, prose


def test_sample_rule_filters_repetition_control_tokens_and_gutenberg_headers():
    from tinylm.report.sections_samples import problems

    assert problems('The "The "The "The cat sat on the mat today.') == ["repetition"]
    assert problems("She said hello. <|end|> And then she left the room quietly.") == ["control token"]
    assert problems("*** START OF THE PROJECT GUTENBERG EBOOK ALICE *** Produced by someone kind.") == \
        ["Gutenberg boilerplate"]
    assert "repetition" in problems("I'm a little girl. " * 4)
    assert problems("ok") == ["empty"]
    assert problems("Once upon a time, a small fox found a red ball near the old mill and took it home.") == []


def test_samples_are_side_by_side_with_filtered_cells_and_all_go_to_the_appendix_file(built):
    _, out, _, md, _, _ = built
    assert "| prompt | t base | t SFT |" in md  # held-out instructions: the same prompt, both models
    assert "(filtered: control token" in md  # STORY carries a literal <|endoftext|>
    full = (out / "samples_all.md").read_text()
    assert "control token" in full and "Roses & violets 100%" in full


def test_prose_claims_only_what_the_intervals_resolve(tmp_path):
    from tinylm.report.reading import change_sentence, min_detectable, verdict

    assert verdict(0.247, 0.042, 0.309, 0.041) == "unresolved"  # the grader's case: overlapping intervals
    assert verdict(0.144, 0.033, 0.289, 0.039) == "better"
    assert verdict(0.60, 0.05, 0.19, 0.04) == "worse"
    assert verdict(1.0, None, 2.0, None) == "unknown"
    assert "does not resolve" in change_sentence("score", 0.247, 0.042, 0.309, 0.041, "a", "b")
    assert math.isclose(min_detectable(0.25, 200), 2 * 1.96 * math.sqrt(0.25 * 0.75 / 200))
    run = make_run(tmp_path, "g")
    base, sft = _ifeval(0.247, 0.042, "base"), _ifeval(0.309, 0.041, "sft")
    base["by_kind"]["max_sentences"] = {"score": 0.60, "ci95": 0.1, "n": 20}
    sft["by_kind"]["max_sentences"] = {"score": 0.19, "ci95": 0.1, "n": 20}
    _json(run / "ifeval-base.json", base)
    _json(run / "ifeval-sft.json", sft)
    doc = build_document([run], tmp_path / "figs")
    assert "the intervals overlap, so no gain is claimed" in doc.abstract
    assert "max_sentences 0.60 -> 0.19" in doc.abstract and "raises" not in doc.abstract
    md = render_md(doc, tmp_path)
    assert "no gain is claimed at this sample size" in md and "Instruction kinds that got worse: " in md


def test_eval_reading_names_tasks_resolved_below_chance():
    from tinylm.report.sections_results import eval_reading

    ev = {"tasks": {"openbookqa": {"metrics": {"acc": {"value": 0.132, "ci95": [0.102, 0.162]}}, "primary": "acc",
                                   "chance": 0.25, "higher_is_better": True, "n": 500},
                    "copa": {"metrics": {"acc": {"value": 0.55, "ci95": [0.45, 0.65]}}, "primary": "acc", "chance": 0.5}}}
    (line,) = eval_reading([("m base", ev, None)])
    assert "indistinguishable from chance on copa" in line and "below chance (resolved) on openbookqa" in line


def test_cleaning_steps_join_wrapped_lines():
    from tinylm.report.sections_data import cleaning_steps

    block = ("1. **Header and footer.** The text before the last PG start marker is cut (`*** START OF THE/THIS\n"
             "   PROJECT GUTENBERG ...`). More text.\n2. **Normalisation.** CRLF becomes LF.\n")
    assert cleaning_steps(block)[0] == ("Header and footer: The text before the last PG start marker is cut "
                                        "(`*** START OF THE/THIS PROJECT GUTENBERG ...`).")


def test_an_impossible_mfu_in_old_logs_is_never_printed(tmp_path):
    run = make_run(tmp_path, "busy", stages=False)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.endswith("}")]
    for r in rows:
        if "mfu" in r:
            r["mfu"] = 2.327  # the peak was measured while another job held the CPU
    rows[-1]["mfu"] = 0.31
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report([run], tmp_path / "rep", pdf=False)["md"].read_text()
    assert "232.7%" not in md and "31.0% (3 log lines above 100% left out" in md

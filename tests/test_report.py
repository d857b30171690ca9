"""The technical report: built from a tiny synthetic run directory written in the same formats the
stages write (config.json, prepare.json, metrics.jsonl with a torn line, sft/, dpo/, eval/eval.json),
and from the committed results/gc-1m when it is present."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

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

REPO = Path(__file__).resolve().parent.parent
STORY = 'Tom said "50% of the cake & 3_000 crumbs" <|endoftext|> see http://www.gutenberg.org ~ {x} #1 \\ “ok” 😀'


def _jsonl(path: Path, rows, corrupt: str | None = None) -> None:
    lines = [json.dumps(r) for r in rows]
    if corrupt is not None:
        lines.insert(len(lines) // 2, corrupt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _ifeval(score, ci, stage, decoding="greedy"):
    return {"checkpoint": "runs/t/checkpoints/step_000040", "stage": stage, "task": "instructions", "decoding": decoding,
            "n_prompts": 30, "n_responses": 30, "score": score, "ci95": ci, "perfect_rate": 0.1, "reference_score": 1.0,
            "by_kind": {"title": {"score": score + 0.1, "ci95": 0.05, "n": 15}, "keywords": {"score": score - 0.05, "ci95": 0.04, "n": 15}},
            "config": dict(C.to_dict(C.IFEvalConfig(checkpoint="runs/t", out=f"runs/t/ifeval-{stage}.json"))),
            "responses": [{"kind": "title", "prompt": "Give this story a title: Tom & Sue", "response": STORY, "score": 1.0},
                          {"kind": "keywords", "prompt": "Use the words cat, hat.", "response": "A cat.", "score": 0.5}]}


def _eval(name, acc, bpb):
    return {"schema": "tinylm.eval/1",
            "model": {"spec": f"runs/{name}", "name": name, "kind": "tinylm", "params": 12345, "seq_len": 32},
            "date": "2026-11-26T17:00:00Z", "code_version": "abc1234", "hardware": {"device": "cpu", "threads": 2},
            "seconds": 12.5, "limit": None,
            "tasks": {
                "blimp": {"metrics": {"acc": {"value": acc, "stderr": 0.0019, "ci95": [acc - 0.004, acc + 0.004]}},
                          "primary": "acc", "higher_is_better": True, "chance": 0.5, "n": 67000, "num_fewshot": 0,
                          "truncated": 0, "malformed": 2, "protocol": "minimal pairs, higher log-likelihood wins",
                          "breakdown": {"phenomenon": {"anaphor_agreement": {"acc": 0.7, "n": 2000}}}},
                "wikitext": {"metrics": {"bits_per_byte": {"value": bpb, "stderr": None, "ci95": None},
                                         "word_perplexity": {"value": 900.0}},
                             "primary": "bits_per_byte", "higher_is_better": False, "chance": None, "n": 62},
                "hellaswag": {"metrics": {"acc_norm": {"value": 0.26, "stderr": 0.004, "ci95": [0.252, 0.268]}},
                              "primary": "acc_norm", "higher_is_better": True, "chance": 0.25, "n": 10042},
            }}


def make_run(root: Path, name: str = "t", stages: bool = True) -> Path:
    """A run directory in the formats tinylm's stages write (see tinylm/train/loop.py, stages/*.py)."""
    run = root / name
    model = C.ModelConfig(vocab_size=320, seq_len=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    train = C.TrainConfig(run_dir=f"runs/{name}", data=f"runs/{name}/data", max_steps=40, total_batch_tokens=4096)
    _json(run / "config.json", {"stage": "pretrain", "config": C.to_dict(C.PretrainConfig(model, train)),
                                "model_info": describe(model), "data": {"dir": f"runs/{name}/data", "source": "tinystories"}})
    split = lambda docs, nbytes, toks: {"files": ["x.bin"], "source_files": ["a.txt"], "documents": docs, "bytes": nbytes,
                                        "tokens": toks, "bytes_per_token": nbytes / toks, "replaced_utf8": 0, "seconds": 1.0}
    _json(run / "prepare.json", {"source": "tinystories", "dtype": "uint16", "vocab_size": 320,
                                 "config": C.to_dict(C.PrepareConfig(corpus="tinystories", out=f"runs/{name}/data")),
                                 "train": split(400, 123457, 41152), "val": split(40, 12001, 4000)})
    _json(run / "tokenizer.meta.json", {"config": C.to_dict(C.TokenizerConfig(corpus="tinystories", vocab_size=320)),
                                        "vocab_size": 320, "sha256": "ab" * 32, "seconds": 0.5,
                                        "trained_on": {"documents": 400, "bytes": 123457, "files": ["a.txt"]},
                                        "valid": {"bytes": 12001, "tokens": 4000, "bytes_per_token": 3.00025}})
    fpt = describe(model)["flops_per_token"]
    rows = [{"step": 0, "tokens": 0, "val_bpb": 3.4567891, "elapsed_s": 0.0}]
    for s in range(10, 41, 10):
        row = {"step": s, "tokens": s * 4096, "loss_tokens": s * 4096, "lr": 3e-3 * s / 40, "loss": 6.0 - s / 10,
               "grad_norm": 0.5, "tok_per_s": 20000.0 + s, "mfu": round((20000.0 + s) * fpt / 4e11, 4), "elapsed_s": s * 0.2}
        if s % 20 == 0:
            row["val_bpb"] = 3.0 - s / 100 + 0.0012345
        rows.append(row)
    _jsonl(run / "metrics.jsonl", rows, corrupt='{"step": 25, "tokens": 1024')  # torn by a kill mid-write
    _jsonl(run / "samples.jsonl", [{"prompt": "Once upon a time", "text": STORY, "step": 20},
                                   {"prompt": "", "text": "Lily & Tom <|endoftext|>", "step": 40}])
    _json(run / "checkpoints" / "step_000040" / "meta.json",
          {"stage": "pretrain", "step": 40, "code_version": "0.1.0+gabc1234",
           "hardware": {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "torch": "2.13.0+cpu"}})
    _json(run / "bpb-tinystories.json", {"checkpoint": f"runs/{name}/checkpoints/step_000040", "text": "tinystories",
                                         "bits_per_byte": 1.8765432, "bytes": 794373, "tokens": 228153,
                                         "config": C.to_dict(C.BpbConfig(checkpoint=f"runs/{name}", out="x.json"))})
    if not stages:
        return run
    _json(run / "ifeval-base.json", _ifeval(0.123, 0.031, "base"))
    _json(run / "ifeval-sft.json", _ifeval(0.2468, 0.0399, "sft"))
    sft_cfg = C.SFTConfig(checkpoint=f"runs/{name}")
    _json(run / "sft" / "config.json", {"stage": "sft", "config": {"model": C.to_dict(model), "train": C.to_dict(sft_cfg.train),
                                                                   "sft": C.to_dict(sft_cfg)}})
    _jsonl(run / "sft" / "metrics.jsonl",
           [{"step": 0, "tokens": 0, "val_loss": 4.5781, "elapsed_s": 0.0}]
           + [{"step": s, "tokens": s * 1000, "loss_tokens": s * 600, "lr": 1e-3, "loss": 4 - s / 100, "grad_norm": 1.0,
               "tok_per_s": 9000.0, "mfu": None, "elapsed_s": s / 10, **({"val_loss": 3.3754} if s == 30 else {})}
              for s in (10, 20, 30)])
    _jsonl(run / "sft" / "samples.jsonl", [{"prompt": "Write a poem.", "text": "Roses & violets 100%", "step": 30}])
    _json(run / "sft" / "summary.json", {"step": 30, "tokens": 30000, "elapsed_s": 3.0, "val_loss": 3.3754,
                                         "data": {"mixture": "alpaca:1,instructions:1", "train_conversations": 6777,
                                                  "train_dropped_too_long": 22, "val_conversations": 49},
                                         "padding": {"computed_positions": 30000, "padding_fraction": 0.0746}})
    _jsonl(run / "dpo" / "metrics.jsonl", [{"step": s, "loss": 0.69 - s / 100, "reward_margin": s / 50,
                                            "accuracy": 0.5 + s / 100, "kl": s / 1000, "elapsed_s": s} for s in (1, 2, 3)])
    _json(run / "dpo" / "summary.json", {"step": 3, "val_accuracy": 0.6543, "elapsed_s": 3.0, "beta": 0.1})
    _json(run / "eval" / "eval.json", _eval(name, 0.6123, 1.9))
    (run / "eval" / "samples.md").write_text("# Samples\n\n**Prompt:** Once\n\n**Model:** once & again <b>bold</b>\n")
    _json(run / "sft" / "eval" / "eval.json", _eval(name, 0.6001, 1.95))
    return run


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


def _write_corpus(root: Path, train_docs: list[str], valid_docs: list[str]) -> None:
    (root / "tinystories").mkdir(parents=True, exist_ok=True)
    import lzma

    sep = "\n<|endoftext|>\n"
    with lzma.open(root / "tinystories" / "train-00.txt.xz", "wt") as f:
        f.write(sep.join(train_docs) + sep)
    (root / "tinystories" / "valid-v1-head.txt").write_text(sep.join(valid_docs) + sep)


def test_contamination_counts_dirty_examples_by_13_grams(tmp_path, monkeypatch):
    from tinylm.data.sources import resolve
    from tinylm.report import data_stats

    shared = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun"  # 17 words
    train = [f"Once there was a boy. {shared}. He ran home.", "A completely different story about trains " * 5]
    valid = ["Nothing in common with training at all, just some words that are new here for sure."]
    _write_corpus(tmp_path, train, valid)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    evals = {"fake-task": [f"Question: {shared}?", "short one", "twelve words only here that never appear in train ok"]}
    monkeypatch.setattr(data_stats, "eval_texts", lambda t: evals[t])
    out = data_stats.compute(resolve("tinystories"), ["fake-task"], None, budget_s=60)
    t = out["tasks"]["fake-task"]
    assert t["examples"] == 3 and t["too_short"] == 2 and t["checkable"] == 1 and t["dirty_examples"] == 1
    assert t["ngrams"] == 18 - 13 + 1 and t["ngrams_in_train"] == 5  # "question" + 17 shared words: 5 of 6 in train
    assert out["tasks"]["held-out split"]["dirty_examples"] == 0
    assert out["train"]["doc_bytes"] == [len(d.encode()) for d in train] and not out["train"]["partial"]


def test_ngram_hashes_match_a_hand_computation():
    import numpy as np

    from tinylm.report.data_stats import ngram_hashes

    ids = np.array([3, 1, 4, 1, 5], dtype=np.uint64)
    h = ngram_hashes(ids, 3)
    p = 1_000_003
    assert [int(x) for x in h] == [(a * p * p + b * p + c) % 2**64 for a, b, c in ((3, 1, 4), (1, 4, 1), (4, 1, 5))]
    assert len(ngram_hashes(ids, 6)) == 0


def test_data_table_sums_to_the_shard_headers(tmp_path):
    import numpy as np

    from tinylm.data.shards import write_shard
    from tinylm.report.sections_data import data_table, shard_check

    run_dir = make_run(tmp_path, "d", stages=False)
    prep = json.loads((run_dir / "prepare.json").read_text())
    write_shard(run_dir / "data" / "train-000.bin", np.zeros(41000, np.uint16), 320)
    write_shard(run_dir / "data" / "train-001.bin", np.zeros(152, np.uint16), 320)
    write_shard(run_dir / "data" / "val.bin", np.zeros(4000, np.uint16), 320)
    run = load_run(run_dir)
    assert "train: 41,152 tokens in 2 shard header(s), equal to prepare.json" in shard_check(run)
    assert "val: 4,000 tokens in 1 shard header(s), equal to prepare.json" in shard_check(run)
    write_shard(run_dir / "data" / "val.bin", np.zeros(3999, np.uint16), 320)
    assert "prepare.json says 4,000: they do not match" in shard_check(run)
    t = data_table(run, "CDLA-Sharing-1.0", "SOURCES.md")
    train_row = t.rows[0]
    assert train_row[4] == fint(prep["train"]["tokens"]) and train_row[5] == "100%"
    assert train_row[6] == ffloat(163840 / 41152, 2) and train_row[7] == "CDLA-Sharing-1.0"  # epochs = consumed / tokens


def test_licence_is_read_from_the_sources_record():
    from tinylm.report.sections_data import cleaning_steps, corpus_block, licence_of

    md = ("# Sources\n\n## Section: A (tinystories/)\n\n| `tinystories/train-00.txt.xz` | x | The data is TinyStories, "
          "CDLA-Sharing-1.0 | ok |\n\n## Section: B (english/)\n\n* Licence as stated: Every Project Gutenberg e-book is "
          "public domain in the USA.\n\n### Cleaning\n\n1. **Header and footer.** Cut before the start marker. More.\n"
          "2. **Held-out split.** About 1.5% of the bytes.\n")
    assert licence_of("tinystories", md, ["tinystories/train-00"]) == ("CDLA-Sharing-1.0", "SOURCES.md")
    assert licence_of("gutenberg-children", md, ["english/gutenberg-children"])[0] == "public domain in the USA" or \
        licence_of("x", md, ["english/"])[0] == "public domain in the USA"
    assert cleaning_steps(corpus_block(md, ["english/"])) == ["Header and footer: Cut before the start marker.",
                                                               "Held-out split: About 1.5% of the bytes."]
    assert licence_of("unknown", None, [])[0] == "not recorded"


def test_published_losses_convert_to_bits_per_byte_by_hand():
    from tinylm.report.comparison import bits_per_byte, nats_per_token

    # stories260K: 1.297 nats/token, 2.0212 bytes/token -> 1.297 / ln 2 / 2.0212
    assert math.isclose(bits_per_byte(1.297, 2.0212), 1.297 / 0.6931471805599453 / 2.0212)
    assert math.isclose(bits_per_byte(1.297, 2.0212), 0.92577, rel_tol=1e-4)
    assert math.isclose(bits_per_byte(0.760, 3.8654), 0.28366, rel_tol=1e-4)  # stories110M, Llama 2 tokenizer
    assert math.isclose(nats_per_token(bits_per_byte(1.072, 3.87), 3.87), 1.072)


def test_comparison_table_marks_measured_and_reported_rows(tmp_path):
    from tinylm.report.comparison import comparison_section
    from tinylm.report.sections_setup import Context

    run = make_run(tmp_path, "c", stages=False)
    s260 = tmp_path / "stories260K"
    _json(s260 / "checkpoints" / "step_000000" / "meta.json", {"stage": "import", "config": {"model": C.to_dict(
        C.ModelConfig(vocab_size=512, seq_len=512, n_layer=5, n_head=8, n_kv_head=4, n_embd=64, ffn_hidden=172))}})
    _json(s260 / "bpb-tinystories.json", {"text": "tinystories", "bits_per_byte": 1.1444, "bytes": 794373, "tokens": 393016})
    ctx = Context([load_run(run), load_run(s260)], tmp_path / "figs")
    ctx.published = {"tok512": {"valid": {"bytes_per_token": 2.0}, "train": {"bytes_per_token": 2.1}},
                     "llama2-32k": {"valid": {"bytes_per_token": 4.0}}}
    s = comparison_section(ctx)
    t = next(b for b in s.blocks if hasattr(b, "rows"))
    rows = {r[0]: r for r in t.rows}
    assert rows["c base"][-1] == "measured here" and rows["c base"][4] == "1.877"
    assert rows["stories260K"][-1] == "measured here"
    assert rows["stories260K"][3] == ffloat(1.1444 * math.log(2) * 794373 / 393016, 3)  # nats/token from bpb
    conv, alt = 1.297 / math.log(2) / 2.0, 1.297 / math.log(2) / 2.1
    assert rows["stories260K (llama2.c)"][-1].startswith("reported")
    assert rows["stories260K (llama2.c)"][4] == f"{conv:.3f} ± {abs(conv - alt):.3f}"
    assert rows["stories110M (llama2.c)"][4] == ffloat(0.760 / math.log(2) / 4.0, 3)  # no train-head measurement: no ±
    text = " ".join(b.text for b in s.blocks if hasattr(b, "text"))
    assert "Cross-check: stories260K measured here" in text


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


def _isoflop_table():
    rows = []
    for b in (1e12, 3e12):
        for p in (1e5, 3e5, 1e6):
            rows.append({"cell": f"c{b}{p}", "seed": 1, "budget": b, "params": p, "flops": b, "val_bpb": 2 + (math.log10(p) - 5.5) ** 2
                         - 0.1 * math.log10(b / 1e12), "wall_s": 10.0, "loadavg_start": [1.0], "loadavg_end": [2.5]})
    return {"sweep": "iso", "kind": "isoflop", "x": "params", "y": "val_bpb", "command": "tinylm sweep ...", "rows": rows}


def _fit(a_ci):
    return {"sweep": "iso", "y": "val_bpb", "primary": "params", "n_bootstrap": 200,
            "conventions": {"params": {"approach2": {"a": 0.62, "a_ci": a_ci, "b": 0.38, "b_ci": [0.3, 0.45],
                                                     "per_budget": [{"budget": 1e12, "n_opt": 3.1e5, "n_opt_ci": [2e5, 4e5],
                                                                     "inside": True}]},
                                       "approach3": {"E": 1.2, "E_ci": [1.1, 1.3], "alpha": 0.3, "beta": 0.25}}},
            "holdout": {"mean_abs_error": 0.0123, "max_abs_error": 0.031}}


def _ablation_table():
    rows = [{"cell": f"{v}-s{s}", "seed": s, "variant": v, "val_bpb": 2.0 + d + 0.001 * s, "wall_s": 5.0,
             "loadavg_end": [2.0 + 0.1 * s, 2.0, 2.0]}
            for v, d in (("baseline", 0.0), ("learned_pos", 0.05), ("muon", -0.0005)) for s in (1, 2, 3)]
    ab = {"baseline": {"n_seeds": 3, "val_bpb_mean": 2.002, "val_bpb_std": 0.001, "delta_mean": 0.0, "delta_std": 0.0, "n_paired": 3,
                       "wall_s_mean": 5.0},
          "learned_pos": {"n_seeds": 3, "val_bpb_mean": 2.052, "val_bpb_std": 0.001, "delta_mean": 0.05, "delta_std": 0.004, "n_paired": 3,
                          "wall_s_mean": 6.0},
          "muon": {"n_seeds": 3, "val_bpb_mean": 2.0015, "val_bpb_std": 0.001, "delta_mean": -0.0005, "delta_std": 0.003, "n_paired": 3}}
    return {"sweep": "abl", "kind": "grid", "x": "variant", "y": "val_bpb", "rows": rows, "ablation": ab}


def test_scaling_and_ablation_sections_render_with_intervals_and_readings(tmp_path):
    _json(tmp_path / "scaling" / "iso" / "sweep.json", _isoflop_table())
    _json(tmp_path / "scaling" / "fit.json", _fit([0.41, 0.58]))
    _json(tmp_path / "ablations" / "abl" / "sweep.json", _ablation_table())
    run = make_run(tmp_path, "x", stages=False)
    doc = build_document([run], tmp_path / "figs", sweeps=[tmp_path / "scaling", tmp_path / "ablations"])
    md = render_md(doc, tmp_path)
    assert "IsoFLOP profiles" in md and "0.62 [0.41, 0.58]" in md
    assert "an interval that contains Chinchilla's 0.5" in md and "within 0.012 val_bpb on average" in md
    half = 4.303 * 0.004 / math.sqrt(3)
    assert f"+0.0500 ± {half:.4f}" in md and "worse than the baseline: learned_pos" in md
    assert re.search(r"\| learned_pos \|.*\| worse \| 1\.20 \|", md) and "load average 2.1-2.3 at the end of runs" in md
    assert re.search(r"\| muon \|.*\| n/a \|", md)  # no timing recorded: said, not invented
    assert "Not resolved at 3 seed(s): muon" in md
    assert (tmp_path / "figs" / "ablation_abl.png").is_file() and (tmp_path / "figs" / "isoflop_iso.png").is_file()
    other = md.split("Other sweeps")[-1]
    assert not re.search(r"^### [A-Z]\.\d+ iso", other, re.M)  # not repeated among the other sweeps
    from tinylm.report.sections_experiments import scaling_reading

    assert "faster than Chinchilla's 0.5 with the interval excluding it" in scaling_reading(_fit([0.55, 0.7]))


def test_scaling_ablation_and_alignment_say_not_available_on_missing_or_malformed_inputs(tmp_path):
    run = make_run(tmp_path, "m", stages=False)
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[]), tmp_path)
    assert "Not available: no IsoFLOP sweep" in md and "Not available: no ablation table" in md
    _json(tmp_path / "bad" / "fit.json", {"conventions": {"params": "oops"}, "primary": "params"})
    _json(tmp_path / "bad" / "iso" / "sweep.json", {"kind": "isoflop", "rows": [{"params": "x"}, 3]})
    _json(tmp_path / "bad" / "abl" / "sweep.json", {"rows": [], "ablation": {"v": {"delta_mean": "?"}, "w": 5}})
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[tmp_path / "bad"]), tmp_path)
    assert "could not be built" not in md
    assert "has no rows with params" in md and "has no approach2/approach3 fit" in md


def _alignment_json():
    def m(score, ci, kinds, kl=None, bpb=1.9):
        return {"checkpoint": "x", "run_summary": {"wall_clock_s": 120.0} if kl else None,
                "greedy": {"score": score, "ci95": ci, "n": 300, "degenerate_rate": 0.05, "perfect_rate": 0.1,
                           "by_kind": {k: {"score": v, "ci95": 0.05, "n": 60} for k, v in kinds.items()}},
                "sampled": {"score": score - 0.01, "ci95": ci, "n": 300},
                "kl_to_sft": {"kl": kl, "ci95": 0.01, "n": 100, "unit": "nats per answer"} if kl else None,
                "bpb_tinystories": bpb, "seconds": 30.0}
    return {"protocol": {}, "sft": "runs/t/sft", "methods": {
        "sft": m(0.30, 0.04, {"title": 0.5, "max_sentences": 0.6}),
        "grpo": m(0.45, 0.04, {"title": 0.8, "max_sentences": 0.2}, kl=0.12, bpb=1.95),
        "dpo": m(0.32, 0.04, {"title": 0.55, "max_sentences": 0.6}, kl=0.05),
        "ppo": "broken"}}


def test_alignment_comparison_renders_table_figure_and_reading(tmp_path):
    run = make_run(tmp_path, "al")
    _json(run / "alignment.json", _alignment_json())
    doc = build_document([run], tmp_path / "figs")
    md = render_md(doc, tmp_path)
    assert "| al GRPO | 0.450 ± 0.040 |" in md and "| al SFT | 0.300 ± 0.040 |" in md
    assert "al GRPO raises greedy constraint satisfaction from 0.300 to 0.450, resolved" in md
    assert "kinds that got worse: max_sentences 0.60 -> 0.20" in md
    assert "al DPO moves greedy constraint satisfaction from 0.300 to 0.320, within the intervals (not resolved)" in md
    assert "left out: ppo" in md and (tmp_path / "figs" / "alignment_kinds_al.png").is_file()
    # the abstract names the best method with both intervals and the language-modelling cost
    assert ("Of 2 alignment methods scored on the same held-out instructions, al GRPO does best: greedy constraint "
            "satisfaction 0.450 ± 0.040 against 0.300 ± 0.040 after SFT (the intervals separate), while TinyStories "
            "bits per byte go from 1.900 to 1.950.") in md
    _json(run / "alignment.json", {"methods": [1, 2]})
    md = render_md(build_document([run], tmp_path / "figs"), tmp_path)
    assert "alignment.json has no \"methods\" mapping" in md and "could not be built" not in md
    assert "alignment methods scored" not in md


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

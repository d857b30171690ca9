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


SECTIONS = ["Pretraining data", "Architecture", "Training details", "Estimated cost", "Loss curves",
            "Instruction tuning", "Alignment", "Evaluation", "Qualitative samples", "Scaling and ablations",
            "Limitations and reproducibility"]


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
    assert header.endswith("| alpha | alpha sft | beta |")
    assert "alpha is clearly better" in md and "blimp" in md


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
    assert "### 9.1 scaling" in md and "val_bpb = 4 x params^-0.1000" in md
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

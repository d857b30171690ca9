"""Report sections with their own inputs: pretraining data (table, contamination, licences), the
comparison with published models, scaling and ablation sweeps, and the alignment comparison."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from report_fixtures import _json, make_run

from tinylm import config as C
from tinylm.report.artifacts import load_run
from tinylm.report.build import build_document
from tinylm.report.document import ffloat, fint
from tinylm.report.render_md import render_md


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
             "steps": 200, "tokens": 819200, "params": 1328256,
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
    assert re.search(r"\| muon \|.*\| n/a \|", md)
    assert "Each baseline run: 200 steps, 819K tokens, 1,328,256 parameters." in md  # no timing recorded: said, not invented
    assert "Not resolved at 3 seed(s): muon" in md
    assert (tmp_path / "figs" / "ablation_abl.png").is_file() and (tmp_path / "figs" / "isoflop_iso.png").is_file()
    other = md.split("Other sweeps")[-1]
    assert not re.search(r"^### [A-Z]\.\d+ iso", other, re.M)  # not repeated among the other sweeps
    from tinylm.report.sections_experiments import scaling_reading

    assert "faster than Chinchilla's 0.5 with the interval excluding it" in scaling_reading(_fit([0.55, 0.7]))


def test_an_equal_wallclock_ablation_shows_its_steps_and_shares_the_figure(tmp_path):
    from PIL import Image

    _json(tmp_path / "ablations" / "abl" / "sweep.json", _ablation_table())
    wc = _ablation_table()
    wc.update(sweep="abl-wc", spec={"match": "wallclock"})
    for r in wc["rows"]:
        r["steps"] = {"baseline": 200, "learned_pos": 216, "muon": 190}[r["variant"]]
    wc["rows"][3]["steps"] = 217  # one seed's plan differed: both counts are shown
    _json(tmp_path / "ablations_wallclock" / "abl" / "sweep.json", wc)
    run = make_run(tmp_path, "x", stages=False)
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[tmp_path / "ablations", tmp_path / "ablations_wallclock"]),
                   tmp_path)
    assert md.count("| variant | seeds | val bpb (mean ± sd) | paired change (95% CI) | verdict | time |") == 2
    assert re.search(r"\| learned_pos \|.*\| worse \| 1\.20 \| 216/217 \|", md)
    assert re.search(r"\| baseline \| 3 \|.*\| reference \| 1\.00 \| 200 \|", md)
    assert "Ablations of abl-wc" in md and "Equal wall-clock: each variant trained for the steps" in md
    # one figure, a panel per table: twice as wide as one panel
    figs = re.findall(r"\(([^)]*ablation_[^)]+\.png)\)", md)
    assert len(figs) == 1 and "one panel per ablation table below" in md
    assert Image.open(tmp_path / figs[0]).size[0] > 6 * 150


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


def _ttq(reached: bool):
    rec = lambda name, ratio, bpb, flags: {"name": name, "flags": flags + " --train.seed 1337 --train.threads 1",  # noqa: E731
                                           "tokens": 4_915_200, "train_elapsed_s": 5000 * ratio, "wall_ratio": ratio,
                                           "val_bpb": bpb, "reached": bpb <= 1.5737,
                                           "loadavg_during": [[2.0, 2.0, 2.0], [2.8, 2.5, 2.2]]}
    return {"benchmark": "time_to_quality", "threads_per_run": 1, "baseline_flags": "--preset 1m --train.optimizer adamw",
            "target": "a candidate reaches the baseline's final val bpb in at most half its wall-clock",
            "recipes": {"baseline": rec("baseline", 1.0, 1.5737, "--preset 1m --train.optimizer adamw"),
                        "muon_1200": rec("muon_1200", 0.315, 1.5701 if reached else 1.6674, "--train.optimizer muon"),
                        "muon_lr": rec("muon_lr", 0.6, 1.6, "--train.optimizer muon --train.muon_lr 0.04")}}


def test_time_to_quality_table_and_reading_follow_the_numbers(tmp_path):
    for reached in (False, True):
        d = tmp_path / str(reached)
        _json(d / "bench" / "time_to_quality.json", _ttq(reached))
        run = make_run(d, "x", stages=False)
        md = render_md(build_document([run], d / "figs", sweeps=[d / "bench"]), d)
        ttq = md[md.index("Time to quality: the earlier"):]
        body, appendix = ttq[:ttq.index("Time-to-quality recipes\n")], ttq[ttq.index("Time-to-quality recipes\n"):]
        assert re.search(r"\| muon_1200 \| 4.92M \| 1575 \| 0.315 \| (1.6674|1.5701) \| (no|yes) \|", body)
        assert body.index("| baseline |") < body.index("| muon_1200 |")  # the reference row first
        # the flags go to the appendix: those shared by every candidate once, then each recipe's own
        assert "--train.muon_lr" not in body and "every candidate" not in body
        assert "- every candidate: `--train.optimizer muon`" in appendix and "- muon_lr: `--train.muon_lr 0.04`" in appendix
        assert "- muon_1200: `(common flags)`" in appendix and "- baseline, the earlier default: `--preset 1m" in appendix
        assert "load average 2.0-2.8 during the runs" in ttq
        if reached:
            assert "muon_1200 reached the baseline's 1.5737 bits per byte in at most half" in ttq
        else:
            assert "No candidate reached the baseline's 1.5737" in ttq and "+0.0263 from it at 0.60 of the time" in ttq
    # two machines: one table with a machine column, each recipe against the baseline measured beside it
    d = tmp_path / "two"
    _json(d / "bench" / "time_to_quality.json", {**_ttq(False), "hardware": {"cpu": "EPYC", "cpu_isa": "avx2"}})
    _json(d / "bench" / "time_to_quality_b.json", {**_ttq(True), "hardware": {"cpu": "EPYC", "cpu_isa": "avx512_bf16"}})
    md = render_md(build_document([make_run(d, "x", stages=False)], d / "figs", sweeps=[d / "bench"]), d)
    assert md.count("| machine | recipe | tokens |") == 1 and len(re.findall(r"^#+ .*Time to quality$", md, re.M)) == 1
    assert "| EPYC avx2 | baseline |" in md and "| EPYC avx512_bf16 | baseline |" in md and "|  | muon_1200 |" in md
    assert "On EPYC avx2: No candidate reached" in md and "On EPYC avx512_bf16: muon_1200 reached" in md
    _json(tmp_path / "bad" / "time_to_quality.json", {"benchmark": "time_to_quality", "recipes": {"x": 3}})
    run = make_run(tmp_path / "bad", "y", stages=False)
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[tmp_path / "bad"]), tmp_path)
    assert "has no baseline and candidate rows" in md


def test_abstract_states_the_aligned_score_from_ifeval_files_without_alignment_json(tmp_path):
    """The default pipeline writes ifeval-dpo.json but no alignment.json: the abstract still gives the
    aligned model's score against SFT's, and says whether the intervals separate."""
    from report_fixtures import _ifeval

    for score, verdict in ((0.3869, "the intervals separate"), (0.27, "the intervals overlap")):
        d = tmp_path / str(score)
        run = make_run(d, "x", stages=False)
        _json(run / "ifeval-sft.json", _ifeval(0.2468, 0.0399, "sft"))
        _json(run / "ifeval-dpo.json", _ifeval(score, 0.0446, "dpo"))
        md = render_md(build_document([run], d / "figs", sweeps=[]), d)
        abstract = md.split("## Abstract")[1].split("## 1")[0]
        assert f"After DPO, greedy constraint satisfaction on the same held-out instructions is {score:.3f} ± 0.045 " \
               f"against 0.247 ± 0.040 after SFT ({verdict})." in abstract


def test_isoflop_reading_says_where_each_minimum_lies_and_claims_no_law_without_a_fit():
    from tinylm.report.sections_experiments import isoflop_reading

    rows = [{"budget": b, "params": n, "val_bpb": v} for b, n, v in
            ((1e12, 1e5, 2.0), (1e12, 4e5, 2.1), (1e12, 1e6, 2.3), (1e13, 1e5, 1.9), (1e13, 4e5, 1.8), (1e13, 1e6, 1.85))]
    text = isoflop_reading(rows, "val_bpb", fitted=False)
    assert "at 1T FLOPs the lowest val_bpb (2.0000) is at 100K parameters, the smallest shape trained" in text
    assert "at 10T FLOPs the lowest val_bpb (1.8000) is at 400K parameters, an interior shape" in text
    assert "no law is claimed: 1 of 2 budgets have their minimum at an edge of the grid" in text
    assert "no law is claimed" not in isoflop_reading(rows, "val_bpb", fitted=True)


def test_alignment_stage_is_a_digest_in_the_body_and_its_tables_in_the_appendix(tmp_path):
    """The body says in one sentence what a stage did (data, knobs, held-out check, time) from its
    summary.json; the full configuration and results tables go to the appendix."""
    from tinylm.report.sections_alignment import stage_digest

    run = make_run(tmp_path)
    _json(run / "dpo" / "summary.json", {
        "method": "dpo", "step": 150, "elapsed_s": 219.9, "heldout_score": 0.36111, "heldout_degenerate": 0.4583,
        "data": {"pairs_source": "on-policy", "prompts": 1200, "samples_per_prompt": 8, "ties_dropped": 137, "pairs": 1063},
        "hyperparameters": {"beta": 0.1, "nll_weight": 1.0, "lr": 0.0001, "steps": 150, "batch_pairs": 16,
                            "ref_logprobs": "precompute", "sampling.greedy": False},
        "wall_clock_s": 785.5, "load_average_1_5_15": [2.01, 2.02, 2.0]})
    _json(run / "dpo" / "config.json", {"stage": "dpo", "config": {"dpo": {"beta": 0.1}, "train": {"lr": 1e-4}}})
    loaded = load_run(run)
    text = stage_digest(loaded.stages["dpo"])
    assert text == ("DPO: 1,063 on-policy pairs from 1,200 prompts x 8 samples, 137 tied groups dropped; beta 0.1, "
                    "NLL weight 1, learning rate 0.0001, steps 150, pairs per step 16, reference log-probs precompute; "
                    "in-training held-out check: score 0.361, degenerate 45.8%; 13.1 min wall-clock (load 2.01).")
    md = render_md(build_document([run], tmp_path / "figs", sweeps=[]), tmp_path)
    body, appendix = md.split("## Appendix")
    assert text in body and "dpo configuration." not in body and "dpo results." not in body
    assert "dpo configuration." in appendix and "dpo results." in appendix
    (run / "dpo" / "summary.json").write_text("{not json")
    md = render_md(build_document([run], tmp_path / "figs2", sweeps=[]), tmp_path)
    assert "could not be built" not in md and "DPO (t)" in md  # the curves still stand in the body


def test_setup_table_names_the_optimizer_and_schedule_the_run_used(tmp_path):
    """A Muon/WSD run was once reported as "AdamW ... cosine": the rows follow the saved train config."""
    for optimizer, schedule in (("adamw", "cosine"), ("muon", "wsd")):
        d = tmp_path / optimizer
        run = make_run(d, "x", stages=False)
        cfg = json.loads((run / "config.json").read_text())
        cfg["config"]["train"].update(optimizer=optimizer, schedule=schedule, muon_lr=0.02, decay_frac=0.2, lr=0.003)
        _json(run / "config.json", cfg)
        md = render_md(build_document([run], d / "figs"), d)
        row = lambda label: next(line for line in md.splitlines() if line.startswith(f"| {label} |"))  # noqa: E731
        if optimizer == "muon":
            assert row("optimizer").startswith("| optimizer | Muon (momentum") and "AdamW" in row("optimizer")
            assert row("peak learning rate") == "| peak learning rate | 0.02 (Muon), 0.003 (AdamW) |"
            assert "warmup-stable-decay" in row("schedule") and "last 20.0% of steps" in row("schedule")
        else:
            assert row("optimizer").startswith("| optimizer | AdamW") and "Muon" not in row("optimizer")
            assert row("peak learning rate") == "| peak learning rate | 0.003 |" and "cosine" in row("schedule")


def test_contamination_is_one_sentence_in_the_body_and_a_table_in_the_appendix(tmp_path):
    from tinylm.report.sections_data import contamination_summary

    task = lambda dirty, checkable: {"examples": checkable, "checkable": checkable, "dirty_examples": dirty,  # noqa: E731
                                     "ngrams": 1000, "ngrams_in_train": dirty}
    ds = {"n": 13, "source": "tinystories", "tasks": {"held-out split": task(9, 10), "bpb-tinystories": task(1, 10),
                                                      "hellaswag": task(3, 100), "mmlu": {"error": "unreadable"}}}
    text = contamination_summary(ds)
    # the held-out split is the same books as bpb-tinystories, which the table also skips
    assert "of 2 sets checked, the dirtiest is bpb-tinystories with 10.0% of its checkable examples" in text
    assert contamination_summary({"tasks": {}}) == ""

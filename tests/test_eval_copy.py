"""The copy task (in-context copying): scoring against a string-level stub, the passages it reads,
and a data directory without its corpora."""

from __future__ import annotations

import math

import pytest

from tinylm.eval.tasks.base import TaskDataError
from test_eval import StubLM, run_task


class WordTok:
    def encode(self, text):
        return list(range(len(text.split())))


def test_copy_task_scores_the_repeat_against_an_unrelated_context(monkeypatch):
    from tinylm.eval.tasks import copying

    a, b, long = "Max ran to the park.", "Sue ate a red cake.", " ".join(["word"] * 200)
    monkeypatch.setattr(copying, "copy_passages", lambda n, sources=copying.SOURCES: [a, b, long][:n])
    lm = StubLM({(a + "\n\n", a): -1.0, (b + "\n\n", a): -4.0, (b + "\n\n", b): -2.0, (a + "\n\n", b): -4.0},
                greedy={a: True})
    lm.tok = WordTok()
    r = run_task("copy", lm)
    assert r["n"] == 2 and r["skipped_too_long"] == 1  # two copies of 200 words do not fit in 256 tokens
    assert r["metrics"]["copy_gain"]["value"] == pytest.approx(((1 - 1 / 4) + (1 - 2 / 4)) / 2)
    n_bytes = len(a) + len(b)
    assert r["metrics"]["bits_per_byte_repeat"]["value"] == pytest.approx(3.0 / math.log(2) / n_bytes)
    assert r["metrics"]["bits_per_byte_control"]["value"] == pytest.approx(8.0 / math.log(2) / n_bytes)
    assert r["metrics"]["acc"]["value"] == 0.5  # only the first repeat is the greedy continuation


def test_copy_passages_are_distinct_validation_openings_of_bounded_length(shared_data):
    from tinylm.eval.tasks.copying import MAX_WORDS, MIN_WORDS, copy_passages, lead_passage

    assert lead_passage("One. Two three.", min_words=5) is None
    assert lead_passage("A b c. D e f. G h i.", min_words=2, max_words=7) == "A b c. D e f."
    ps = copy_passages(20)
    assert len(ps) == 20 and len(set(ps)) == 20
    assert all(MIN_WORDS <= len(p.split()) <= MAX_WORDS for p in ps)


def test_copy_without_its_corpora_is_a_task_data_error(tmp_path, monkeypatch):
    from tinylm.eval.tasks.copying import copy_passages

    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    with pytest.raises(TaskDataError, match="tinystories"):  # the harness records it and runs the other tasks
        copy_passages(5)

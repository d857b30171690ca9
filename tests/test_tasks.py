import json
import random

import pytest

from tinylm.data.sources import DataError
from tinylm.tasks import get_task
from tinylm.tasks.base import in_heldout
from tinylm.tasks.conversations import Alpaca, JsonlConversations
from tinylm.tasks.instructions import (Instructions, Repeat, check_constraints, make_examples, make_repeat_examples,
                                       names_in, repair_response, sentences)
from tinylm.tasks.mixture import mixture_examples, parse_mixture

STORY = ("Once upon a time, there was a little dog named Max. Max loved to play with his red ball in the garden. "
         "One day, Max lost his ball under a big tree. He looked and looked, but he could not find it. "
         "Then his friend Sue came to help. Sue found the ball, and Max was very happy.")


def test_sentence_split_and_names():
    assert len(sentences(STORY)) == 6
    assert sentences('He said, "Stop!" Then he ran.') == ['He said, "Stop!"', "Then he ran."]
    assert sentences("Mr. Smith met J. R. Brown. They talked.") == ["Mr. Smith met J. R. Brown.", "They talked."]
    assert names_in(STORY) == ["Max", "Sue"]


def test_every_generated_reference_satisfies_its_own_constraints():
    exs = make_examples(STORY, "s0", random.Random(0))
    assert {e.meta["kind"] for e in exs} == {"keywords", "continue", "ends_with", "max_sentences", "title"}
    for e in exs:
        assert check_constraints(e.meta["constraints"], e.messages[-1]["content"]).score == 1.0, e.meta["kind"]


@pytest.mark.parametrize("constraint,good,bad", [
    ({"type": "include_words", "words": ["ball", "garden", "happy"]},
     "The ball rolled into the garden and she was happy.", "The cat slept."),
    ({"type": "ends_with", "text": "And they lived happily ever after."},
     "Max found a bone. And they lived happily ever after.", "And they lived happily ever after. Then Max slept."),
    ({"type": "max_sentences", "n": 2}, "Max ran fast. Max slept.", "Max ran. Max ate. Max slept."),
    ({"type": "max_sentences", "n": 2}, "Max ran to the park and he played there all day", "the sun\nthe moon\nthe sea"),
    ({"type": "max_sentences", "n": 3}, "Max ran to the park. He played.", "Yes."),
    ({"type": "min_sentences", "n": 2}, "Max ran. Max slept.", "Max ran"),
    ({"type": "mentions_any", "words": ["Max", "Sue"]}, "Sue smiled.", "Tom smiled."),
    ({"type": "no_copy", "text": "Max had a ball. He liked it."}, "He threw it far and his dog ran after it.",
     "Max had a ball. He liked it. Yes."),
    ({"type": "title"}, "Max and the Red Ball", "Once upon a time there was a dog who had a ball and a bone."),
    ({"type": "exact", "text": "Max said, \"Look!\" and ran."}, "max said, look! and  ran.", "Max said, \"Look!\""),
])
def test_constraint_checker_on_hand_written_good_and_bad_responses(constraint, good, bad):
    assert check_constraints([constraint], good).score == 1.0
    assert check_constraints([constraint], bad).score == 0.0


def test_partial_credit_and_per_constraint_detail():
    res = check_constraints([{"type": "include_words", "words": ["ball", "tree", "kite", "cake"]},
                             {"type": "max_sentences", "n": 1}], "The ball hit the tree. Then it fell.")
    assert res.score == pytest.approx((0.5 + 0.0) / 2)
    assert [d["score"] for d in res.details] == [0.5, 0.0]


def test_repair_makes_the_minimal_edit_that_passes_or_gives_up():
    ends = [{"type": "ends_with", "text": "They were  happy."}]
    story = "Tom had a red ball. He threw it high. It landed in a tree."
    assert repair_response(ends, story) == "Tom had a red ball. He threw it high. They were happy."
    assert repair_response(ends, "Tom had a ball. They were happy.") == "Tom had a ball. They were happy."  # passes as is
    assert repair_response(ends, "Just one sentence.") is None  # nothing of the model's story would be left
    most = [{"type": "max_sentences", "n": 2}, {"type": "mentions_any", "words": ["Tom"]}]
    assert repair_response(most, story) == "Tom had a red ball. He threw it high."
    assert repair_response(most, "A dog ran. It sat. It slept.") is None  # cut, it still never names Tom
    assert repair_response([{"type": "include_words", "words": ["moon"]}], story) is None  # no mechanical edit
    # a repaired answer always passes its checker
    for cons in (ends, most):
        fixed = repair_response(cons, story)
        assert check_constraints(cons, fixed).score == 1.0


def test_heldout_split_is_deterministic_by_key():
    keys = [f"k{i}" for i in range(2000)]
    a = [k for k in keys if in_heldout(k, 0, 5.0)]
    assert a == [k for k in keys if in_heldout(k, 0, 5.0)]
    assert 60 < len(a) < 140
    assert a != [k for k in keys if in_heldout(k, 1, 5.0)]


def test_instructions_split_by_story_never_leaks(shared_data):
    task = Instructions(("tinystories",), max_stories=400)
    train, test = task.examples("train"), task.examples("test")
    assert train and test
    assert not {e.meta["key"] for e in train} & {e.meta["key"] for e in test}
    assert all(task.check(e, e.messages[-1]["content"]).score == 1.0 for e in train + test)  # references pass
    assert {e.messages[-1]["content"] for e in test if e.meta["kind"] == "ends_with"}.isdisjoint(
        {e.messages[-1]["content"] for e in train if e.meta["kind"] == "ends_with"})


def test_repeat_drills_copy_and_keep_the_instruction_split(shared_data):
    exs = make_repeat_examples(STORY, "s0", random.Random(0))
    assert [e.meta["kind"] for e in exs] == ["repeat_sentence", "repeat_passage"]
    for e in exs:  # the answer is in the prompt, verbatim, and passes its own check
        assert e.messages[-1]["content"] in e.messages[0]["content"]
        assert check_constraints(e.meta["constraints"], e.messages[-1]["content"]).score == 1.0
    assert len(exs[1].messages[-1]["content"].split()) <= 45
    assert isinstance(get_task("repeat"), Repeat) and get_task("repeat").name == "repeat"
    drills, instr = Repeat(("tinystories",), max_stories=400), Instructions(("tinystories",), max_stories=400)
    train = {e.meta["key"] for e in drills.examples("train")}
    assert train and train <= {e.meta["key"] for e in instr.examples("train")}
    assert not train & {e.meta["key"] for e in instr.examples("test")}  # a held-out story is never drilled
    held = " ".join(e.messages[-1]["content"] for e in instr.examples("test"))
    assert not any(e.messages[-1]["content"] in held for e in drills.examples("train"))


def test_jsonl_conversations_strict_stops_with_line_number(tmp_path):
    p = tmp_path / "chat.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    p.write_text(good + "\n{not json\n" + json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n" + good + "\n")
    with pytest.raises(DataError, match=r"chat.jsonl:2: .*name the task jsonl-lenient:"):
        JsonlConversations(p).examples("train")
    lenient = JsonlConversations(p, skip_bad=True, heldout_percent=0)
    assert len(lenient.examples("train")) == 2
    assert lenient.stats["skipped"] == 2 and lenient.stats["skipped_lines"] == [2, 3]


def test_alpaca_from_local_file(tmp_path):
    rows = [{"instruction": "Say hi.", "input": "", "output": "Hi!"},
            {"instruction": "Add.", "input": "2+2", "output": "4"},
            {"instruction": "Empty.", "input": "", "output": "  "}]
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps(rows))
    task = Alpaca(str(p), heldout_percent=0)
    exs = task.examples("train")
    assert [e.messages for e in exs] == [
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
        [{"role": "user", "content": "Add.\n\n2+2"}, {"role": "assistant", "content": "4"}]]
    assert task.stats == {"records": 3, "skipped_empty_output": 1}


def test_mixture_is_deterministic_and_respects_weights(tmp_path):
    def jsonl(name, n):
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{name} {i}"},
                                                      {"role": "assistant", "content": "ok"}]}) + "\n" for i in range(n)))
        return f"jsonl:{p}"
    a, b = jsonl("a", 50), jsonl("b", 200)
    spec = f"{a}:1,{b}:3"
    assert parse_mixture(spec) == [(a, 1.0), (b, 3.0)]
    m1 = mixture_examples(spec, "train", seed=3, size=400)
    m2 = mixture_examples(spec, "train", seed=3, size=400)
    assert [e.messages for e in m1] == [e.messages for e in m2]
    n_a = sum(e.messages[0]["content"].startswith("a ") for e in m1)
    assert n_a == 100 and len(m1) == 400  # a's 49-ish train examples repeated to fill its quarter
    assert [e.messages for e in mixture_examples(spec, "train", seed=4, size=400)] != [e.messages for e in m1]


def test_unknown_task_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: alpaca, instructions"):
        get_task("nope")

"""The evaluation harness: the scoring engine against hand-computed log-probabilities, every
task's protocol on tiny hand-built data with a stub model whose log-likelihoods are known, bad
input, the results files and the comparison table."""

from __future__ import annotations

import bz2
import json
import math
import zipfile

import pytest
import torch
import torch.nn.functional as F

from tinylm.eval import harness, tasks as registry
from tinylm.eval.compare import compare_markdown
from tinylm.eval.lm import LanguageModel
from tinylm.eval.tasks.base import TaskDataError
from tinylm.eval.tasks.perplexity import wikitext_detokenizer


# ------------------------------------------------------------------------------ stub models
class BigramStub:
    """logits at position t depend only on the token at t: W[x_t]. Log-probabilities are known."""

    def __init__(self, vocab: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(vocab, vocab, generator=g) * 3

    def __call__(self, x):
        return self.W[x]

    def logp(self, prev: int, nxt: int) -> float:
        return F.log_softmax(self.W[prev], -1)[nxt].item()


def make_lm(tok, forward, max_length=64, **kw) -> LanguageModel:
    return LanguageModel(forward=forward, tok=tok, max_length=max_length, info={"name": "stub"}, **kw)


class StubLM:
    """String-level stub: log-likelihood of a (context, continuation) pair comes from a table
    (default: minus the continuation's length); records every request."""

    max_length = 256

    def __init__(self, table=None, greedy=None):
        self.table, self.greedy, self.pairs = table or {}, greedy or {}, []

    def loglikelihood(self, pairs, desc=""):
        self.pairs += pairs
        return [(self.table.get((c, k), self.table.get(k, -float(len(k)))), self.greedy.get(k, False)) for c, k in pairs]

    def loglikelihood_rolling(self, texts, context_len=1, desc=""):
        self.pairs += [("", t) for t in texts]
        return [(self.table.get(t, -1.0), 10) for t in texts]


@pytest.fixture
def data(tmp_path, monkeypatch):
    """An empty data directory the tasks read from (TINYLM_DATA_DIR)."""
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    return tmp_path


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


# ------------------------------------------------------------------------------ scoring engine
def test_encode_pair_moves_trailing_space_to_continuation(tokenizer):
    lm = make_lm(tokenizer, BigramStub(tokenizer.vocab_size))
    ctx, cont = lm.encode_pair("Tom found a ", "ball")
    assert ctx == tokenizer.encode("Tom found a")  # lm-eval: no start token before a non-empty context
    assert ctx + cont == tokenizer.encode("Tom found a ball")  # " ball" is one piece of the continuation
    assert tokenizer.decode(cont) == " ball"


def test_start_token_is_the_context_of_an_empty_context_only(tokenizer):
    lm = make_lm(tokenizer, BigramStub(tokenizer.vocab_size))
    assert lm.encode_pair("", " The cat sleeps.") == ([tokenizer.eot_id], tokenizer.encode(" The cat sleeps."))
    assert lm.encode_pair("The", " cat")[0] == tokenizer.encode("The")


def test_loglikelihood_matches_hand_computed_bigram(tokenizer):
    stub = BigramStub(tokenizer.vocab_size)
    lm = make_lm(tokenizer, stub)
    ctx, cont = "Lily saw a cat.", " The cat was happy."
    (ll, greedy), = lm.loglikelihood([(ctx, cont)])
    seq = tokenizer.encode(ctx + cont)
    n_ctx = len(tokenizer.encode(ctx))
    expected = sum(stub.logp(seq[i - 1], seq[i]) for i in range(n_ctx, len(seq)))
    assert ll == pytest.approx(expected, abs=1e-4)
    want_greedy = all(stub.W[seq[i - 1]].argmax().item() == seq[i] for i in range(n_ctx, len(seq)))
    assert greedy == want_greedy


def test_greedy_flag_true_when_continuation_is_argmax(tokenizer):
    V = tokenizer.vocab_size
    seq = tokenizer.encode("Max smiled")
    W = torch.zeros(V, V)
    for a, b in zip(seq, seq[1:]):
        W[a, b] = 10.0  # the continuation is the argmax path
    lm = make_lm(tokenizer, lambda x: W[x])
    (ll, greedy), = lm.loglikelihood([("Max", " smiled")])
    assert greedy
    assert ll < 0


def test_batching_and_dedup_do_not_change_scores(tokenizer):
    stub = BigramStub(tokenizer.vocab_size, seed=1)
    pairs = [("Once upon a time", " Tom"), ("Once upon a time", " Tom"), ("A", " very long day in the park with Sue"),
             ("", "The boat was red."), ("Ben said", " hello")]
    a = make_lm(tokenizer, stub, batch_tokens=8).loglikelihood(pairs)
    b = make_lm(tokenizer, stub, batch_tokens=100_000).loglikelihood(pairs)
    assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-5)
    assert a[0] == a[1]


def test_choices_after_one_prompt_share_one_forward_row(tokenizer):
    stub = BigramStub(tokenizer.vocab_size, seed=3)
    seen = []
    lm = make_lm(tokenizer, lambda x: (seen.append(x.shape[0]), stub(x))[1])
    prompt = "Which is a pet?\nA. cat\nB. tree\nC. boat\nD. cake\nAnswer:"
    got = lm.loglikelihood([(prompt, f" {c}") for c in "ABCD"])
    inputs = {tuple((lambda c, k: (c + k)[:-1])(*lm.encode_pair(prompt, f" {c}"))) for c in "ABCD"}
    assert seen == [len(inputs)] and len(inputs) < 4  # letters that are one token share the prompt's row
    separate = [make_lm(tokenizer, stub).loglikelihood([(prompt, f" {c}")])[0] for c in "ABCD"]
    assert got == separate


def test_long_context_is_truncated_from_the_left_and_counted(tokenizer):
    stub = BigramStub(tokenizer.vocab_size, seed=2)
    lm = make_lm(tokenizer, stub, max_length=8)
    ctx = "Once upon a time, Lily found a ball in the park. She was very happy."
    (ll, _), = lm.loglikelihood([(ctx, " Tom smiled.")])
    assert lm.counters.truncated == 1 and lm.counters.requests == 1
    whole = tokenizer.encode(ctx + " Tom smiled.")[-9:]  # last seq_len + 1 tokens
    k = len(tokenizer.encode(ctx + " Tom smiled.")) - len(tokenizer.encode(ctx))
    expected = sum(stub.logp(whole[i - 1], whole[i]) for i in range(9 - k, 9))
    assert ll == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("context_len", [1, 4, 8])
def test_rolling_loglikelihood_scores_every_token_once(tokenizer, context_len):
    V = tokenizer.vocab_size
    lm = make_lm(tokenizer, lambda x: torch.zeros(*x.shape, V), max_length=8)  # uniform: log p = -log V
    text = "Tom and Sue played with the kite all day. " * 3
    (ll, n), = lm.loglikelihood_rolling([text], context_len=context_len)
    assert n == len(tokenizer.encode(text))
    assert ll == pytest.approx(-n * math.log(V), rel=1e-5)


def test_hidden_state_path_equals_full_logits(tokenizer, tiny_model_cfg):
    from tinylm.model import GPT

    torch.manual_seed(0)
    model = GPT(tiny_model_cfg).eval()
    pairs = [("Lily found a", " ball"), ("", "The cat sat."), ("Tom", " was happy in the garden")]
    fast = make_lm(tokenizer, model, max_length=32, model=model).loglikelihood(pairs)
    full = make_lm(tokenizer, model, max_length=32).loglikelihood(pairs)
    assert [x for x, _ in fast] == pytest.approx([x for x, _ in full], abs=1e-5)


# ------------------------------------------------------------------------------ task protocols
def run_task(name, lm, limit=0):
    t = registry.get(name)
    t.name = name
    return t.run(lm, limit)


def test_arc_prompt_and_acc_vs_acc_norm(data):
    write_jsonl(data / "arc" / "arc_easy.jsonl", [
        {"query": "Question: What is red?", "choices": ["a fire truck", "sky"], "gold": 0},
        {"query": "Question: What swims?", "choices": ["fish", "a rock"], "gold": 1},
    ])
    # lls: doc1 " a fire truck" -6 vs " sky" -4 -> acc picks sky (wrong); per char -6/12 > -4/3 -> norm right
    lm = StubLM({" a fire truck": -6.0, " sky": -4.0, " fish": -1.0, " a rock": -5.0})
    r = run_task("arc-easy", lm)
    assert lm.pairs[0] == ("Question: What is red?\nAnswer:", " a fire truck")
    assert r["metrics"]["acc"]["value"] == 0.0  # doc1 wrong (sky), doc2 wrong (fish)
    assert r["metrics"]["acc_norm"]["value"] == 0.5  # doc1: -0.5 vs -1.33 -> right; doc2: -0.25 vs -0.83 -> fish
    assert r["chance"] == 0.5 and r["n"] == 2


def test_hellaswag_file_layout_preprocessing_and_capitalisation(data):
    items = ["Roof shingle removal: A man is sitting on a roof. he", "1", "is using wrap.", "starts pulling [title] up roofing.",
             "is holding a cube.", "is eating.",
             "Baking: The cook mixes flour [step] and", "0", "pours water.", "sits.", "sleeps.", "runs  away."]
    (data / "hellaswag").mkdir()
    with bz2.open(data / "hellaswag" / "hellaswag_val_full.txt.bz2", "wt") as f:
        f.write("\n".join(items) + "\n")
    lm = StubLM({" starts pulling. up roofing.": -1.0, " pours water.": -2.0, " sits.": -1.0})
    r = run_task("hellaswag", lm)
    assert lm.pairs[0] == ("Roof shingle removal: A man is sitting on a roof. He", " is using wrap.")
    assert lm.pairs[1][1] == " starts pulling. up roofing."  # " [title]" -> ". "
    assert lm.pairs[4][0] == "Baking: The cook mixes flour and"  # [step] removed, double space collapsed
    assert lm.pairs[7][1] == " runs away."
    assert r["metrics"]["acc"]["value"] == 0.5  # item 1 right (ending 1), item 2 wrong (sits)
    assert r["chance"] == 0.25


def test_piqa_appends_answer_and_counts_malformed_rows(data):
    write_jsonl(data / "piqa" / "piqa.jsonl", [
        {"query": "Question: How to open a jar?\n", "choices": ["twist the lid", "hit it"], "gold": 0},
        {"query": "Question: no newline", "choices": ["a", "b"], "gold": 0},
        "{not json",
        {"query": "Question: x?\n", "choices": ["a", "b"], "gold": 5},
    ])
    lm = StubLM({" twist the lid": -1.0, " hit it": -3.0})
    r = run_task("piqa", lm)
    assert lm.pairs[0][0] == "Question: How to open a jar?\nAnswer:"
    assert r["n"] == 1 and r["malformed"] == 3 and r["metrics"]["acc"]["value"] == 1.0


def test_copa_and_openbookqa_use_query_as_context(data):
    write_jsonl(data / "copa" / "copa.jsonl", [{"query": "The man fell, because", "choices": ["he slipped.", "he ate."], "gold": 0}])
    write_jsonl(data / "openbook_qa" / "openbook_qa.jsonl", [{"query": "Predators eat", "choices": ["grass", "bunnies"], "gold": 1}])
    lm = StubLM({" he slipped.": -1.0, " he ate.": -2.0, " grass": -2.0, " bunnies": -1.0})
    assert run_task("copa", lm)["metrics"]["acc"]["value"] == 1.0
    assert ("The man fell, because", " he slipped.") in lm.pairs
    r = run_task("openbookqa", lm)
    assert ("Predators eat", " bunnies") in lm.pairs and r["metrics"]["acc"]["value"] == 1.0
    assert "acc_norm" not in run_task("copa", StubLM())["metrics"]


def test_winogrande_partial_scoring(data):
    write_jsonl(data / "winogrande" / "winogrande.jsonl", [
        {"context_options": ["Sarah helped Maria so Sarah", "Sarah helped Maria so Maria"],
         "continuation": "was thankful.", "gold": 1}])
    lm = StubLM({("Sarah helped Maria so Sarah", " was thankful."): -5.0, ("Sarah helped Maria so Maria", " was thankful."): -2.0})
    r = run_task("winogrande", lm)
    assert lm.pairs == [("Sarah helped Maria so Sarah", " was thankful."), ("Sarah helped Maria so Maria", " was thankful.")]
    assert r["metrics"]["acc"]["value"] == 1.0


def test_lambada_last_word_accuracy_and_perplexity(data):
    write_jsonl(data / "lambada" / "lambada_test.jsonl", [{"text": "She picked up the red ball"}, {"text": "He ran home"}])
    lm = StubLM({" ball": -1.0, " home": -3.0}, greedy={" ball": True})
    r = run_task("lambada", lm)
    assert lm.pairs == [("She picked up the red", " ball"), ("He ran", " home")]
    assert r["metrics"]["acc"]["value"] == 0.5
    assert r["metrics"]["perplexity"]["value"] == pytest.approx(math.exp(2.0))


def test_blimp_prefers_grammatical_and_breaks_down_by_phenomenon(data):
    (data / "blimp").mkdir()
    rows_a = [{"sentence_good": "The cat sleeps.", "sentence_bad": "The cat sleep.", "linguistics_term": "agreement", "UID": "a"},
              {"sentence_good": "Dogs bark.", "sentence_bad": "Dogs barks.", "linguistics_term": "agreement", "UID": "a"}]
    rows_b = [{"sentence_good": "Who left?", "sentence_bad": "Who left who?", "linguistics_term": "island", "UID": "b"}]
    with zipfile.ZipFile(data / "blimp" / "BLiMP.zip", "w") as z:
        z.writestr("data/a.jsonl", "\n".join(map(json.dumps, rows_a)))
        z.writestr("data/b.jsonl", "\n".join(map(json.dumps, rows_b)) + "\n{broken")
        z.writestr("__MACOSX/data/._a.jsonl", b"\x00\x05\xb0 resource fork")
    lm = StubLM({" The cat sleeps.": -3.0, " The cat sleep.": -4.0, " Dogs bark.": -5.0, " Dogs barks.": -2.0,
                 " Who left?": -2.0, " Who left who?": -2.0})  # a tie counts as right
    r = run_task("blimp", lm)
    assert lm.pairs[0] == ("", " The cat sleeps.")  # lm-eval's target delimiter " " before each sentence
    assert r["metrics"]["acc"]["value"] == pytest.approx(2 / 3)
    assert r["breakdown"]["phenomenon"] == {"agreement": {"acc": 0.5, "n": 2}, "island": {"acc": 1.0, "n": 1}}
    assert r["malformed"] == 1


def _mmlu_files(data):
    header = "question,choice0,choice1,choice2,choice3,answer\n"
    for split, rows in (("test", ["What is 1+1?,1,2,3,4,1\n", "What is 2+2?,4,3,2,1,0\n"]),
                        ("dev", ["Shot one?,a,b,c,d,2\n", "Shot two?,e,f,g,h,3\n"])):
        for subject, extra in (("abstract_algebra", rows), ("philosophy", ['"Is, it?",yes,no,maybe,never,0\n'])):
            d = data / "mmlu" / split
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{subject}_{split}.csv").write_text(header + "".join(extra))


@pytest.fixture
def mmlu_two_subjects(data, monkeypatch):
    from tinylm.eval.tasks import mmlu

    _mmlu_files(data)
    monkeypatch.setattr(mmlu, "SUBJECTS", ["abstract_algebra", "philosophy"])
    return data


def test_mmlu_letter_prompt_matches_lm_eval(mmlu_two_subjects):
    lm = StubLM({" A": -1.0, " B": -0.5, " C": -2.0, " D": -3.0})  # always predicts B
    r = run_task("mmlu", lm)
    assert lm.pairs[0] == ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                           "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", " A")
    assert [k for _, k in lm.pairs[:4]] == [" A", " B", " C", " D"]
    # answers: 1 (B, right), 0 (A, wrong), philosophy 0 (wrong) -> micro 1/3, macro (0.5 + 0) / 2
    assert r["metrics"]["acc"]["value"] == pytest.approx(1 / 3)
    assert r["metrics"]["acc_subject_macro"]["value"] == pytest.approx(0.25)
    assert r["breakdown"]["category"] == {"stem": {"acc": 0.5, "n": 2}, "humanities": {"acc": 0.0, "n": 1}}
    assert "acc_norm" not in r["metrics"]


def test_mmlu_5shot_uses_dev_examples_in_order(mmlu_two_subjects):
    lm = StubLM()
    run_task("mmlu-5shot", lm)
    ctx = lm.pairs[0][0]
    assert ctx == ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                   "Shot one?\nA. a\nB. b\nC. c\nD. d\nAnswer: C\n\n"
                   "Shot two?\nA. e\nB. f\nC. g\nD. h\nAnswer: D\n\n"
                   "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:")
    assert lm.pairs[8][0].endswith('Is, it?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:')  # quoted CSV field


def test_mmlu_cloze_scores_answer_texts(mmlu_two_subjects):
    lm = StubLM({" 2": -1.0, " 4": -1.5, " yes": -1.0})
    r = run_task("mmlu-cloze", lm)
    assert lm.pairs[0] == ("The following are questions (with answers) about abstract algebra.\n\n"
                           "Question: What is 1+1?\nAnswer:", " 1")
    # Q1 (answer "2"): " 2" -1.0 beats -2.0/-1.5 -> right; Q2 (answer "4"): " 2" -1.0 beats " 4" -1.5 -> wrong;
    # philosophy (answer "yes"): -1.0 vs " no" -3, " maybe" -6, " never" -6 -> right
    assert r["metrics"]["acc"]["value"] == pytest.approx(2 / 3)
    # per character: Q2 " 2" -1/1 still beats " 4" -1.5/1; philosophy "yes" -1/3 vs "no" -3/2 -> right
    assert r["metrics"]["acc_norm"]["value"] == pytest.approx(2 / 3)


def test_mmlu_limit_is_per_subject(mmlu_two_subjects):
    assert run_task("mmlu", StubLM(), limit=1)["n"] == 2


def test_wikitext_pages_detokenizer_and_counts(data):
    raw = " \n = Alpha = \n \n Alpha is a word @-@ thing , really . \n \n = = History = = \n Old . \n = Beta = \n Beta ( b ) . \n"
    p = data / "wikitext" / "wikitext-2-raw-reconstructed"
    p.mkdir(parents=True)
    (p / "wiki.test.raw").write_text(raw)
    lm = StubLM()
    r = run_task("wikitext", lm)
    pages = [t for _, t in lm.pairs]
    assert len(pages) == 2 and r["n"] == 2
    assert "Alpha is a word-thing, really." in pages[0] and "== History ==" in pages[0]
    assert "Beta (b)." in pages[1]
    originals = [" = Alpha = \n \n Alpha is a word @-@ thing , really . \n \n = = History = = \n Old . ",
                 " = Beta = \n Beta ( b ) . \n"]
    n_bytes = sum(len(o.encode()) for o in originals)
    assert r["bytes"] == n_bytes
    assert r["metrics"]["bits_per_byte"]["value"] == pytest.approx(2 / math.log(2) / n_bytes)  # stub ll -1 per page
    assert wikitext_detokenizer("1 @,@ 000 people 's") == "1,000 people's"


# ------------------------------------------------------------------------------ bad input
def test_unknown_task_lists_available():
    with pytest.raises(ValueError, match="available: .*blimp.*hellaswag"):
        registry.expand("blimp,nope")


def test_missing_data_file_says_where_it_was_expected(data):
    """With or without the `hf` extra: the local path it looked for is named (and, when `datasets`
    is installed and the Hub cannot be reached, the Hub failure too)."""
    import importlib.util

    with pytest.raises(TaskDataError, match=r"copa/copa\.jsonl") as e:
        run_task("copa", StubLM())
    if importlib.util.find_spec("datasets") is not None:
        assert "from the Hub failed" in str(e.value)


def test_harness_records_missing_data_and_continues(data):
    write_jsonl(data / "copa" / "copa.jsonl", [{"query": "It rained, therefore", "choices": ["we got wet.", "we flew."], "gold": 0}])
    lm = StubLM()
    lm.counters = type("C", (), {"requests": 0, "truncated": 0})()
    found = harness.evaluate(lm, ["copa", "piqa"], log=lambda s: None)
    assert list(found["tasks"]) == ["copa"] and "piqa/piqa.jsonl" in found["errors"]["piqa"]


# ------------------------------------------------------------------------------ results files
def _doc(name, acc, n=100, ci=0.05):
    return {"schema": "tinylm.eval/1", "model": {"spec": f"runs/{name}", "name": name, "kind": "tinylm", "params": 10, "seq_len": 32},
            "date": "2026-11-26", "code_version": "x", "seconds": 1.0, "limit": None, "errors": {},
            "tasks": {"blimp": {"metrics": {"acc": {"value": acc, "stderr": ci / 1.96, "ci95": [acc - ci, acc + ci]}},
                                "primary": "acc", "higher_is_better": True, "chance": 0.5, "n": n, "num_fewshot": 0,
                                "protocol": "p", "seconds": 1, "truncated": 0, "malformed": 0},
                      "wikitext": {"metrics": {"bits_per_byte": {"value": 2.0 + acc, "stderr": None, "ci95": None}},
                                   "primary": "bits_per_byte", "higher_is_better": False, "chance": None, "n": 3,
                                   "protocol": "q", "seconds": 1}}}


def test_compare_table_shows_chance_cis_and_separated_best():
    table = compare_markdown([_doc("base", 0.60), _doc("sft", 0.75)])
    assert "| blimp | acc | 0.500 | 0.600 ± 0.050 | **0.750 ± 0.050** |" in table
    assert "| wikitext | bits_per_byte (lower is better) |  | **2.600** | 2.750 |" in table
    overlapping = compare_markdown([_doc("a", 0.60), _doc("b", 0.65)])
    assert "**" not in overlapping.split("\n")[2]  # intervals overlap: no winner


def test_results_written_and_merged_on_rerun(tmp_path):
    d = _doc("m", 0.6)
    harness.write(json.loads(json.dumps(d)), tmp_path)
    again = _doc("m", 0.7)
    again["tasks"] = {"blimp": again["tasks"]["blimp"]}
    harness.write(again, tmp_path)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["tasks"]["blimp"]["metrics"]["acc"]["value"] == 0.7 and "wikitext" in saved["tasks"]
    md = (tmp_path / "eval.md").read_text()
    assert "| blimp | **acc** | 0.700 ± 0.050 | 0.500 | 100 |" in md


def test_compare_rejects_files_that_are_not_results(tmp_path):
    from tinylm.eval.compare import load_results

    (tmp_path / "eval.json").write_text('{"foo": 1}')
    with pytest.raises(ValueError, match="not a tinylm eval results file"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="no eval.json"):
        load_results(tmp_path / "missing")


# ------------------------------------------------------------------------------ real models
def test_llama2c_bin_with_either_tokenizer_reproduces_reference_greedy(shared_data):
    from tinylm.eval.lm import load

    ck = shared_data / "checkpoints"
    expected = (ck / "stories260K.greedy200.txt").read_text()
    for tok in ("tok512.bin", "tok512.model"):
        lm = load(str(ck / "stories260K.bin"), str(ck / tok))
        eot = lm.tok.eot_id
        out = lm.generate([eot], 200, temperature=0, stop_ids=(eot,))
        assert lm.tok.decode([t for t in out if t != eot]) == expected, tok
    assert lm.info["kind"] == "llama2c" and lm.max_length == 512


def test_eval_cli_end_to_end_on_a_tiny_checkpoint(tokenizer, tiny_model_cfg, tmp_path, data, capsys):
    from tinylm.cli import main
    from tinylm.config import to_dict
    from tinylm.model import GPT
    from tinylm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = GPT(tiny_model_cfg)
    meta = {"stage": "pretrain", "config": {"model": to_dict(tiny_model_cfg)}, "tokenizer_sha256": tokenizer.sha256}
    save_checkpoint(tmp_path / "run", 7, model, None, meta, tokenizer_path=tokenizer.path)
    write_jsonl(data / "copa" / "copa.jsonl", [{"query": "It rained, therefore", "choices": ["we got wet.", "we flew."], "gold": 0}] * 3)
    assert main(["eval", "--model", str(tmp_path / "run"), "--tasks", "copa,samples", "--limit", "2"]) == 0
    doc = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert doc["schema"] == "tinylm.eval/1" and doc["model"]["step"] == 7 and doc["limit"] == 2
    assert doc["tasks"]["copa"]["n"] == 2 and doc["tasks"]["copa"]["chance"] == 0.5
    assert len(doc["tasks"]["samples"]["samples"]) == 2
    assert "## 1. story" in (tmp_path / "run" / "eval" / "samples.md").read_text()
    assert main(["compare", str(tmp_path / "run" / "eval")]) == 0
    assert "| copa | acc | 0.500 |" in capsys.readouterr().out
    assert main(["eval", "--model", str(tmp_path / "run"), "--tasks", "nope"]) == 1


def test_hf_directories_load_llama_into_tinylm_and_others_through_transformers(tokenizer, tiny_model_cfg, tmp_path):
    transformers = pytest.importorskip("transformers")
    from tinylm.eval.lm import load
    from tinylm.interop.hf import export_hf
    from tinylm.model import GPT

    torch.manual_seed(0)
    model = GPT(tiny_model_cfg).eval()
    export_hf(model, tokenizer, {"config": {"model": {}}}, tmp_path / "llama")
    pairs = [("Lily found a", " ball"), ("", "The cat sat.")]
    direct = make_lm(tokenizer, model, max_length=32).loglikelihood(pairs)
    via_hf = load(str(tmp_path / "llama"))
    assert via_hf.info["kind"] == "hf" and via_hf.model is not None  # Llama: run by tinylm's GPT
    assert [x for x, _ in via_hf.loglikelihood(pairs)] == pytest.approx([x for x, _ in direct], abs=1e-4)

    # a non-Llama architecture runs in transformers; its scores equal the HF model's own log-softmax
    cfg = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    gpt2 = transformers.GPT2LMHeadModel(cfg).eval()
    gpt2.save_pretrained(tmp_path / "gpt2")
    tokenizer.hf.save(str(tmp_path / "gpt2" / "tokenizer.json"))
    (tmp_path / "gpt2" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    lm = load(str(tmp_path / "gpt2"))
    assert lm.model is None and lm.max_length == 64
    (ll, _), = lm.loglikelihood([("Lily found a", " ball")])
    ctx, cont = lm.encode_pair("Lily found a", " ball")
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        lp = F.log_softmax(gpt2(ids).logits[0, :-1].float(), -1)
    expected = sum(lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
    assert ll == pytest.approx(expected, abs=1e-4)


def test_tasks_run_with_different_limits_share_a_results_file(tmp_path):
    harness.write(_doc("m", 0.6), tmp_path)
    limited = _doc("m", 0.7)
    limited["tasks"] = {"blimp": {**limited["tasks"]["blimp"], "limit": 5}}
    limited["limit"] = 5
    harness.write(limited, tmp_path)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["limit"] == "per task" and saved["tasks"]["blimp"]["limit"] == 5 and "wikitext" in saved["tasks"]
    table = compare_markdown([saved])
    assert "0.700 ± 0.050 (n≤5†)" in table and "| 2.600 |" in table


"""lm-evaluation-harness itself, `--model hf` with default settings, on a tinylm model exported to
Hugging Face, gives the numbers `tinylm eval` gives: a rolling log-likelihood task (WikiText), a
multiple-choice task (ARC-Easy) and BLiMP, from local files written here, through the harness's
own task definitions (tinylm/eval/lm_eval_parity.py). Skips without lm-eval (`pip install
'tinylm[test]'`); no network."""

import json
import math
import zipfile

import pytest
import torch

from tinylm.config import ModelConfig
from tinylm.interop.hf import export_hf
from tinylm.model import GPT

pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")

WIKI = """ = Lily and the Kite = \n \n Once upon a time , Lily found a red kite in the park . She was very happy @-@ \
really happy ! \n Tom said , " Look , Lily ! A kite ! " They played all day . \n \n = = The wind = = \n \n The wind \
was strong . The kite flew over the tree and the river . \n \n = Max = \n \n Max had a boat . He sailed it on the river \
with Sue , and the boat was fast . \n"""

ARC = [("Which one is a pet?", ["a cat", "a tree", "a river", "a cake"], 0),
       ("What did Lily find in the park?", ["a boat", "a red kite"], 1),
       ("Where did Max sail?", ["in the garden", "on the river", "in the house"], 1),
       ("Who had a boat?", ["Max", "Lily", "Tom", "Sue"], 0)]

BLIMP = {"agreement": [("The cat sleeps.", "The cat sleep."), ("Dogs bark.", "Dogs barks."),
                       ("Lily was happy.", "Lily were happy.")],
         "islands": [("Who did Tom see?", "Who did Tom see Sue?"), ("What flew?", "What flew it?"),
                     ("Max sailed.", "Max sailed sailed.")]}


@pytest.fixture
def local_data(tmp_path, monkeypatch):
    d = tmp_path / "data"
    wiki = d / "wikitext" / "wikitext-2-raw-reconstructed" / "wiki.test.raw"
    wiki.parent.mkdir(parents=True)
    wiki.write_text(WIKI)
    (d / "arc").mkdir()
    (d / "arc" / "arc_easy.jsonl").write_text("".join(json.dumps({"query": f"Question: {q}", "choices": c, "gold": g}) + "\n"
                                                      for q, c, g in ARC))
    (d / "blimp").mkdir()
    with zipfile.ZipFile(d / "blimp" / "BLiMP.zip", "w") as z:
        for uid, pairs in BLIMP.items():
            z.writestr(f"data/{uid}.jsonl", "".join(json.dumps(
                {"sentence_good": g, "sentence_bad": b, "UID": uid, "linguistics_term": uid}) + "\n" for g, b in pairs))
    monkeypatch.setenv("TINYLM_DATA_DIR", str(d))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return d


@pytest.mark.slow
def test_lm_eval_hf_on_the_export_gives_tinylm_eval_numbers(tokenizer, local_data, tmp_path):
    from tinylm.eval.lm_eval_parity import side_by_side

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=48, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    with torch.no_grad():  # a random model whose predictions are far from uniform, so differences would show
        model.wte.weight.mul_(20)
    export_hf(model, tokenizer, {}, tmp_path / "hf")
    *rows, summary = side_by_side(tmp_path / "hf", ["wikitext", "arc-easy", "blimp"], 0, tmp_path / "harness")
    # every (context, continuation) the harness scored gets the same log-likelihood from tinylm
    assert summary["requests"] == sum(len(c) for _, c, _ in ARC) + 2 * sum(len(p) for p in BLIMP.values())
    assert summary["max_abs_loglikelihood_diff"] < 1e-4
    seen = {(r["task"], r["metric"]) for r in rows}
    assert {("wikitext", "bits_per_byte"), ("wikitext", "word_perplexity"), ("wikitext", "byte_perplexity"),
            ("arc-easy", "acc"), ("arc-easy", "acc_norm"), ("blimp", "acc"), ("blimp", "acc[agreement]"),
            ("blimp", "acc[islands]")} <= seen
    for r in rows:
        assert math.isclose(r["tinylm"], r["lm_eval"], rel_tol=1e-5, abs_tol=1e-9), r

import pytest
import torch

from tinylm.config import ModelConfig
from tinylm.model import GPT
from tinylm.sample import generate, generate_batch, sample_next


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=61, seq_len=48, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)).eval()


def test_kv_cache_greedy_equals_full_recomputation(model):
    prompt = [3, 17, 5, 9]
    cached = list(generate(model, prompt, 40, temperature=0))
    full = list(generate(model, prompt, 40, temperature=0, use_cache=False))
    assert cached == full and len(cached) == 40


def test_kv_cache_sampling_equals_full_recomputation_with_same_seed(model):
    a = list(generate(model, [1, 2], 30, temperature=1.0, top_k=20, top_p=0.9, seed=7))
    b = list(generate(model, [1, 2], 30, temperature=1.0, top_k=20, top_p=0.9, seed=7, use_cache=False))
    c = list(generate(model, [1, 2], 30, temperature=1.0, top_k=20, top_p=0.9, seed=8))
    assert a == b and a != c


def test_generation_stops_at_context_length_and_stop_token(model):
    out = list(generate(model, [1] * 40, 100, temperature=0))
    assert len(out) == 48 - 40
    first = list(generate(model, [1, 2, 3], 5, temperature=0))[0]
    assert list(generate(model, [1, 2, 3], 5, temperature=0, stop_ids=(first,))) == [first]
    with pytest.raises(ValueError, match="no room"):
        list(generate(model, [1] * 48, 5))


def test_top_k_one_is_greedy_and_top_p_keeps_the_nucleus():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    g = torch.Generator().manual_seed(0)
    assert all(int(sample_next(logits, 1.0, top_k=1, generator=g)) == 1 for _ in range(20))
    # probabilities ~ [0.02, 0.50, 0.07, 0.41]: top_p=0.8 keeps tokens 1 and 3 only
    seen = {int(sample_next(logits, 1.0, top_p=0.8, generator=g)) for _ in range(300)}
    assert seen == {1, 3}
    assert int(sample_next(logits, 0.0)) == 1


def test_batched_generation_equals_one_sequence_at_a_time(model):
    from tinylm.sample import generate_batch

    prompts = torch.tensor([[3, 17, 5, 9], [1, 2, 3, 4], [8, 8, 8, 8]])
    out = generate_batch(model, prompts, 20, temperature=0)
    for row, prompt in zip(out.tolist(), prompts.tolist()):
        assert row == list(generate(model, prompt, 20, temperature=0))


@pytest.mark.parametrize("batch", [1, 3])
def test_static_decode_step_equals_cached_forward(model, batch):
    # GPT.decode_step (fixed shapes, whole cache masked) is what compiled decoding runs
    from tinylm.model import KVCache

    prompts = torch.randint(0, 61, (batch, 5), generator=torch.Generator().manual_seed(1))
    a, b = KVCache(model.cfg, batch, 48, "cpu", torch.float32), KVCache(model.cfg, batch, 48, "cpu", torch.float32)
    with torch.no_grad():
        model(prompts, kv_cache=a), model(prompts, kv_cache=b)
        tok = prompts[:, -1]
        for pos in range(5, 30):
            ref = model(tok[:, None], kv_cache=a)[:, -1]
            got = model.decode_step(tok[:, None], torch.tensor([pos]), b.k, b.v)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
            tok = ref.argmax(-1)


@pytest.mark.slow
def test_compiled_decoding_gives_the_tokens_of_eager_decoding_and_full_recomputation(model):
    prompt = [3, 17, 5, 9]
    compiled = list(generate(model, prompt, 40, temperature=0, compile=True))
    assert compiled == list(generate(model, prompt, 40, temperature=0))
    assert compiled == list(generate(model, prompt, 40, temperature=0, use_cache=False))
    # sampling draws the same tokens from the same logits
    kw = dict(temperature=1.0, top_k=20, top_p=0.9, seed=7)
    assert list(generate(model, [1, 2], 30, compile=True, **kw)) == list(generate(model, [1, 2], 30, **kw))
    # batched: one compiled graph per batch size
    prompts = torch.randint(0, 61, (3, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(generate_batch(model, prompts, 20, temperature=0, compile=True),
                       generate_batch(model, prompts, 20, temperature=0))


@pytest.fixture
def sentencepiece_tok(tmp_path):
    """A llama2.c-style SentencePiece vocabulary of single characters (byte fallback for the rest)."""
    from tinylm.interop import llama2c
    from tinylm.tokenizer import Tokenizer

    chars = sorted(set("Once upon a time there was a cat."))
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    pieces += [c.encode() for c in chars]
    llama2c.write_vocab(tmp_path / "tok.bin", pieces, [0.0] * len(pieces))
    return Tokenizer(llama2c.hf_tokenizer(tmp_path / "tok.bin"), str(tmp_path / "tok.bin"))


def _script(monkeypatch, ids):
    import tinylm.sample as sample_mod

    ids = list(ids)
    monkeypatch.setattr(sample_mod, "sample_next", lambda *a, **k: torch.tensor([ids.pop(0)]))


def test_sentencepiece_continuation_keeps_its_leading_space(sentencepiece_tok, monkeypatch, capsys):
    from tinylm.config import SampleConfig
    from tinylm.sample import complete
    from tinylm.stages import sample as sample_stage

    tok = sentencepiece_tok
    cont = tok.encode("Once upon a time")[len(tok.encode("Once upon a")):]
    assert tok.decode(cont) == "time"  # decoded alone, SentencePiece drops the space: the trap
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, seq_len=48, n_layer=1, n_head=2, n_kv_head=2, n_embd=16)).eval()
    _script(monkeypatch, cont + [tok.eot_id])
    assert complete(model, tok, "Once upon a", max_new_tokens=20) == "Once upon a time"
    _script(monkeypatch, cont + [tok.eot_id])
    monkeypatch.setattr(sample_stage, "load_model", lambda *a, **k: (model, tok, {}))
    out = sample_stage.run(SampleConfig(checkpoint="x", prompt="Once upon a", num_samples=1, device="cpu"))
    assert out == ["Once upon a time"] and capsys.readouterr().out == "Once upon a time\n"


def _hf_warped(logits, temperature, top_k, top_p):
    warpers = pytest.importorskip("transformers.generation.logits_process")
    out = warpers.TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        out = warpers.TopKLogitsWarper(top_k)(None, out)
    if top_p < 1.0:
        out = warpers.TopPLogitsWarper(top_p)(None, out)
    return out


CRAFTED = {
    "uniform": [0.0, 0.0, 0.0, 0.0],  # exact top-p boundaries at 0.25, 0.5, 0.75
    "halves": [2.0, 1.0, 1.0, 0.0, 0.0, -1.0],  # ties inside and at the top-k / top-p edges
    "dyadic": [3 * 0.6931471805599453, 2 * 0.6931471805599453, 0.6931471805599453, 0.0, 0.0],  # 8:4:2:1:1
    "peaked": [10.0, 0.0, 0.0, 0.0, -5.0],
    "random": torch.randn(50, generator=torch.Generator().manual_seed(0)).tolist(),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_filters_select_what_transformers_warpers_select(name):
    import itertools

    from tinylm.sample import filter_logits

    logits = torch.tensor([CRAFTED[name]])
    for temperature, top_k, top_p in itertools.product([1.0, 0.5, 1.7], [0, 1, 2, 3, 4],
                                                       [1.0, 0.0, 0.25, 0.5, 0.75, 0.8, 0.9, 0.5 + 1e-7]):
        ours = filter_logits(logits, temperature, top_k, top_p)
        theirs = _hf_warped(logits, temperature, top_k, top_p)
        case = (temperature, top_k, top_p, ours, theirs)
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), case
        assert torch.equal(ours[~torch.isinf(ours)], theirs[~torch.isinf(theirs)]), case


def test_sample_groups_batches_prompts_of_different_lengths_like_one_at_a_time(model):
    """Several prompts in one ragged batch: greedy rows equal generate() on each prompt, stops and
    per-prompt budgets (the context) hold, and a prompt's sampled answers with its own generator do
    not depend on which prompts share the batch."""
    from tinylm.sample import sample_group, sample_groups

    prompts = [[3, 17, 5, 9], [1, 2], [8] * 40, [4, 4, 6, 1, 7, 2, 9]]
    greedy = sample_groups(model, prompts, 2, 20, stop_id=-5, temperature=0)
    for group, prompt in zip(greedy, prompts):
        want = list(generate(model, prompt, 20, temperature=0))
        assert group == [want, want]
    assert len(greedy[2][0]) == 48 - 40  # capped by the context, while the other rows run on
    stop = greedy[0][0][3]  # a token the first prompt emits: its rows end there, stop included
    stopped = sample_groups(model, prompts, 2, 20, stop_id=stop, temperature=0)
    assert stopped[0][0] == greedy[0][0][: greedy[0][0].index(stop) + 1]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (11, 12)]  # noqa: E731
    pair = sample_groups(model, [prompts[0], prompts[3]], 4, 15, stop_id=-5, temperature=1.0, generators=gens())
    alone = sample_groups(model, [prompts[3]], 4, 15, stop_id=-5, temperature=1.0, generators=gens()[1:])
    assert pair[1] == alone[0] and len({tuple(r) for r in pair[1]}) > 1
    one = sample_group(model, prompts[3], 4, 15, -5, 1.0, 0, torch.Generator().manual_seed(12))
    assert one == alone[0]  # the same answers as the one-prompt sampler with the same seed
    with pytest.raises(ValueError, match="no room"):
        sample_groups(model, [[1] * 48], 2, 5, stop_id=0)

"""The exported GGUF run by llama.cpp itself (llama-cpp-python): logits, greedy tokens,
tokenization and the chat template against tinylm.

Skipped without `llama_cpp` (pip install 'tinylm[llamacpp]' builds llama.cpp from source, which
takes 20+ minutes on 2 cores, so CI leaves it out; tests/test_gguf.py runs everywhere). Run:

    pytest -m llamacpp -s tests/test_llamacpp.py                       # a tiny model trained here
    TINYLM_LLAMACPP_CHECKPOINT=runs/default/sft pytest -m llamacpp -s tests/test_llamacpp.py

With -s each test prints what it measured (results/gguf/llamacpp_parity.log is such a run).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'tinylm[llamacpp]')")
pytest.importorskip("gguf", reason="GGUF export needs the gguf package")

from tinylm.chat import jinja_template, render_prompt, respond  # noqa: E402
from tinylm.interop.gguf import read_gguf, write_gguf  # noqa: E402
from tinylm.model import GPT  # noqa: E402
from tinylm.sample import generate  # noqa: E402
from tinylm.train.checkpoint import load_model  # noqa: E402

pytestmark = pytest.mark.llamacpp

F32_LOGIT_TOL = 1e-3  # max |logit difference|, f32 weights and f32 KV cache (measured: see the log)

PROMPTS = ["Once upon a time", "The little girl looked at the big red ball and said",
           "Tom and Lily went to the park. They", ""]

VARIED_TEXT = """Once upon a time, a café in Zürich served crème brûlée — naïve coöperation, Ελληνικά, русский текст,
日本語のテキスト, 中文字符, 한국어, العربية, עברית, हिन्दी, emoji 🙂👍🏽 and a family 👨‍👩‍👧, combining e\u0301 vs é.
Digits: 0 7 42 1234567 3.14159 -2.5e-10 1,000,000 2024-06-01 12:30:59 +1 (555) 010-9999 #123 $4.99 50% ½ ² ٣.
Whitespace:  two   three    four\ttab\t\ttabs \n\n\n   indented\r\nwindows line\u00a0nbsp\u2003em-space end   
Code:
def fib(n: int) -> int:
    if n < 2:  # base case
        return n
    return fib(n - 1) + fib(n - 2)

for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; }   // C
SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;
Contractions: don't, I'll, we've, she's, they're, I'd, I'm, O'Brien's, 'quoted', DON'T, It'S.
Punctuation: "Hello," she said... (really?) [yes!] {ok}; a/b\\c | x&y @user ~home `tick` <tag> <|user|> <|endoftext|>
URLs: https://example.com/a?b=c&d=e#f  mail@example.org
"""


def _llama(path, n_ctx, f32_cache=True, logits_all=True):
    kw = dict(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32) if f32_cache else {}
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=logits_all,
                           n_threads=1, n_threads_batch=1, seed=0, verbose=False, **kw)


def _trained_tiny_model(prepared, tmp_path_factory):
    """A tiny model trained for a few hundred steps on the test stories (real, not random, logits)."""
    from tinylm.config import ModelConfig, PretrainConfig, TrainConfig
    from tinylm.stages import pretrain

    run = tmp_path_factory.mktemp("llamacpp_run")
    cfg = PretrainConfig(model=ModelConfig(seq_len=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64),
                         train=TrainConfig(run_dir=str(run), data=str(prepared), device="cpu", dtype="fp32", threads=1,
                                           batch_size=8, total_batch_tokens=8 * 64, max_steps=150, warmup_steps=10,
                                           log_every=50, eval_every=0, sample_every=0, save_every=150))
    pretrain.run(cfg)
    return run


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    ckpt = os.environ.get("TINYLM_LLAMACPP_CHECKPOINT") or _trained_tiny_model(prepared, tmp_path_factory)
    model, tok, meta = load_model(ckpt)
    model.eval()
    out = tmp_path_factory.mktemp("gguf")
    paths = {t: write_gguf(model, tok, out / f"model-{t}.gguf", t, meta) for t in ("f32", "f16", "q8_0")}
    print(f"\nmodel: {ckpt} ({model.num_params():,} parameters, {model.cfg.n_layer} layers, d {model.cfg.n_embd}, "
          f"vocab {model.cfg.vocab_size}, context {model.cfg.seq_len}); llama-cpp-python {llama_cpp.__version__}")
    return model, tok, paths


def _ours_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].numpy()


def _theirs_logits(llm, ids) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def test_f32_logits_match_tinylm(exported):
    model, tok, paths = exported
    llm = _llama(paths["f32"], model.cfg.seq_len)
    worst = 0.0
    for p in PROMPTS:
        ids = [tok.eot_id] + tok.encode(p)
        ours, theirs = _ours_logits(model, ids), _theirs_logits(llm, ids)
        diff = float(np.abs(ours - theirs).max())
        worst = max(worst, diff)
        print(f"f32, f32 KV cache: {p[:40]!r:44} {len(ids):3d} tokens  max|dlogit| {diff:.2e}  "
              f"(logits span {ours.min():.1f}..{ours.max():.1f}); argmax agrees at "
              f"{int((ours.argmax(-1) == theirs.argmax(-1)).sum())}/{len(ids)} positions")
        assert np.array_equal(ours.argmax(-1), theirs.argmax(-1))
    # a full context, so every RoPE position is exercised
    ids = [tok.eot_id] + tok.encode(VARIED_TEXT * 20)[: model.cfg.seq_len - 1]
    diff = float(np.abs(_ours_logits(model, ids) - _theirs_logits(llm, ids)).max())
    print(f"f32, f32 KV cache: full context of {len(ids)} tokens  max|dlogit| {diff:.2e}")
    worst = max(worst, diff)
    assert worst <= F32_LOGIT_TOL


def test_greedy_generation_gives_tinylm_tokens(exported):
    model, tok, paths = exported
    n = min(48, model.cfg.seq_len // 2)
    llm = _llama(paths["f32"], model.cfg.seq_len)
    for p in PROMPTS[:3]:
        ids = [tok.eot_id] + tok.encode(p)
        ours = list(generate(model, ids, n, temperature=0.0))
        theirs = []
        for t in llm.generate(ids, temp=0.0, reset=True):  # llama.cpp's own greedy sampler
            theirs.append(t)
            if len(theirs) == n:
                break
        print(f"greedy, {n} tokens after {p[:30]!r}: identical={ours == theirs}  tinylm: {tok.decode(ours)[:70]!r}")
        assert ours == theirs
    # the user-facing completion call: BOS added from the file's add_bos_token, text decoded by llama.cpp
    p = PROMPTS[0]
    text = llm.create_completion(p, max_tokens=n, temperature=0.0)["choices"][0]["text"]
    stops = (tok.eot_id, tok.hf.token_to_id("<|end|>"))  # llama.cpp stops at either (end-of-generation tokens)
    ours = [t for t in generate(model, [tok.eot_id] + tok.encode(p), n, temperature=0.0, stop_ids=stops) if t not in stops]
    print(f"create_completion (greedy, {n} tokens): identical text={text == tok.decode(ours)}")
    assert text == tok.decode(ours)


def test_tokenization_of_varied_text_gives_the_same_ids(exported):
    model, tok, paths = exported
    llm = _llama(paths["f32"], model.cfg.seq_len, logits_all=False)
    ours = tok.encode(VARIED_TEXT)
    theirs = llm.tokenize(VARIED_TEXT.encode("utf-8"), add_bos=False, special=False)
    print(f"tokenization: varied text of {len(VARIED_TEXT)} characters -> {len(ours)} tokens, identical={ours == theirs}")
    assert theirs == ours
    assert llm.tokenize(b"Hi", add_bos=True, special=False) == [tok.eot_id] + tok.encode("Hi")
    # llama.cpp's token-by-token decoding (what streaming uses) gives the text back exactly
    assert llm.detokenize(ours).decode("utf-8") == VARIED_TEXT
    # llama_detokenize of a whole sequence applies the `gpt-2` pre-tokenizer's clean_spaces
    buf = ctypes.create_string_buffer(len(VARIED_TEXT.encode()) * 2)
    arr = (llama_cpp.llama_token * len(ours))(*ours)
    n = llama_cpp.llama_detokenize(llm._model.vocab, arr, len(ours), buf, len(buf), False, False)
    whole = buf.raw[:n].decode("utf-8")
    print(f"llama_detokenize (whole sequence, clean_spaces): equal to the text: {whole == VARIED_TEXT}; "
          f"{len(VARIED_TEXT.encode()) - n} bytes fewer")


def test_tokenization_agrees_on_corpus_text(exported, shared_data):
    """The measured consequence of running tinylm's pre-tokenizer as llama.cpp's `gpt-2`, on real
    text: validation documents of the corpora, compared document by document."""
    from tinylm.data.sources import resolve

    model, tok, paths = exported
    llm = _llama(paths["f32"], model.cfg.seq_len, logits_all=False)
    for corpus in ("tinystories", "gutenberg-children", "gutenberg-general"):
        docs = n_bytes = n_tok = bad = 0
        for doc in resolve(corpus).documents("valid"):
            ours = tok.encode(doc)
            theirs = llm.tokenize(doc.encode("utf-8"), add_bos=False, special=False)
            docs, n_bytes, n_tok, bad = docs + 1, n_bytes + len(doc.encode()), n_tok + len(ours), bad + (ours != theirs)
            if n_bytes > 2_000_000:
                break
        print(f"tokenization: {corpus} validation: {docs} documents, {n_bytes:,} bytes, {n_tok:,} tokens; "
              f"documents with any differing id: {bad}")
        assert bad == 0


def test_chat_template_renders_the_same_prompt(exported):
    model, tok, paths = exported
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = _llama(paths["f32"], model.cfg.seq_len)
    template = llm.metadata["tokenizer.chat_template"]
    assert template == jinja_template()  # the Hugging Face export's tokenizer_config.json carries this string
    fmt = Jinja2ChatFormatter(template, eos_token=tok.hf.id_to_token(tok.hf.token_to_id("<|end|>")),
                              bos_token=tok.hf.id_to_token(tok.eot_id))
    for messages in ([{"role": "user", "content": "Tell me a story about a cat."}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "A title, please."}]):
        prompt = fmt(messages=messages).prompt
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        print(f"chat template: {len(messages)} messages -> {prompt!r} -> identical ids: {ids == render_prompt(tok, messages)}")
        assert ids == render_prompt(tok, messages)
    # end to end: llama-cpp-python's chat completion (template from the file, greedy, stops at <|end|>)
    messages = [{"role": "user", "content": "Tell me a story about a cat."}]
    got = llm.create_chat_completion(messages, temperature=0.0, max_tokens=24)["choices"][0]["message"]["content"]
    want = respond(model, tok, messages, max_new_tokens=24, temperature=0.0)
    print(f"chat completion (greedy, 24 tokens): identical={got == want}: {got[:60]!r}")
    assert got == want
    vocab = llm._model.vocab
    assert all(llama_cpp.llama_vocab_is_eog(vocab, tok.hf.token_to_id(t)) for t in ("<|end|>", "<|endoftext|>"))


def test_f16_q8_and_f16_cache_figures(exported):
    """Not exact by construction: how far f16 / q8_0 weights and llama.cpp's default f16 KV cache move
    the logits, against tinylm with the original weights and with the file's own (dequantized) weights."""
    model, tok, paths = exported
    prompt = [tok.eot_id] + tok.encode(VARIED_TEXT * 20)[: model.cfg.seq_len - 1]
    ours = _ours_logits(model, prompt)
    for outtype in ("f32", "f16", "q8_0"):
        cfg, sd, _ = read_gguf(paths[outtype])
        same = GPT(cfg)
        same.load_state_dict(sd, strict=False)
        same.eval()
        own = _ours_logits(same, prompt)
        for f32_cache in (True, False):
            theirs = _theirs_logits(_llama(paths[outtype], model.cfg.seq_len, f32_cache=f32_cache), prompt)
            print(f"{outtype:5} weights, {'f32' if f32_cache else 'f16'} KV cache, {len(prompt)} tokens: max|dlogit| vs "
                  f"tinylm {np.abs(theirs - ours).max():.2e}, vs tinylm on the file's weights "
                  f"{np.abs(theirs - own).max():.2e}; next-token argmax agrees at "
                  f"{(theirs.argmax(-1) == ours.argmax(-1)).mean():.1%} of positions")
            if outtype == "q8_0":
                assert (theirs.argmax(-1) == ours.argmax(-1)).mean() > 0.8
            else:
                assert np.abs(theirs - ours).max() < 0.1

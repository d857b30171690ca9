"""The model side of evaluation: log-likelihoods of continuations, rolling log-likelihoods of
documents and generation, batched, for any model tinylm can load.

Tasks never touch tokens. They ask for `loglikelihood([(context, continuation), ...])` (as
lm-evaluation-harness's `LM.loglikelihood`) or `loglikelihood_rolling([text, ...])`; this module
tokenizes, truncates, batches and scores.

Protocol choices, made once here for every task:
The protocol is lm-evaluation-harness's (0.4.x, `lm_eval --model hf` with default settings on
the model exported by `tinylm export --format hf`; tests/test_lm_eval_parity.py runs lm-eval itself
and asserts the same numbers):
- A context/continuation pair is tokenized as the harness's `_encode_pair` does it: trailing
  spaces of the context move to the continuation, the whole string is encoded, and the
  continuation's tokens are the whole encoding minus as many tokens as the context's own
  encoding has (so a leading space or a word piece merged across the boundary belongs to the
  continuation).
- The document-start token (<|endoftext|> in tinylm, <s> in llama2.c vocabularies; the export's
  `bos_token`) is the context of an empty context only (BLiMP's sentences, the first rolling
  window), as the harness's `prefix_token_id`; a non-empty context is scored as it is, with no
  start token. The export's tokenizer adds no special tokens (`add_bos_token: false`, no
  post-processor), so the harness adds none either. Recorded in eval.json as `start_token`.
- A sequence longer than the context window keeps its last `seq_len + 1` tokens (truncated from
  the left, as the harness does); such requests are counted per task.
- Scores are computed in float32 log-softmax; the forward pass runs in the model's dtype unless
  `--dtype bf16` asks for autocast (faster on CPUs with bf16 matmuls, small differences).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from tinylm.bpb import rolling_windows


@dataclass
class Counters:
    """Per-task bookkeeping the harness reports: requests truncated from the left."""

    requests: int = 0
    truncated: int = 0


@dataclass
class LanguageModel:
    """A causal LM ready for scoring. `forward(ids (B, T)) -> logits (B, T, V)`."""

    forward: object
    tok: object  # tinylm.tokenizer.Tokenizer (encode/decode/eot_id/has_chat_tokens)
    max_length: int
    info: dict = field(default_factory=dict)
    model: object = None  # the tinylm GPT when there is one (fast KV-cache generation)
    device: str = "cpu"
    batch_tokens: int = 8192  # padded tokens per forward pass
    autocast_dtype: torch.dtype | None = None
    counters: Counters = field(default_factory=Counters)

    # ----------------------------------------------------------------------------- encoding
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:  # the harness's empty-context rule: the start token is the context
            cont = self.tok.encode(continuation)
            return ([self.tok.eot_id], cont) if cont[:1] != [self.tok.eot_id] else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tok.encode(context + continuation)
        ctx = self.tok.encode(context)
        return ctx, whole[len(ctx):]

    # ----------------------------------------------------------------------------- scoring
    def _score(self, requests: list[tuple[list[int], list[int]]], desc: str = "") -> list[tuple[float, bool]]:
        """requests: (input ids, target ids), the targets aligned with the LAST len(targets)
        positions of the input. Returns (sum of target log-probs, every target is the argmax).

        Each distinct input is run once: requests that differ only in their targets (MMLU's
        " A".." D" after one prompt) read their log-probs off the same row."""
        from tinylm.progress import bar

        rows: dict[tuple, int] = {}
        inputs: list[tuple] = []
        targets: list[list[tuple]] = []  # per row: the distinct target tuples scored on it
        where: list[tuple[int, int]] = []  # per request: (row, index into that row's targets)
        for inp, tgt in requests:
            key = tuple(inp)
            if key not in rows:
                rows[key] = len(inputs)
                inputs.append(key)
                targets.append([])
            r, t = rows[key], tuple(tgt)
            if t not in targets[r]:
                targets[r].append(t)
            where.append((r, targets[r].index(t)))
        by_len = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
        results: list[list] = [[None] * len(t) for t in targets]
        batches, cur = [], []
        for i in by_len:
            width = len(inputs[cur[0]]) if cur else len(inputs[i])
            if cur and (len(cur) + 1) * width > self.batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        ctx = (torch.autocast(device_type=torch.device(self.device).type, dtype=self.autocast_dtype)
               if self.autocast_dtype else contextlib.nullcontext())
        with torch.inference_mode(), ctx:
            for batch in bar(batches, desc=desc or "score", unit="batch", disable=len(batches) < 2):
                width = len(inputs[batch[0]])
                x = torch.zeros(len(batch), width, dtype=torch.long)
                pos_r, pos_c, tgts, sizes = [], [], [], []
                for r, i in enumerate(batch):
                    inp = inputs[i]
                    x[r, : len(inp)] = torch.tensor(inp)
                    n = len(inp)
                    for tgt in targets[i]:
                        k = len(tgt)
                        pos_r += [r] * k
                        pos_c += range(n - k, n)
                        tgts += tgt
                        sizes.append(k)
                x = x.to(self.device)
                rows_t, cols_t = torch.tensor(pos_r, device=self.device), torch.tensor(pos_c, device=self.device)
                if self.model is not None:  # lm_head only where a target is scored
                    logits = self.model.lm_head(self.model(x, return_hidden=True)[rows_t, cols_t])
                else:
                    logits = self.forward(x)[rows_t, cols_t]
                lp = F.log_softmax(logits.float(), dim=-1)
                t = torch.tensor(tgts, device=lp.device)
                tok_ll = lp.gather(-1, t[:, None]).squeeze(-1).double().cpu().split(sizes)
                hit = (lp.argmax(-1) == t).cpu().split(sizes)
                j = 0
                for i in batch:
                    for k in range(len(targets[i])):
                        results[i][k] = (tok_ll[j].sum().item(), bool(hit[j].all()))
                        j += 1
        return [results[r][k] for r, k in where]

    def loglikelihood(self, pairs: list[tuple[str, str]], desc: str = "") -> list[tuple[float, bool]]:
        """log P(continuation | context) and whether greedy decoding would produce it."""
        reqs = []
        L = self.max_length
        for context, continuation in pairs:
            ctx, cont = self.encode_pair(context, continuation)
            if not cont:
                raise ValueError(f"empty continuation after tokenization (context {context[-40:]!r})")
            if not ctx:  # a context that encodes to nothing (whitespace only): the start token stands in
                ctx = [self.tok.eot_id]
            whole = ctx + cont
            self.counters.requests += 1
            if len(whole) > L + 1:
                self.counters.truncated += 1
                whole = whole[-(L + 1):]
                cont = cont[-L:]
            reqs.append((whole[:-1], cont))
        return self._score(reqs, desc)

    def loglikelihood_rolling(self, texts: list[str], context_len: int = 1, desc: str = "") -> list[tuple[float, int]]:
        """(summed log-likelihood, tokens) of each whole text with rolling windows (bpb.py);
        context_len=1 is lm-evaluation-harness's disjoint windows."""
        reqs, owners, n_tokens = [], [], []
        L = self.max_length
        for j, text in enumerate(texts):
            ids = self.tok.encode(text)
            s = [self.tok.eot_id] + ids
            n_tokens.append(len(ids))
            for a, b, n_pred in rolling_windows(len(ids), L, context_len):
                reqs.append((s[a:b], s[b + 1 - n_pred : b + 1]))
                owners.append(j)
        out = [0.0] * len(texts)
        for j, (ll, _) in zip(owners, self._score(reqs, desc)):
            out[j] += ll
        return list(zip(out, n_tokens))

    # ----------------------------------------------------------------------------- generation
    def generate(self, prompt: list[int], max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 seed: int = 0, stop_ids=()) -> list[int]:
        room = self.max_length - len(prompt)
        if room <= 1:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in a context of {self.max_length}")
        max_new_tokens = min(max_new_tokens, room)
        if self.model is not None:
            from tinylm.sample import generate

            return list(generate(self.model, prompt, max_new_tokens, temperature, top_k, seed=seed, stop_ids=stop_ids))
        from tinylm.sample import sample_next  # generic path: no KV cache, fine for tiny models

        gen = torch.Generator(device=self.device).manual_seed(seed)
        ids, out = list(prompt), []
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                logits = self.forward(torch.tensor([ids], device=self.device))[:, -1]
                t = int(sample_next(logits, temperature, top_k, generator=gen))
                out.append(t)
                ids.append(t)
                if t in stop_ids:
                    break
        return out


# --------------------------------------------------------------------------------- loading
def _from_gpt(model, tok, info: dict, device: str) -> LanguageModel:
    model.to(device).eval()
    info.setdefault("params", model.num_params())
    info.update(seq_len=model.cfg.seq_len, vocab_size=model.cfg.vocab_size)
    return LanguageModel(forward=model, tok=tok, max_length=model.cfg.seq_len, info=info, model=model, device=device)


def load_llama2c(path, tokenizer, device="cpu") -> LanguageModel:
    """A llama2.c legacy .bin checkpoint with its tokenizer (.bin from llama2.c, or the
    SentencePiece .model it was made from)."""
    from tinylm.interop import read_model

    model, tok = read_model("llama2c", path, tokenizer)
    info = {"spec": str(path), "name": Path(path).stem, "kind": "llama2c", "tokenizer": str(tokenizer)}
    return _from_gpt(model, tok, info, device)


def load_hf(path, device="cpu") -> LanguageModel:
    """A Hugging Face causal-LM directory. Llama-architecture models are imported into tinylm's
    GPT (identical logits, tested) for KV-cache generation; anything else runs in transformers."""
    from tinylm.tokenizer import Tokenizer

    path = Path(path)
    cfg = __import__("json").loads((path / "config.json").read_text())
    name = path.name
    if cfg.get("model_type") == "llama":
        from tinylm.interop import read_model

        model, tok = read_model("hf", path)
        return _from_gpt(model, tok, {"spec": str(path), "name": name, "kind": "hf"}, device)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ValueError(f"{path}: evaluating a {cfg.get('model_type')} model needs transformers: "
                         "pip install 'tinylm[hf]'") from e
    hf_model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    hf_tok = AutoTokenizer.from_pretrained(path)
    start = hf_tok.bos_token or hf_tok.eos_token
    tok = Tokenizer(hf_tok.backend_tokenizer, str(path / "tokenizer.json"), doc_start=start)
    max_len = getattr(hf_model.config, "max_position_embeddings", None) or getattr(hf_model.config, "n_positions", 1024)
    info = {"spec": str(path), "name": name, "kind": "hf", "params": sum(p.numel() for p in hf_model.parameters()),
            "seq_len": max_len, "vocab_size": hf_model.config.vocab_size}
    return LanguageModel(forward=lambda x: hf_model(x).logits, tok=tok, max_length=max_len, info=info, device=device)


def load(spec: str, tokenizer: str = "", device: str = "cpu") -> LanguageModel:
    """Any model tinylm can evaluate: a tinylm run or checkpoint directory, a llama2.c `.bin`
    (with `tokenizer`), or a Hugging Face directory (config.json + weights)."""
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"model {spec}: no such file or directory")
    if path.is_file():
        if path.suffix == ".bin":
            return load_llama2c(path, tokenizer, device)
        raise ValueError(f"model {spec}: a file must be a llama2.c .bin checkpoint")
    if (path / "config.json").exists() and not (path / "meta.json").exists() and not (path / "checkpoints").exists():
        return load_hf(path, device)
    from tinylm.train.checkpoint import find_checkpoint, load_model

    ckpt = find_checkpoint(path)
    model, tok, meta = load_model(ckpt, device)
    name = path.name if path.name not in ("sft", "checkpoints") and not path.name.startswith("step_") else \
        "-".join(p for p in ckpt.parts[-4:] if p not in ("checkpoints",) and not p.startswith("step_"))
    info = {"spec": str(spec), "name": name, "kind": "tinylm", "checkpoint": str(ckpt), "step": meta.get("step"),
            "stage": meta.get("stage"), "tokens_seen": meta.get("tokens_seen")}
    return _from_gpt(model, tok, info, device)


def perplexity(ll_sum: float, n: int) -> float:
    return math.exp(-ll_sum / max(n, 1))

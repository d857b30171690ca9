"""Preference pairs: reading them, rendering them with the chat template, batching them.

A pair is a prompt (a conversation ending with a user turn) and two assistant answers, `chosen`
preferred to `rejected`. Sources:

    pairs:PATH / pairs-lenient:PATH   your JSONL, one {"prompt": str | "messages": [...], "chosen": str,
                                      "rejected": str} per line. Strict stops at the first bad line
                                      with its number; lenient skips and counts bad lines.
    hh-rlhf[:SUBSET]                  Anthropic HH-RLHF (Bai et al. 2022), the local test splits in
                                      <data dir>/hh-rlhf/<subset>/test.jsonl.gz (or the Hub with
                                      `datasets`); each "\\n\\nHuman: ... \\n\\nAssistant: ..." dialogue
                                      is parsed into user/assistant turns, the shared turns are the
                                      prompt and the final assistant turns are chosen/rejected.
    on-policy pairs                   made by tinylm itself (tinylm/train/rollout.py: sample K answers
                                      from the SFT model, score with the constraint checker).

Rendering: prompt ids = `render_prompt(messages)` (ending in <|assistant|>), response ids = the
answer's tokens + <|end|>; the loss/log-probability mask covers exactly the response. Skipped and
counted (`PairLoader.skipped`): chosen == rejected, an empty answer, a prompt that fills the context
(the rendered pair would be all prompt), a pair longer than the context (cutting it would drop the
<|end|> that the preference may be about).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinylm.chat import ChatFormatError, end_id, render_prompt, validate
from tinylm.data.sources import DataError, data_dir
from tinylm.train.objectives import IGNORE_INDEX

HH_SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")


class TooFewPairsError(DataError):
    """Not enough usable pairs for one batch (e.g. every on-policy answer tied: nothing to prefer)."""


@dataclass
class Pair:
    prompt: list[dict]  # messages, ending with a user turn
    chosen: str
    rejected: str
    meta: dict = field(default_factory=dict)


def _pair_from_record(rec, where: str) -> Pair:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object with prompt/messages, chosen, rejected")
    for k in ("chosen", "rejected"):
        if not isinstance(rec.get(k), str):
            raise DataError(f"{where}: field {k!r} is missing or not a string")
    if "messages" in rec:
        prompt = rec["messages"]
    elif isinstance(rec.get("prompt"), str):
        prompt = [{"role": "user", "content": rec["prompt"]}]
    else:
        raise DataError(f"{where}: needs a 'prompt' string or a 'messages' list")
    try:
        validate(prompt)
    except ChatFormatError as e:
        raise DataError(f"{where}: {e}") from None
    if prompt[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt must end with a user turn")
    if not rec["chosen"].strip() or not rec["rejected"].strip():
        raise DataError(f"{where}: empty chosen or rejected answer")
    if rec["chosen"] == rec["rejected"]:
        raise DataError(f"{where}: chosen and rejected are identical (no preference)")
    return Pair(prompt, rec["chosen"], rec["rejected"], {k: v for k, v in rec.items() if k not in ("chosen", "rejected", "messages", "prompt")})


def read_jsonl_pairs(path, lenient: bool = False) -> tuple[list[Pair], int]:
    """Pairs from a JSONL file: (pairs, skipped lines). Strict raises DataError naming the line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: preference file not found")
    pairs, skipped = [], 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="strict") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{i}: not valid JSON ({e.msg})") from None
                pairs.append(_pair_from_record(rec, f"{path}:{i}"))
            except DataError:
                if not lenient:
                    raise
                skipped += 1
    if not pairs:
        raise DataError(f"{path}: no usable preference pairs ({skipped} bad lines skipped)")
    return pairs, skipped


def parse_hh_dialogue(text: str) -> list[dict]:
    """"\\n\\nHuman: a\\n\\nAssistant: b ..." -> [{"role": "user", ...}, {"role": "assistant", ...}, ...]."""
    turns = []
    for chunk in text.split("\n\nHuman: ")[1:] if text.startswith("\n\nHuman: ") else [None]:
        if chunk is None:
            raise ValueError("dialogue does not start with '\\n\\nHuman: '")
        human, *rest = chunk.split("\n\nAssistant: ")
        turns.append({"role": "user", "content": human.strip()})
        for a in rest:
            turns.append({"role": "assistant", "content": a.strip()})
    return turns


def hh_pair(rec: dict) -> Pair:
    """One HH-RLHF record -> Pair; raises ValueError when the two dialogues do not share a prompt."""
    c, r = parse_hh_dialogue(rec["chosen"]), parse_hh_dialogue(rec["rejected"])
    if len(c) < 2 or c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant" or c[:-1] != r[:-1]:
        raise ValueError("chosen and rejected do not share a prompt ending in a human turn")
    prompt = c[:-1]
    # consecutive same-role turns (a few records have them) are merged so the template stays valid
    merged: list[dict] = []
    for m in prompt:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = {"role": m["role"], "content": merged[-1]["content"] + "\n" + m["content"]}
        else:
            merged.append(dict(m))
    return Pair(merged, c[-1]["content"], r[-1]["content"], {"source": "hh-rlhf"})


def read_hh_rlhf(subset: str = "helpful-base", split: str = "test", limit: int = 0) -> tuple[list[Pair], int]:
    """HH-RLHF pairs from the local copy (or the Hub): (pairs, malformed records skipped)."""
    if subset not in HH_SUBSETS:
        raise DataError(f"unknown hh-rlhf subset {subset!r}; choose from {', '.join(HH_SUBSETS)}")
    root = data_dir()
    path = root / "hh-rlhf" / subset / f"{split}.jsonl.gz" if root else None
    if path is not None and path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    else:
        try:
            import datasets
        except ImportError:
            raise DataError(f"hh-rlhf: {path or '<data dir>/hh-rlhf'}/{subset}/{split}.jsonl.gz not found and `datasets` "
                            "is not installed (pip install 'tinylm[hf]' to read Anthropic/hh-rlhf from the Hub)") from None
        records = list(datasets.load_dataset("Anthropic/hh-rlhf", data_dir=subset, split=split))
    pairs, skipped = [], 0
    for rec in records:
        try:
            p = hh_pair(rec)
            if p.chosen.strip() and p.rejected.strip() and p.chosen != p.rejected:
                pairs.append(p)
                continue
        except (ValueError, KeyError, TypeError):
            pass
        skipped += 1
    return (pairs[:limit] if limit else pairs), skipped


def load_pairs(spec: str) -> tuple[list[Pair], int]:
    """`pairs:PATH`, `pairs-lenient:PATH`, `hh-rlhf` or `hh-rlhf:SUBSET` -> (pairs, skipped)."""
    if spec.startswith("pairs:"):
        return read_jsonl_pairs(spec[len("pairs:"):])
    if spec.startswith("pairs-lenient:"):
        return read_jsonl_pairs(spec[len("pairs-lenient:"):], lenient=True)
    if spec == "hh-rlhf" or spec.startswith("hh-rlhf:"):
        return read_hh_rlhf(spec.partition(":")[2] or "helpful-base")
    raise DataError(f"unknown preference source {spec!r}; use pairs:PATH, pairs-lenient:PATH, hh-rlhf[:SUBSET] "
                    "or on-policy (pairs sampled from the SFT model)")


def write_pairs(path, pairs: list[Pair]) -> None:
    from tinylm.util import atomic_write_text

    atomic_write_text(path, "".join(json.dumps({"messages": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                                                **p.meta}) + "\n" for p in pairs))


# ---------------------------------------------------------------------------------------------
# Rendering and batching


def render_response(tok, prompt: list[dict], answer: str, ended: bool = True) -> tuple[list[int], int]:
    """(ids of prompt + answer + <|end|>, number of prompt tokens). An on-policy answer that ran
    out of tokens without <|end|> is rendered without it (`ended=False`): a preference against it
    must not also push down the probability of stopping."""
    p = render_prompt(tok, prompt)
    return p + tok.encode(answer) + ([end_id(tok)] if ended else []), len(p)


def collate_responses(seqs: list[tuple[list[int], int]], pad_id: int, width: int | None = None):
    """[(ids, n_prompt)] -> x (N, W), y (N, W) with targets only on response tokens (IGNORE elsewhere)."""
    W = width or max(len(ids) for ids, _ in seqs) - 1
    x = torch.full((len(seqs), W), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), W), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(seqs):
        t = torch.tensor(ids, dtype=torch.long)
        n = len(ids) - 1
        x[i, :n] = t[:-1]
        y[i, n_prompt - 1 : n] = t[n_prompt:]
    return x, y


class PairLoader:
    """Batches of B pairs as one (2B, W) forward: rows 0..B-1 chosen, B..2B-1 rejected (as the DPO
    reference code does). Returns (x, y, ref) with ref (2B,) the reference log-probabilities when
    precomputed (`set_reference`), else None. Shuffled per epoch; the position is saveable."""

    def __init__(self, tok, pairs: list[Pair], batch_size: int, seq_len: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, min_batches: int = 1):
        self.B, self.T, self.seed, self.rank, self.world_size, self.shuffle = batch_size, seq_len, seed, rank, world_size, shuffle
        self.pad_id = tok.pad_id if tok.pad_id is not None else tok.eot_id
        self.rows: list[tuple[tuple[list[int], int], tuple[list[int], int]]] = []
        self.skipped = {"identical": 0, "empty": 0, "prompt_fills_context": 0, "too_long": 0}
        for p in pairs:
            if p.chosen == p.rejected:
                self.skipped["identical"] += 1
                continue
            if not p.chosen.strip() or not p.rejected.strip():
                self.skipped["empty"] += 1
                continue
            c = render_response(tok, p.prompt, p.chosen, p.meta.get("chosen_ended", True))
            r = render_response(tok, p.prompt, p.rejected, p.meta.get("rejected_ended", True))
            if c[1] >= seq_len:
                self.skipped["prompt_fills_context"] += 1
                continue
            if max(len(c[0]), len(r[0])) > seq_len + 1:
                self.skipped["too_long"] += 1
                continue
            self.rows.append((c, r))
        if len(self.rows) < batch_size * world_size * min_batches:
            raise TooFewPairsError(f"{len(self.rows)} usable preference pairs (skipped: {self.skipped}), fewer than "
                                   f"{min_batches} batch(es) of {batch_size * world_size}")
        self.ref: torch.Tensor | None = None  # (n_rows, 2) reference log-probs, when precomputed
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.rows)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "n_rows": len(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        if state["n_rows"] != len(self.rows) or state["seed"] != self.seed:
            raise DataError(f"preference data position was saved for {state['n_rows']} pairs (seed {state['seed']}), "
                            f"the data now has {len(self.rows)} (seed {self.seed})")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._epoch_order(self.epoch)

    def set_reference(self, ref: torch.Tensor) -> None:
        self.ref = ref

    def collate(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        picked = [self.rows[i] for i in idx]
        x, y = collate_responses([c for c, _ in picked] + [r for _, r in picked], self.pad_id)
        ref = None
        if self.ref is not None:
            sel = self.ref[torch.as_tensor(np.asarray(idx), dtype=torch.long)]  # (B, 2)
            ref = torch.cat([sel[:, 0], sel[:, 1]])
        return x, y, ref

    def next_batch(self):
        step = self.B * self.world_size
        if self.cursor + step > len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        first = self.cursor + self.rank * self.B
        idx = self._order[first : first + self.B]
        self.cursor += step
        return self.collate(idx)

    def all_batches(self, batch_size: int | None = None):
        """Every pair once, in file order: (row indices, batch) for scoring and precomputing."""
        b = batch_size or self.B
        for i in range(0, len(self.rows), b):
            idx = list(range(i, min(i + b, len(self.rows))))
            yield idx, self.collate(idx)

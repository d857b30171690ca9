"""Batches of rendered conversations for SFT: padding, not packing.

Each conversation is rendered once with the chat template into (ids, mask); a batch holds B whole
conversations, right-padded to the longest of them (rounded up to a multiple of 16). Targets are
IGNORE_INDEX wherever the mask is 0 (system/user text, role markers) and on padding, so the loss
counts exactly the assistant's tokens.

Why padding: packing several conversations into one row would let a conversation attend to the
one before it, unless attention is masked per document. To keep padding cheap, conversations are
bucketed by length: each epoch is shuffled, cut into groups of 64 batches, and sorted by length
inside a group, so a batch holds conversations of similar length. `padding_stats()` reports the
fraction of computed positions that are padding (measured on the default mixture: see
results/gc-1m/sft/summary.json).

Conversations longer than seq_len + 1 tokens are dropped, and counted: cutting one would train
the model on an answer that ends without its <|end|>.

The position (epoch, cursor) is saveable exactly like the pretraining loader's.
"""

from __future__ import annotations

import numpy as np
import torch

from tinylm.chat import render_conversation
from tinylm.data.sources import DataError
from tinylm.train.objectives import IGNORE_INDEX

GROUP = 64  # batches per length-sorting group
PAD_MULTIPLE = 16


class ConversationLoader:
    def __init__(self, tok, examples, batch_size: int, seq_len: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, device="cpu", shuffle: bool = True):
        self.B, self.T, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.device = torch.device(device)
        self.pad_id = tok.pad_id if tok.pad_id is not None else tok.eot_id
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.dropped_too_long = 0
        self.dropped_no_target = 0
        for ex in examples:
            ids, mask = render_conversation(tok, ex.messages)
            if len(ids) > seq_len + 1:
                self.dropped_too_long += 1
                continue
            if not any(mask[1:]):
                self.dropped_no_target += 1
                continue
            self.rows.append((np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool)))
        if len(self.rows) < batch_size * world_size:
            raise DataError(f"{len(self.rows)} usable conversations of {len(self.rows) + self.dropped_too_long + self.dropped_no_target} "
                            f"(dropped {self.dropped_too_long} longer than {seq_len + 1} tokens and "
                            f"{self.dropped_no_target} without an assistant turn to learn from), fewer than one batch "
                            f"of {batch_size * world_size}")
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)
        self._computed = self._padding = 0
        # input positions of the average conversation (its length minus the last target), for the
        # trainer's start line: a step of padded conversations holds far fewer real tokens than B*T
        self.mean_length = float(np.mean([len(ids) - 1 for ids, _ in self.rows]))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.rows)
        if not self.shuffle:
            return np.arange(n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        group = GROUP * self.B * self.world_size
        lengths = np.array([len(r[0]) for r in self.rows])
        for i in range(0, n, group):  # sort by length within each group: similar lengths share a batch
            chunk = order[i : i + group]
            order[i : i + group] = chunk[np.argsort(-lengths[chunk], kind="stable")]
        # batches in a random order, so long and short batches are interleaved through the epoch
        step = self.B * self.world_size
        n_batches = n // step
        perm = np.random.default_rng([self.seed, epoch, 1]).permutation(n_batches)
        return np.concatenate([order[j * step : (j + 1) * step] for j in perm])

    def state_dict(self) -> dict:
        # the padding counters travel with the position, so a resumed run reports the whole run's padding
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "n_rows": len(self.rows),
                "computed_positions": self._computed, "padding_positions": self._padding}

    def load_state_dict(self, state: dict) -> None:
        if state["n_rows"] != len(self.rows) or state["seed"] != self.seed:
            raise DataError(f"SFT data position was saved for {state['n_rows']} conversations (seed {state['seed']}), "
                            f"the data now has {len(self.rows)} (seed {self.seed})")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._computed, self._padding = state.get("computed_positions", 0), state.get("padding_positions", 0)
        self._order = self._epoch_order(self.epoch)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.B * self.world_size
        if self.cursor + step > len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        first = self.cursor + self.rank * self.B
        picked = [self.rows[i] for i in self._order[first : first + self.B]]
        self.cursor += step
        return self._collate(picked)

    def _collate(self, picked) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids, _ in picked) - 1
        width = min(-(-width // PAD_MULTIPLE) * PAD_MULTIPLE, self.T)
        x = torch.full((len(picked), width), self.pad_id, dtype=torch.long)
        y = torch.full((len(picked), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, mask) in enumerate(picked):
            n = len(ids) - 1
            x[i, :n] = torch.from_numpy(ids[:-1])
            y[i, :n] = torch.from_numpy(np.where(mask[1:], ids[1:], IGNORE_INDEX))
            self._padding += width - n
        self._computed += width * len(picked)
        if self.device.type != "cpu":
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def padding_stats(self) -> dict:
        return {"computed_positions": self._computed, "padding_positions": self._padding,
                "padding_fraction": self._padding / max(self._computed, 1),
                "dropped_too_long": self.dropped_too_long, "conversations": len(self.rows)}

    def batches(self, n: int | None = None):
        """All (or n) batches of one pass in order, e.g. a fixed validation set."""
        out, total = [], len(self._order) // self.B
        for _ in range(min(n or total, total)):
            out.append(self.next_batch())
        return out

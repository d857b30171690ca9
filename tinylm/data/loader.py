"""Batches of (x, y) from memory-mapped token shards, with an exact, saveable position.

Each shard is cut into non-overlapping windows of seq_len + 1 tokens (x = window[:-1],
y = window[1:]). Every epoch visits all windows in a fresh random order drawn from
(seed, epoch), so consecutive batches come from different books rather than one book at a time.

`repeat_frac` > 0 turns that fraction of the windows into copying drills: the window's first half,
then the same tokens again (chosen by window index and seed, so a resumed run sees the same
drills). Predicting the second half is pure in-context copying, the task that forms induction
heads (Olsson et al. 2022); natural text alone gives a ~1M model little of that signal early on.

The position is just (epoch, cursor): `state_dict()` / `load_state_dict()` restore it exactly.
With data parallelism, rank r of W takes windows cursor + r*B ... cursor + r*B + B - 1 and every
rank advances the cursor by W*B, so the state does not depend on the world size and a run saved
on W ranks resumes on any other number.
"""

from __future__ import annotations

import numpy as np
import torch

from tinylm.data.shards import open_shard
from tinylm.data.sources import DataError


class TokenLoader:
    def __init__(self, shard_paths, batch_size: int, seq_len: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device="cpu", shuffle: bool = True,
                 vocab_size: int | None = None, repeat_frac: float = 0.0):
        # with vocab_size: each shard's header and token ids are checked against the tokenizer
        self.shards = [open_shard(p, vocab_size) for p in shard_paths]
        self.paths = [str(p) for p in shard_paths]
        self.B, self.T = batch_size, seq_len
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        if not 0.0 <= repeat_frac <= 1.0:
            raise ValueError(f"repeat_frac must be in [0, 1], got {repeat_frac}")
        self.repeat_frac = repeat_frac
        # window i of a shard covers tokens [i*T, i*T + T]: neighbours share one token, so every
        # token but a shard's first is a target exactly once per epoch
        counts = [max((len(s) - 1) // seq_len, 0) for s in self.shards]
        self.n_windows = sum(counts)
        if self.n_windows < batch_size * world_size:
            raise DataError(
                f"{', '.join(self.paths)}: {self.n_windows} windows of {seq_len + 1} tokens, "
                f"fewer than one global batch of {batch_size * world_size} sequences"
            )
        self.starts = np.concatenate([[0], np.cumsum(counts)])  # window-index offset of each shard
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_windows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def _window(self, w: int) -> np.ndarray:
        s = int(np.searchsorted(self.starts, w, side="right") - 1)
        i = int(w - self.starts[s]) * self.T
        win = self.shards[s][i : i + self.T + 1]
        if self.repeat_frac and self.is_drill(w):
            half = (self.T + 1) // 2
            win = np.concatenate([win[:half], win[: self.T + 1 - half]])
        return win

    def is_drill(self, w: int) -> bool:
        """Whether window `w` is a copying drill: a hash of (seed, w), not the draw order."""
        h = (int(w) * 2654435761 + self.seed * 40503) % 2**32
        return h / 2**32 < self.repeat_frac

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "n_windows": self.n_windows,
                "shard_tokens": [len(s) for s in self.shards], "shuffle": self.shuffle,
                **({"repeat_frac": self.repeat_frac} if self.repeat_frac else {})}

    def load_state_dict(self, state: dict) -> None:
        saved = (state["n_windows"], state["seed"], state.get("shard_tokens"), state.get("shuffle", True),
                 state.get("repeat_frac", 0.0))
        now = (self.n_windows, self.seed, [len(s) for s in self.shards], self.shuffle, self.repeat_frac)
        if saved != now:
            raise DataError(
                f"data position was saved for (windows, seed, shard sizes, shuffle, repeat_frac) = {saved}, but the data "
                f"now gives {now}: different data or settings, so the saved position means nothing here"
            )
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._permutation(self.epoch)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.B * self.world_size
        if self.cursor + step > self.n_windows:  # drop the ragged tail; start the next epoch
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        first = self.cursor + self.rank * self.B
        windows = self._order[first : first + self.B]
        self.cursor += step
        buf = torch.from_numpy(np.stack([self._window(w) for w in windows]).astype(np.int64))
        if self.device.type == "cuda":
            buf = buf.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            buf = buf.to(self.device)
        return buf[:, :-1], buf[:, 1:]

    def __iter__(self):
        while True:
            yield self.next_batch()

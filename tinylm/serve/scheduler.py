"""The generation scheduler: continuous batching over one KV cache, on a thread of its own.

Requests (`Sequence`s) wait in a bounded FIFO queue. A worker thread owns a batch KV cache of
`max_batch` rows. Before every decoding step it admits waiting sequences into free rows (each is
prefilled alone, straight into its row), then decodes one token for every sequence in the batch
with a single `GPT.decode_step` call, each row at its own position. A sequence leaves the batch the
moment it finishes, is cancelled (client gone, a stop string seen) or runs past its deadline; the
last row moves into the hole so the active rows stay contiguous and the step computes only them.
This is the continuous ("in-flight") batching of Orca (Yu et al., OSDI 2022) without paging: at
tinylm's sizes a decoding step is dominated by per-operator overhead, so sixteen rows cost little
more than one (bench/serve_throughput.py measures it). `max_batch=1` is a plain FIFO queue, the
sequential baseline.

Sampling is `tinylm.sample.sample_next` with one seeded generator per sequence, the same calls in
the same order as `tinylm.sample.generate`, so a request with a seed gets the tokens `tinylm
generate` gives for that seed. Text is released through `tinylm.sample.TextStream`, which never
splits a multi-byte UTF-8 character; stop strings are held back until they can no longer match.

The worker reports through `Sequence.emit(event)`, which the HTTP layer points at its event loop.
Events: ("text", piece) and ("done", finish_reason, completion_tokens) or ("error", status, message).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from tinylm.model import KVCache
from tinylm.sample import TextStream, sample_next


class QueueFull(RuntimeError):
    pass


@dataclass
class Sequence:
    """One generation: a prompt, its sampling settings, and where its events go."""

    prompt: list[int]
    max_tokens: int
    emit: Callable[[tuple], None]
    tok: object
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_ids: tuple = ()
    stop: tuple = ()  # stop strings
    deadline: float = float("inf")  # time.monotonic() after which the request is abandoned
    cancelled: bool = False  # set from any thread; the worker drops the sequence at its next step
    # worker state
    out: list = field(default_factory=list)
    pos: int = 0  # cache positions filled for this sequence
    held: str = ""  # text not yet released: it may be the start of a stop string

    def cancel(self) -> None:
        self.cancelled = True

    def start(self, device) -> None:
        seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**63)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.stream = TextStream(self.tok)

    def push(self, token: int, max_len: int) -> bool:
        """Take a sampled token; emit what text it releases. True when the sequence is finished."""
        self.out.append(token)
        if token in self.stop_ids:
            self._text(self.held)  # it did not become a stop string after all
            return self._finish("stop")
        text = self.held + self.stream.push(token)
        for s in self.stop:
            i = text.find(s)
            if i >= 0:
                self.held = ""
                self._text(text[:i])
                return self._finish("stop")
        keep = max((k for s in self.stop for k in range(len(s) - 1, 0, -1) if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        self._text(text[: len(text) - keep])
        if len(self.out) >= self.max_tokens or len(self.prompt) + len(self.out) >= max_len:
            # a character cut off by the limit is released as it decodes (U+FFFD), never dropped
            self._text(self.held + self.stream.text()[len(self.stream.shown):])
            self.held = ""
            return self._finish("length")
        return False

    def _text(self, piece: str) -> None:
        if piece:
            self.emit(("text", piece))

    def _finish(self, reason: str) -> bool:
        self.emit(("done", reason, len(self.out)))
        return True


class Scheduler:
    """Owns the model and one batch KV cache; serves `Sequence`s from a bounded queue."""

    def __init__(self, model, max_batch: int = 16, max_queue: int = 64):
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        p = next(model.parameters())
        self.device = p.device
        self.seq_len = model.cfg.seq_len
        self.cache = KVCache(model.cfg, max_batch, self.seq_len, p.device, p.dtype)
        self.queue: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []  # row i of the cache belongs to active[i]
        self.cv = threading.Condition()
        self.stopping = False
        self.steps = 0  # decoding steps run
        self.peak = 0  # the most sequences decoded in one step
        self.thread = threading.Thread(target=self._run, name="tinylm-scheduler", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ any thread
    def submit(self, seqs: list[Sequence]) -> None:
        """Queue sequences (all or none); QueueFull when they do not fit in the waiting room."""
        with self.cv:
            if len(self.queue) + len(seqs) > self.max_queue + max(0, self.max_batch - len(self.active)):
                raise QueueFull(f"{len(self.queue)} requests are waiting (limit {self.max_queue})")
            self.queue.extend(seqs)
            self.cv.notify()

    def stats(self) -> dict:
        with self.cv:
            return {"active": len(self.active), "queued": len(self.queue), "max_batch": self.max_batch,
                    "max_queue": self.max_queue, "steps": self.steps, "peak_batch": self.peak}

    def close(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self.cv:
                while not self.queue and not self.active and not self.stopping:
                    self.cv.wait()
                if self.stopping:
                    return
                admit = []
                while self.queue and len(self.active) + len(admit) < self.max_batch:
                    admit.append(self.queue.popleft())
            try:
                with torch.inference_mode():
                    for seq in admit:
                        self._prefill(seq)
                    if self.active:
                        self._step()
            except Exception as e:  # a bug must fail the requests in flight, not hang them
                with self.cv:
                    for seq in self.active + admit:
                        seq.emit(("error", 500, f"generation failed: {type(e).__name__}: {e}"))
                    self.active.clear()

    def _gone(self, seq: Sequence) -> bool:
        if seq.cancelled:
            return True
        if time.monotonic() > seq.deadline:
            seq.emit(("error", 504, "the request timed out before generation finished"))
            return True
        return False

    def _prefill(self, seq: Sequence) -> None:
        if self._gone(seq):
            return
        seq.start(self.device)
        row = len(self.active)
        view = self.cache.rows(row, row + 1)
        ids = torch.tensor([seq.prompt], dtype=torch.long, device=self.device)
        logits = self.model(ids, kv_cache=view)[:, -1]
        seq.pos = len(seq.prompt)
        token = int(sample_next(logits, seq.temperature, seq.top_k, seq.top_p, seq.generator))
        if not seq.push(token, self.seq_len):
            with self.cv:
                self.active.append(seq)

    def _step(self) -> None:
        n = len(self.active)
        last = torch.tensor([[s.out[-1]] for s in self.active], dtype=torch.long, device=self.device)  # (n, 1)
        pos = torch.tensor([s.pos for s in self.active], dtype=torch.long, device=self.device)  # (n,)
        logits = self.model.decode_step(last, pos, [k[:n] for k in self.cache.k], [v[:n] for v in self.cache.v])
        self.steps += 1
        self.peak = max(self.peak, n)
        done = []
        for i, seq in enumerate(self.active):
            seq.pos += 1
            if self._gone(seq):
                done.append(i)
                continue
            token = int(sample_next(logits[i : i + 1], seq.temperature, seq.top_k, seq.top_p, seq.generator))
            if seq.push(token, self.seq_len):
                done.append(i)
        # leaving rows are filled from the end, so rows 0..n-1 stay the active ones
        for i in reversed(done):
            self._release(i)
        # sequences cancelled while waiting leave the queue now, not when their turn comes
        with self.cv:
            if any(s.cancelled for s in self.queue):
                self.queue = collections.deque(s for s in self.queue if not s.cancelled)

    def _release(self, i: int) -> None:
        with self.cv:
            last = len(self.active) - 1
            if i != last:
                for buf in self.cache.k + self.cache.v:
                    buf[i].copy_(buf[last])
                self.active[i] = self.active[last]
            self.active.pop()

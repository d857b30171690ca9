"""A task is a set of conversations, optionally with a checker that scores a model's response.

SFT trains on a task's `train` split (mixtures of tasks: tinylm/tasks/mixture.py); evaluation and
reinforcement learning prompt with the `test` split and score the responses with `check`, so the
prompts and the reward are defined once.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field


@dataclass
class Example:
    messages: list[dict]  # the conversation; the last assistant turn is the reference answer
    meta: dict = field(default_factory=dict)  # e.g. the constraints a response must satisfy

    @property
    def prompt(self) -> list[dict]:
        """The conversation without its final assistant turn: what a model is asked."""
        return self.messages[:-1] if self.messages and self.messages[-1]["role"] == "assistant" else self.messages


@dataclass
class CheckResult:
    score: float  # in [0, 1]
    details: list[dict]  # one entry per constraint: {"constraint": ..., "score": ..., ...}


class Task:
    """Base class. Subclasses set `name` and implement `examples(split)`; checkable ones `check`."""

    name = "task"
    checkable = False

    def examples(self, split: str) -> list[Example]:
        raise NotImplementedError

    def check(self, example: Example, response: str) -> CheckResult:
        raise NotImplementedError(f"task {self.name} has no checker")

    def repair(self, example: Example, response: str) -> str | None:
        """A minimal edit of `response` that satisfies the example's constraints, or None where no
        mechanical edit exists (the default). Used to build training answers, never to score."""
        return None


def in_heldout(key: str, seed: int, percent: float) -> bool:
    """Deterministic split: the same key always lands on the same side for a given seed, whatever
    else is in the dataset (so adding data never moves an example between train and test)."""
    h = zlib.crc32(f"{seed}:{key}".encode("utf-8")) % 10_000
    return h < percent * 100

"""Tasks: conversations to train on, and checkable prompts to evaluate and reward.

    alpaca                     Alpaca instructions (local copy or tatsu-lab/alpaca)
    instructions               checkable instructions from TinyStories + gutenberg-children
    instructions-tinystories   ... from TinyStories only
    instructions-gutenberg     ... from gutenberg-children passages only
    repeat                     copying drills ("Repeat this sentence: ...") from the same stories and split
    jsonl:PATH                 your own {"messages": [...]} JSONL file
"""

from __future__ import annotations

from tinylm.tasks.base import CheckResult, Example, Task
from tinylm.tasks.conversations import Alpaca, JsonlConversations
from tinylm.tasks.instructions import Instructions, Repeat

TASKS = {
    "alpaca": lambda seed, **kw: Alpaca(seed=seed, **kw),
    "instructions": lambda seed, **kw: Instructions(seed=seed, **kw),
    "instructions-tinystories": lambda seed, **kw: Instructions(("tinystories",), seed=seed, **kw),
    "instructions-gutenberg": lambda seed, **kw: Instructions(("gutenberg-children",), seed=seed, **kw),
    "repeat": lambda seed, **kw: Repeat(seed=seed, **kw),
}


def get_task(name: str, seed: int = 0, heldout_percent: float = 0.0) -> Task:
    """A task by name; `heldout_percent` > 0 replaces the task's default held-out share."""
    kw = {"heldout_percent": heldout_percent} if heldout_percent else {}
    if name.startswith("jsonl:"):
        return JsonlConversations(name[len("jsonl:"):], seed=seed, **kw)
    if name.startswith("jsonl-lenient:"):
        return JsonlConversations(name[len("jsonl-lenient:"):], seed=seed, skip_bad=True, **kw)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}, jsonl:PATH, jsonl-lenient:PATH")
    return TASKS[name](seed, **kw)


__all__ = ["CheckResult", "Example", "Task", "get_task", "TASKS"]

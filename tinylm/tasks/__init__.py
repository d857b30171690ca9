"""Tasks: conversations to train on, and checkable prompts to evaluate and reward.

    alpaca                     Alpaca instructions (local copy or tatsu-lab/alpaca)
    instructions               checkable instructions from TinyStories + gutenberg-children
    instructions-tinystories   ... from TinyStories only
    instructions-gutenberg     ... from gutenberg-children passages only
    jsonl:PATH                 your own {"messages": [...]} JSONL file
"""

from __future__ import annotations

from tinylm.tasks.base import CheckResult, Example, Task
from tinylm.tasks.conversations import Alpaca, JsonlConversations
from tinylm.tasks.instructions import Instructions

TASKS = {
    "alpaca": lambda seed: Alpaca(seed=seed),
    "instructions": lambda seed: Instructions(seed=seed),
    "instructions-tinystories": lambda seed: Instructions(("tinystories",), seed=seed),
    "instructions-gutenberg": lambda seed: Instructions(("gutenberg-children",), seed=seed),
}


def get_task(name: str, seed: int = 0) -> Task:
    if name.startswith("jsonl:"):
        return JsonlConversations(name[len("jsonl:"):], seed=seed)
    if name.startswith("jsonl-lenient:"):
        return JsonlConversations(name[len("jsonl-lenient:"):], seed=seed, skip_bad=True)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}, jsonl:PATH, jsonl-lenient:PATH")
    return TASKS[name](seed)


__all__ = ["CheckResult", "Example", "Task", "get_task", "TASKS"]

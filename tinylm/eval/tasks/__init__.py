"""The evaluation task registry.

A task is a class decorated with `@register("name")` in any module of this package; modules are
discovered on first use, so a new task is a new file here and touches nothing else. Names with a
colon are parametrised: `bpb:PATH` is registered as the family `bpb:` and receives PATH.

    tinylm eval --list_tasks          every task with its chance level and protocol
"""

from __future__ import annotations

import importlib
import pkgutil

_REGISTRY: dict[str, type] = {}
_loaded = False

# Named suites (`--tasks default`): everything a full run scores, and a quick subset.
SUITES = {
    "default": ["bpb-tinystories", "bpb-gutenberg-children", "bpb-gutenberg-general", "wikitext", "lambada",
                "copy", "blimp", "hellaswag", "arc-easy", "arc-challenge", "piqa", "winogrande", "openbookqa", "copa",
                "mmlu", "mmlu-5shot", "mmlu-cloze", "mmlu-cloze-5shot", "ifeval", "ifeval-sampled", "samples"],
    "quick": ["bpb-tinystories", "wikitext", "copy", "blimp", "hellaswag", "arc-easy", "copa", "samples"],
}


def register(name: str):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"evaluation task {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _discover() -> None:
    global _loaded
    if not _loaded:
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
        _loaded = True


def available() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get(name: str):
    """An instance of the task called `name` (or `family:argument`)."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if ":" in name:
        family, arg = name.split(":", 1)
        if family + ":" in _REGISTRY:
            return _REGISTRY[family + ":"](arg)
    raise ValueError(f"unknown evaluation task {name!r}; available: {', '.join(available())}; "
                     f"suites: {', '.join(SUITES)}")


def expand(spec: str) -> list[str]:
    """'default' / 'quick' / 'a,b,c' -> task names (validated)."""
    names = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        names += SUITES.get(part, [part])
    for n in names:
        get(n)  # raises with the list of available tasks
    return list(dict.fromkeys(names))

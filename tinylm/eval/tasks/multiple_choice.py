"""Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness scores them.

Each choice's continuation is scored given its context; the prediction is the choice with the
highest log-likelihood (`acc`) and, where the harness reports it, the highest log-likelihood per
character of the choice text (`acc_norm`, the harness's `len(choice)` normalisation). Ties go to
the first choice (numpy argmax).

The local copies in the data directory are MosaicML's reformatted files ({query, choices, gold};
WinoGrande {context_options, continuation, gold}) and llama.cpp's HellaSwag text file. How each
maps onto the harness's prompt is written next to the task below; with no local file and network
access the original Hub dataset is used with the harness's own formatting.
"""

from __future__ import annotations

import bz2
import re
from dataclasses import dataclass, field

import numpy as np

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, find_data, hub_rows, mean_metric, read_jsonl


@dataclass
class MCDoc:
    contexts: list[str]  # one per choice (WinoGrande varies the context, not the continuation)
    continuations: list[str]  # what is scored, target delimiter included (" " + choice)
    choices: list[str]  # choice texts for acc_norm's length (the harness's doc_to_choice)
    gold: int
    meta: dict = field(default_factory=dict)


def mc_doc(context: str, choices: list[str], gold: int, meta: dict | None = None, delimiter: str = " ") -> MCDoc:
    if not 0 <= int(gold) < len(choices):
        raise ValueError(f"gold {gold} out of range for {len(choices)} choices")
    if not all(isinstance(c, str) and c for c in choices) or not isinstance(context, str):
        raise ValueError("choices must be non-empty strings")
    return MCDoc([context] * len(choices), [delimiter + c for c in choices], list(choices), int(gold), meta or {})


class MultipleChoiceTask(EvalTask):
    norm = True  # report acc_norm
    group_by: str | None = None  # meta key for the per-group breakdown

    def docs(self) -> tuple[list[MCDoc], int]:
        raise NotImplementedError

    def select(self, docs: list[MCDoc], limit: int) -> list[MCDoc]:
        return docs[:limit] if limit else docs

    def run(self, lm, limit: int = 0) -> dict:
        docs, malformed = self.docs()
        docs = self.select(docs, limit)
        pairs = [(c, k) for d in docs for c, k in zip(d.contexts, d.continuations)]
        lls = [ll for ll, _ in lm.loglikelihood(pairs, desc=self.name)]
        acc, acc_norm, groups, i = [], [], {}, 0
        for d in docs:
            ll = np.array(lls[i : i + len(d.choices)])
            i += len(d.choices)
            acc.append(float(np.argmax(ll) == d.gold))
            acc_norm.append(float(np.argmax(ll / np.array([float(len(c)) for c in d.choices])) == d.gold))
            if self.group_by:
                groups.setdefault(d.meta[self.group_by], []).append(acc[-1])
        metrics = {"acc": mean_metric(acc)}
        if self.norm:
            metrics["acc_norm"] = mean_metric(acc_norm)
        self.chance = float(np.mean([1 / len(d.choices) for d in docs])) if docs else None
        breakdown = {self.group_by: {g: {"acc": sum(v) / len(v), "n": len(v)} for g, v in sorted(groups.items())}} \
            if self.group_by else None
        return self.result(metrics, len(docs), malformed, breakdown)


def _mosaic(task: str, rel: str, parse_hub, hub: str, config: str | None, split: str, to_doc=None):
    """Docs from a MosaicML {query, choices, gold} file, else from the Hub."""
    path = find_data(task, rel, hub)
    if path is None:
        return [parse_hub(r) for r in hub_rows(task, hub, config, split, rel)], 0
    return read_jsonl(path, to_doc or (lambda r: mc_doc(r["query"], r["choices"], r["gold"])), task)


# ----------------------------------------------------------------------------------------------
def hellaswag_preprocess(text: str) -> str:
    """lm-evaluation-harness's hellaswag `preprocess`: strip, "[title]" -> ". ", drop other
    [bracketed] WikiHow markup, collapse double spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _capitalize_tail(ctx: str) -> str:
    """The harness builds ctx_a + " " + ctx_b.capitalize(). llama.cpp's file keeps the joined,
    uncapitalised ctx, so ctx_b is recovered as the fragment after the last sentence end and its
    first letter upper-cased when it starts lower-case. Differs from the harness only when ctx_b
    has inner capitals (str.capitalize lower-cases them)."""
    m = re.search(r"([.!?]\s+|:\s+)([a-z])([^.!?]*)$", ctx)
    if not m:
        return ctx
    return ctx[: m.start(2)] + m.group(2).upper() + ctx[m.end(2):]


@register("hellaswag")
class HellaSwag(MultipleChoiceTask):
    chance = 0.25
    protocol = ("lm-eval hellaswag: context '{activity_label}: {ctx_a} {Ctx_b}', continuation ' {ending}', "
                "preprocessed; acc and acc_norm; validation split (10,042)")

    def docs(self):
        path = find_data(self.name, "hellaswag/hellaswag_val_full.txt.bz2", "Rowan/hellaswag")
        if path is None:
            rows = hub_rows(self.name, "Rowan/hellaswag", None, "validation", "hellaswag/hellaswag_val_full.txt.bz2")
            return [mc_doc(hellaswag_preprocess(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize()),
                           [hellaswag_preprocess(e) for e in r["endings"]], int(r["label"])) for r in rows], 0
        # llama.cpp layout: 6 lines per item: "activity_label: ctx", gold label, 4 endings
        lines = bz2.open(path, "rt", encoding="utf-8").read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        docs, bad = [], 0
        for k in range(0, len(lines) - len(lines) % 6, 6):
            ctx, label, *endings = lines[k : k + 6]
            try:
                docs.append(mc_doc(hellaswag_preprocess(_capitalize_tail(ctx)),
                                   [hellaswag_preprocess(e) for e in endings], int(label)))
            except ValueError:
                bad += 1
        bad += (len(lines) % 6 != 0)
        if bad:
            print(f"warning: {self.name}: {bad} malformed item(s) in {path} skipped")
        return docs, bad


class _ARC(MultipleChoiceTask):
    chance = 0.25
    config = ""

    def docs(self):
        hub_parse = lambda r: mc_doc(f"Question: {r['question']}\nAnswer:", r["choices"]["text"],
                                     r["choices"]["label"].index(r["answerKey"]))
        # MosaicML's query is "Question: {question}"; the harness appends "\nAnswer:"
        return _mosaic(self.name, f"arc/{self.config.lower().replace('-', '_')}.jsonl", hub_parse,
                       "allenai/ai2_arc", self.config, "test",
                       lambda r: mc_doc(r["query"] + "\nAnswer:", r["choices"], r["gold"]))


@register("arc-easy")
class ARCEasy(_ARC):
    config = "ARC-Easy"
    protocol = "lm-eval arc_easy: 'Question: {question}\\nAnswer:' + ' {choice}'; acc, acc_norm; test split"


@register("arc-challenge")
class ARCChallenge(_ARC):
    config = "ARC-Challenge"
    protocol = "lm-eval arc_challenge: 'Question: {question}\\nAnswer:' + ' {choice}'; acc, acc_norm; test split"


@register("piqa")
class PIQA(MultipleChoiceTask):
    chance = 0.5
    protocol = "lm-eval piqa: 'Question: {goal}\\nAnswer:' + ' {solution}'; acc, acc_norm; validation split"

    def docs(self):
        hub_parse = lambda r: mc_doc(f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], r["label"])

        def local(r):  # MosaicML's query is "Question: {goal}\n"
            if not r["query"].endswith("\n"):
                raise ValueError("query does not end in a newline")
            return mc_doc(r["query"] + "Answer:", r["choices"], r["gold"])

        return _mosaic(self.name, "piqa/piqa.jsonl", hub_parse, "baber/piqa", None, "validation", local)


@register("openbookqa")
class OpenBookQA(MultipleChoiceTask):
    chance = 0.25
    protocol = "lm-eval openbookqa: '{question_stem}' + ' {choice}'; acc, acc_norm; test split"

    def docs(self):
        hub_parse = lambda r: mc_doc(r["question_stem"], r["choices"]["text"], r["choices"]["label"].index(r["answerKey"]))
        return _mosaic(self.name, "openbook_qa/openbook_qa.jsonl", hub_parse, "allenai/openbookqa", "main", "test")


def copa_context(premise: str, question: str) -> str:
    return premise.strip()[:-1] + " " + {"cause": "because", "effect": "therefore"}[question]


@register("copa")
class COPA(MultipleChoiceTask):
    chance = 0.5
    norm = False
    protocol = ("lm-eval copa: premise without its final period + ' because'/' therefore', continuation "
                "' {choice with a lower-case first letter}'; acc; validation split (100)")

    def docs(self):
        lower = lambda c: c[0].lower() + c[1:]
        hub_parse = lambda r: mc_doc(copa_context(r["premise"], r["question"]),
                                     [lower(r["choice1"]), lower(r["choice2"])], r["label"])
        # MosaicML's query is already "premise-without-period therefore|because", choices lower-cased
        return _mosaic(self.name, "copa/copa.jsonl", hub_parse, "aps/super_glue", "copa", "validation")


@register("winogrande")
class WinoGrande(MultipleChoiceTask):
    chance = 0.5
    norm = False
    protocol = ("lm-eval winogrande, partial scoring: context = sentence up to the blank with each option "
                "filled in, continuation = ' ' + the rest of the sentence, scored in both; acc; dev (1,267)")

    def docs(self):
        def local(r):
            opts = r["context_options"]
            if len(opts) != 2 or not 0 <= int(r["gold"]) < 2 or not r["continuation"].strip():
                raise ValueError("expected two context options, gold 0/1 and a continuation")
            cont = " " + r["continuation"].strip()
            return MCDoc(list(opts), [cont, cont], list(opts), int(r["gold"]))

        path = find_data(self.name, "winogrande/winogrande.jsonl", "allenai/winogrande")
        if path is None:
            docs = []
            for r in hub_rows(self.name, "allenai/winogrande", "winogrande_xl", "validation",
                              "winogrande/winogrande.jsonl"):
                i = r["sentence"].index("_")
                docs.append(local({"context_options": [r["sentence"][:i] + r["option1"], r["sentence"][:i] + r["option2"]],
                                   "continuation": r["sentence"][i + 1:], "gold": int(r["answer"]) - 1}))
            return docs, 0
        return read_jsonl(path, local, self.name)

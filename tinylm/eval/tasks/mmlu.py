"""MMLU (Hendrycks et al. 2021): 57 subjects, 14,042 test questions, 4 choices.

Two scorings, each 0-shot and 5-shot (the first k questions of the subject's dev split, the
harness's `first_n` sampler):
- `mmlu`, `mmlu-5shot`: lm-evaluation-harness's default `mmlu` task. The prompt is
      The following are multiple choice questions (with answers) about {subject}.\\n\\n
      [{shot question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: {letter}\\n\\n] x k
      {question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:
  and the prediction is the letter among " A", " B", " C", " D" with the highest log-likelihood.
- `mmlu-cloze`, `mmlu-cloze-5shot`: the harness's `mmlu_continuation`: "Question: {question}\\nAnswer:"
  followed by each answer text; acc and acc_norm (per-character). This is the scoring under
  which small models rise above chance first, since they need not map letters to answers.
Overall and per-category accuracies are micro-averages over questions (the harness's
`weight_by_size`); per-subject accuracies are in the breakdown. `--limit N` keeps the first N
questions of every subject. Contexts longer than the model's window are truncated from the left
(counted): with a 256-token model most 5-shot prompts lose their first shots.
"""

from __future__ import annotations

import csv

import numpy as np

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import TaskDataError, find_data, hub_rows
from tinylm.eval.tasks.multiple_choice import MCDoc, MultipleChoiceTask

# lm-evaluation-harness's subject -> category map (tasks/mmlu/_generate_configs.py)
CATEGORIES = {
    "stem": ["abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
             "college_computer_science", "college_mathematics", "college_physics", "computer_security",
             "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
             "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
             "high_school_physics", "high_school_statistics", "machine_learning"],
    "humanities": ["formal_logic", "high_school_european_history", "high_school_us_history",
                   "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                   "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                   "world_religions"],
    "social_sciences": ["econometrics", "high_school_geography", "high_school_government_and_politics",
                        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
                        "sociology", "us_foreign_policy"],
    "other": ["business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
              "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
              "professional_accounting", "professional_medicine", "virology"],
}
SUBJECTS = sorted(s for v in CATEGORIES.values() for s in v)
CATEGORY_OF = {s: c for c, v in CATEGORIES.items() for s in v}
LETTERS = ["A", "B", "C", "D"]


def read_split(split: str, subject: str, task: str) -> tuple[list[dict], int]:
    """Rows {question, choices, answer} of one subject; malformed rows are counted."""
    rel = f"mmlu/{split}/{subject}_{split}.csv"
    path = find_data(task, rel, "cais/mmlu")
    if path is None:
        return [{"question": r["question"], "choices": list(r["choices"]), "answer": int(r["answer"])}
                for r in hub_rows(task, "cais/mmlu", subject, split, rel)], 0
    rows, bad = [], 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["question", "choice0", "choice1", "choice2", "choice3", "answer"]:
            raise TaskDataError(f"{task}: {path}: unexpected header {header}")
        for r in reader:
            if len(r) != 6 or r[5] not in ("0", "1", "2", "3"):
                bad += 1
                continue
            rows.append({"question": r[0], "choices": r[1:5], "answer": int(r[5])})
    if bad:
        print(f"warning: {task}: {bad} malformed row(s) in {path} skipped")
    return rows, bad


def letter_text(row: dict) -> str:
    opts = "".join(f"\n{l}. {c}" for l, c in zip(LETTERS, row["choices"]))
    return f"{row['question'].strip()}{opts}\nAnswer:"


def cloze_text(row: dict) -> str:
    return f"Question: {row['question'].strip()}\nAnswer:"


class _MMLU(MultipleChoiceTask):
    chance = 0.25
    cloze = False
    group_by = "subject"

    @property
    def norm(self):
        return self.cloze  # letters all have length 1: acc_norm would equal acc

    def docs(self):
        docs, bad = [], 0
        for subject in SUBJECTS:
            test, b1 = read_split("test", subject, self.name)
            shots, b2 = read_split("dev", subject, self.name) if self.num_fewshot else ([], 0)
            bad += b1 + b2
            name = subject.replace("_", " ")
            if self.cloze:
                prefix = f"The following are questions (with answers) about {name}.\n\n"
                prefix += "".join(cloze_text(s) + " " + s["choices"][s["answer"]] + "\n\n" for s in shots[: self.num_fewshot])
            else:
                prefix = f"The following are multiple choice questions (with answers) about {name}.\n\n"
                prefix += "".join(letter_text(s) + " " + LETTERS[s["answer"]] + "\n\n" for s in shots[: self.num_fewshot])
            for row in test:
                choices = row["choices"] if self.cloze else LETTERS
                ctx = prefix + (cloze_text(row) if self.cloze else letter_text(row))
                docs.append(MCDoc([ctx] * 4, [" " + c for c in choices], list(choices), row["answer"],
                                  {"subject": subject}))
        return docs, bad

    def select(self, docs, limit):
        if not limit:
            return docs
        seen: dict[str, int] = {}
        out = []
        for d in docs:
            seen[d.meta["subject"]] = seen.get(d.meta["subject"], 0) + 1
            if seen[d.meta["subject"]] <= limit:
                out.append(d)
        return out

    def run(self, lm, limit: int = 0) -> dict:
        res = super().run(lm, limit)
        subjects = res["breakdown"]["subject"]
        cats = {}
        for c, subs in CATEGORIES.items():
            n = sum(subjects[s]["n"] for s in subs if s in subjects)
            if n:
                cats[c] = {"acc": sum(subjects[s]["acc"] * subjects[s]["n"] for s in subs if s in subjects) / n, "n": n}
        res["breakdown"] = {"category": cats, "subject": subjects}
        res["metrics"]["acc_subject_macro"] = {"value": float(np.mean([v["acc"] for v in subjects.values()])),
                                               "stderr": None, "ci95": None}
        return res


@register("mmlu")
class MMLU(_MMLU):
    protocol = "lm-eval mmlu (letter choice ' A'..' D' after 'Answer:'), 0-shot, test split; micro-averaged"


@register("mmlu-5shot")
class MMLU5(_MMLU):
    num_fewshot = 5
    protocol = "lm-eval mmlu (letter choice), 5-shot from the dev split (first 5), test split; micro-averaged"


@register("mmlu-cloze")
class MMLUCloze(_MMLU):
    cloze = True
    protocol = "lm-eval mmlu_continuation (answer text after 'Question: ...\\nAnswer:'), 0-shot; acc, acc_norm"


@register("mmlu-cloze-5shot")
class MMLUCloze5(_MMLU):
    cloze = True
    num_fewshot = 5
    protocol = "lm-eval mmlu_continuation (answer text), 5-shot from the dev split; acc, acc_norm"

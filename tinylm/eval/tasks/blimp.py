"""BLiMP (Warstadt et al. 2020): 67 paradigms x 1,000 minimal pairs of English sentences that
differ in one grammatical point. The model is right when it gives the grammatical sentence the
higher total log-probability: " " + sentence (the harness's default target delimiter) scored
from the document-start token (its empty-context rule); ties count as right, numpy argmax over
[good, bad]. This is where tiny
models differ from each other: chance is 50% and a 1M-parameter model already does much better.

Accuracy is over all 67,000 pairs (every paradigm has 1,000, so this equals the harness's mean
over the 67 `blimp_*` tasks); the breakdown gives each phenomenon (`linguistics_term`, 12 of
them) and each paradigm (`UID`). `--limit N` keeps the first N pairs of every paradigm.
"""

from __future__ import annotations

import json
import zipfile

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, find_data, hub_rows, mean_metric


def read_blimp(task: str) -> tuple[list[dict], int]:
    path = find_data(task, "blimp/BLiMP.zip", "nyu-mll/blimp")
    rows, bad = [], 0
    if path is None:
        from datasets import get_dataset_config_names

        for uid in get_dataset_config_names("nyu-mll/blimp"):
            rows += list(hub_rows(task, "nyu-mll/blimp", uid, "train", "blimp/BLiMP.zip"))
        return rows, 0
    with zipfile.ZipFile(path) as z:
        # the official zip also carries macOS resource forks (__MACOSX/._*.jsonl): not data
        names = sorted(n for n in z.namelist() if n.endswith(".jsonl") and not n.rsplit("/", 1)[-1].startswith("._"))
        if len(names) != 67:
            print(f"warning: {task}: {path} holds {len(names)} paradigm files, expected 67")
        for name in names:
            for line in z.read(name).decode("utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    if not (isinstance(r["sentence_good"], str) and isinstance(r["sentence_bad"], str)):
                        raise ValueError
                    r.setdefault("UID", name.rsplit("/", 1)[-1][:-6])
                    rows.append(r)
                except (json.JSONDecodeError, KeyError, ValueError):
                    bad += 1
    if bad:
        print(f"warning: {task}: {bad} malformed row(s) in {path} skipped")
    return rows, bad


@register("blimp")
class BLiMP(EvalTask):
    chance = 0.5
    protocol = "lm-eval blimp: log P(' ' + good) >= log P(' ' + bad) from the start token; 67 paradigms"

    def run(self, lm, limit: int = 0) -> dict:
        rows, bad = read_blimp(self.name)
        if limit:
            seen: dict[str, int] = {}
            kept = []
            for r in rows:
                seen[r["UID"]] = seen.get(r["UID"], 0) + 1
                if seen[r["UID"]] <= limit:
                    kept.append(r)
            rows = kept
        # lm-eval's blimp: doc_to_text "" and choices [good, bad] after the default target delimiter " "
        pairs = [p for r in rows for p in (("", " " + r["sentence_good"]), ("", " " + r["sentence_bad"]))]
        lls = [ll for ll, _ in lm.loglikelihood(pairs, desc=self.name)]
        correct = [float(lls[2 * i] >= lls[2 * i + 1]) for i in range(len(rows))]
        by = {"phenomenon": {}, "paradigm": {}}
        for r, c in zip(rows, correct):
            for key, field in (("phenomenon", "linguistics_term"), ("paradigm", "UID")):
                by[key].setdefault(r.get(field, "?"), []).append(c)
        breakdown = {k: {g: {"acc": sum(v) / len(v), "n": len(v)} for g, v in sorted(d.items())} for k, d in by.items()}
        return self.result({"acc": mean_metric(correct)}, len(rows), bad, breakdown)

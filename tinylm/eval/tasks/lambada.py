"""LAMBADA (Paperno et al. 2016), OpenAI's version (5,153 passages, the GPT-2 paper's file): the
last word of a passage that needs the whole passage to guess.

lm-evaluation-harness's `lambada_openai`: context = the passage up to its last space, target =
" " + last word; `acc` = the whole target is the greedy continuation (every token is the argmax),
`perplexity` = exp(-mean log-likelihood of the target). Chance is ~0 (open vocabulary).
"""

from __future__ import annotations

import math

from tinylm.eval.tasks import register
from tinylm.eval.tasks.base import EvalTask, find_data, hub_rows, mean_metric, point_metric, read_jsonl


@register("lambada")
class Lambada(EvalTask):
    chance = 0.0
    protocol = "lm-eval lambada_openai: last word after the last space; acc (greedy) and perplexity"

    def run(self, lm, limit: int = 0) -> dict:
        def parse(r):
            ctx, word = r["text"].rsplit(" ", 1)
            if not word:
                raise ValueError("empty last word")
            return ctx, " " + word

        path = find_data(self.name, "lambada/lambada_test.jsonl", "EleutherAI/lambada_openai")
        if path is None:
            docs, bad = [parse(r) for r in hub_rows(self.name, "EleutherAI/lambada_openai", "default", "test",
                                                         "lambada/lambada_test.jsonl")], 0
        else:
            docs, bad = read_jsonl(path, parse, self.name)
        docs = docs[:limit] if limit else docs
        res = lm.loglikelihood(docs, desc=self.name)
        lls = [ll for ll, _ in res]
        ppl = math.exp(-sum(lls) / max(len(lls), 1))
        return self.result({"acc": mean_metric([float(g) for _, g in res]), "perplexity": point_metric(ppl)},
                           len(docs), bad)

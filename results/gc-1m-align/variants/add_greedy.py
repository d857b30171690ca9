"""Add each prompt's greedy answer to an existing on-policy sample cache (the answers sample_and_score
with greedy=True would produce: same samples, plus the greedy decode), saved under the greedy key."""
import json, sys, time
import torch
from tinylm.chat import end_id, render_prompt
from tinylm.sample import sample_groups
from tinylm.tasks import get_task
from tinylm.train.align import load_policy
from tinylm.train.rollout import reward, training_prompts

src, ckpt, dst = sys.argv[1:4]
torch.set_num_threads(2)
d = json.load(open(src))
model, tok, _ = load_policy(ckpt, "cpu")
model.eval()
task = get_task("instructions", 0)
ex, _ = training_prompts(tok, task, "", d["key"]["n"], model.cfg.seq_len, 0)
stop = end_id(tok)
t0 = time.time()
for start in range(0, len(ex), 16):
    rows = d["scored"][start:start + 16]
    prompts = [render_prompt(tok, ex[r["example"]].prompt) for r in rows]
    modes = sample_groups(model, prompts, 1, d["key"]["max_new_tokens"], stop, 0.0)
    for r, m in zip(rows, modes):
        toks = m[0]
        ended = bool(toks) and toks[-1] == stop
        text = tok.decode(toks[:-1] if ended else toks)
        rw, s, why = reward(task, ex[r["example"]], text, d["key"]["guard"])
        for a in r["answers"]:
            a.setdefault("greedy", False)
        r["answers"].append({"text": text, "reward": rw, "score": s, "degenerate": why, "ended": ended, "greedy": True})
d["key"]["greedy"] = True
json.dump(d, open(dst, "w"))
g = [r["answers"][-1] for r in d["scored"]]
print(f"greedy answers for {len(g)} prompts in {time.time() - t0:.0f}s: ended {sum(a['ended'] for a in g) / len(g):.2f}, "
      f"degenerate {sum(a['degenerate'] is not None for a in g) / len(g):.2f}, mean score {sum(a['score'] for a in g) / len(g):.3f}")

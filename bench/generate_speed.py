"""Generation speed: tinylm's KV-cache decoding vs Hugging Face `generate`, same weights, same run.

For each preset a model is initialised once; the same weights are loaded into
transformers.LlamaForCausalLM (tinylm/interop/hf.py). Both decode greedily from the same random
16-token prompts for `--new` tokens (no early stop), in fp32, at batch 1 (`tinylm.sample.generate`,
the path `tinylm sample` / `chat` use) and batch 8 (`generate_batch`). The outputs are compared
token for token, so the speed is measured on identical work. Each measurement is repeated
`--rounds` times and the best kept.

Run: python bench/generate_speed.py [--presets 1m,10m] [--new 200]
Writes bench/results/generate_speed.json (needs `transformers`).
"""

from __future__ import annotations

import argparse
import time

import torch

from common import RESULTS, write_result
from tinylm.config import model_preset
from tinylm.interop.hf import hf_config, to_hf_state_dict
from tinylm.model import GPT
from tinylm.sample import generate, generate_batch


def best_time(fn, rounds: int):
    out, best = None, float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="1m,10m")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "generate_speed.json"))
    args = ap.parse_args()
    import transformers

    rows = []
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        cfg = model_preset(preset)
        model = GPT(cfg).eval()
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config(cfg, 0, [1], None))).eval()
        hf.load_state_dict(to_hf_state_dict(model.state_dict(), cfg), strict=False)
        if cfg.tie_embeddings:
            hf.tie_weights()
        for B in map(int, args.batches.split(",")):
            prompts = torch.randint(0, cfg.vocab_size, (B, args.prompt), generator=torch.Generator().manual_seed(B))
            if B == 1:
                ours, t_ours = best_time(lambda: torch.tensor([list(generate(model, prompts[0].tolist(), args.new,
                                                                             temperature=0))]), args.rounds)
            else:
                ours, t_ours = best_time(lambda: generate_batch(model, prompts, args.new, temperature=0), args.rounds)
            with torch.no_grad():
                theirs, t_hf = best_time(lambda: hf.generate(prompts, attention_mask=torch.ones_like(prompts),
                                                             max_new_tokens=args.new, min_new_tokens=args.new,
                                                             do_sample=False, pad_token_id=0)[:, args.prompt:],
                                         args.rounds)
            same = (ours == theirs).float().mean().item()
            row = {"preset": preset, "batch": B, "new_tokens": args.new,
                   "tinylm_tok_per_s": round(B * args.new / t_ours, 1), "hf_tok_per_s": round(B * args.new / t_hf, 1),
                   "speedup": round(t_hf / t_ours, 2), "identical_token_fraction": same}
            rows.append(row)
            print(f"{preset:>4} batch {B}: tinylm {row['tinylm_tok_per_s']:>8,.0f} tok/s, HF generate "
                  f"{row['hf_tok_per_s']:>8,.0f} tok/s -> {row['speedup']}x (identical tokens: {same:.1%})", flush=True)
    write_result("generate_speed", args.out, {
        "precision": "fp32", "decoding": "greedy", "prompt_tokens": args.prompt,
        "transformers": transformers.__version__, "rows": rows,
    })


if __name__ == "__main__":
    main()

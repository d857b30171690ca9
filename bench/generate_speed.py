"""Generation speed: tinylm's KV-cache decoding vs Hugging Face `generate`, same weights, same run.

For each preset a model is initialised once; the same weights are loaded into
transformers.LlamaForCausalLM (tinylm/interop/hf.py). All decode greedily from the same random
16-token prompts for `--new` tokens (no early stop), in fp32, at batch 1 (`tinylm.sample.generate`,
the path `tinylm sample` / `chat` / `ifeval` use) and batch 8 (`generate_batch`):

  tinylm            eager decoding (model.forward with the KV cache)
  tinylm compiled   `compile=True`: GPT.decode_step compiled once (static shapes, C++ wrapper)
  HF                `generate` with its default dynamic cache
  HF compiled       `generate` with a static cache and its own torch.compile of the forward
                    (`cache_implementation="static"`, CompileConfig enabled on CPU): HF's fastest mode

Outputs are compared token for token against HF's, so the speed is measured on identical work.
The four run one after another in each of `--rounds` rounds (interleaved, so a busy spell on this
shared machine hits all of them) and each keeps its best round; every round's time is recorded.
Compilation happens in a fresh Inductor cache directory, so the warm-up seconds are those of a
first run (later runs reuse Inductor's on-disk cache).

`--dtype bf16` casts both models' weights (and so the KV caches) to bf16: half the bytes read per
token. Tokens are then compared with HF in bf16 and may differ where two logits nearly tie.

Run: python bench/generate_speed.py [--presets 1m,10m] [--new 200] [--threads 1]
     python bench/generate_speed.py --dtype bf16 --batches 1 --threads 1 --out bench/results/generate_speed_bf16.json
Writes bench/results/generate_speed.json (needs `transformers`).
"""

from __future__ import annotations

import os
import tempfile

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # cold compiles (see above)

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from common import RESULTS, loadavg, write_result  # noqa: E402
from tinylm.config import model_preset  # noqa: E402
from tinylm.interop.hf import hf_config, to_hf_state_dict  # noqa: E402
from tinylm.model import GPT  # noqa: E402
from tinylm.sample import generate, generate_batch  # noqa: E402

IMPLS = ("tinylm", "tinylm_compiled", "hf", "hf_compiled")


def runner(impl, model, hf, prompts, new):
    B = prompts.size(0)
    if impl.startswith("tinylm"):
        compile = impl == "tinylm_compiled"
        if B == 1:
            return lambda: torch.tensor([list(generate(model, prompts[0].tolist(), new, temperature=0, compile=compile))])
        return lambda: generate_batch(model, prompts, new, temperature=0, compile=compile)
    from transformers import CompileConfig

    kw = {}
    if impl == "hf_compiled":
        cc = CompileConfig()  # HF's defaults (mode reduce-overhead); it compiles only on GPUs unless told:
        cc._compile_all_devices = True
        kw = dict(cache_implementation="static", compile_config=cc)

    def run():
        with torch.no_grad():
            return hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new,
                               min_new_tokens=new, do_sample=False, pad_token_id=0, **kw)[:, prompts.size(1):]
    return run


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="1m,10m")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for all four (0 = torch's default)")
    ap.add_argument("--out", default=str(RESULTS / "generate_speed.json"))
    args = ap.parse_args()
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = loadavg()
    print(f"load average {load_start}")
    rows, failures = [], []
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        cfg = model_preset(preset)
        model = GPT(cfg).eval()
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config(cfg, 0, [1], None))).eval()
        hf.load_state_dict(to_hf_state_dict(model.state_dict(), cfg), strict=False)
        if cfg.tie_embeddings:
            hf.tie_weights()
        if args.dtype == "bf16":
            model, hf = model.to(torch.bfloat16), hf.to(torch.bfloat16)
        for B in map(int, args.batches.split(",")):
            prompts = torch.randint(0, cfg.vocab_size, (B, args.prompt), generator=torch.Generator().manual_seed(B))
            fns = {impl: runner(impl, model, hf, prompts, args.new) for impl in IMPLS}
            outs, first, times = {}, {}, {impl: [] for impl in IMPLS}
            for impl in IMPLS:  # first call: compilation (for the compiled modes) + one generation
                try:
                    outs[impl], first[impl] = timed(fns[impl])
                except Exception as e:  # record a failing mode, keep measuring the others
                    failures.append({"preset": preset, "batch": B, "impl": impl, "error": f"{type(e).__name__}: {e}"[:500]})
                    print(f"  {preset} batch {B} {impl} failed: {failures[-1]['error'][:200]}", flush=True)
            for _ in range(args.rounds):
                for impl in outs:
                    outs[impl], dt = timed(fns[impl])
                    times[impl].append(round(dt, 4))
            row = {"preset": preset, "batch": B, "new_tokens": args.new}
            for impl in outs:
                best = min(times[impl])
                row[f"{impl}_tok_per_s"] = round(B * args.new / best, 1)
                row[f"{impl}_round_s"] = times[impl]
                row[f"{impl}_warmup_s"] = round(first[impl] - best, 1)  # compilation (and first-call) cost
                row[f"{impl}_identical_to_hf"] = (outs[impl] == outs["hf"]).float().mean().item() if "hf" in outs else None
            for impl in ("tinylm", "tinylm_compiled"):
                for peer in ("hf", "hf_compiled"):
                    if impl in outs and peer in outs:
                        row[f"{impl}_vs_{peer}"] = round(row[f"{impl}_tok_per_s"] / row[f"{peer}_tok_per_s"], 2)
            rows.append(row)
            print(f"{preset:>4} batch {B}: " + ", ".join(f"{i} {row[f'{i}_tok_per_s']:,.0f} tok/s" for i in outs)
                  + f"; compiled tinylm / HF = {row.get('tinylm_compiled_vs_hf')}x, / HF compiled = "
                  f"{row.get('tinylm_compiled_vs_hf_compiled')}x; identical tokens "
                  + ", ".join(f"{i} {row[f'{i}_identical_to_hf']:.0%}" for i in outs), flush=True)
    write_result("generate_speed", args.out, {
        "precision": args.dtype, "decoding": "greedy", "prompt_tokens": args.prompt, "threads": torch.get_num_threads(),
        "transformers": transformers.__version__, "loadavg_start": load_start, "rows": rows, "failures": failures,
    })


if __name__ == "__main__":
    main()

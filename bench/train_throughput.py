"""Training throughput: tinylm vs Hugging Face transformers.LlamaForCausalLM, same shapes, same run.

For each model preset, both implementations train on the same random token batches (batch B,
sequence T, the preset's vocabulary) with AdamW and gradient clipping, in each precision mode:
fp32, bf16 autocast, and bf16 autocast + torch.compile. tinylm is timed through
`Trainer.train_step`, the exact code the training loop runs; HF through `model(input_ids,
labels=...).loss`, its standard training path. The bf16 matmul peak is measured in the same run and
MFU is quoted against it. Each configuration is measured `--rounds` times, interleaved, and its
best round is kept (the machine is shared; the best round is the least disturbed one).

The machine is shared, so the matmul peak is measured before and after the models (the higher
is used) and the load averages before and after are recorded.

`--paired` is for a busy machine, where a configuration's speed changes from one minute to the
next: every model (tinylm and HF, each mode) is built and warmed up (compiled) first, then each
round times one optimizer step of each, one after the other, followed by a 0.5 s bf16 matmul peak
measurement. Ratios and MFU are computed within a round (MFU against the peak measured seconds
later under the same load) and their medians over the rounds are reported.

Run: python bench/train_throughput.py [--presets 1m,10m] [--seconds 8] [--rounds 2]
     python bench/train_throughput.py --paired --presets 30m --batch_size 8 --modes bf16,bf16+compile \
            --rounds 8 --threads 1 --out bench/results/train_throughput_30m.json
Writes bench/results/train_throughput.json (needs `transformers`: pip install 'tinylm[hf]').
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from tinylm.config import TrainConfig, model_preset
from tinylm.model import GPT, flops_per_token
from tinylm.runtime import Runtime, measure_matmul_peak
from tinylm.train.loop import Trainer
from common import RESULTS, RandomBatches, loadavg, write_result

MODES = ("fp32", "bf16", "bf16+compile")


def tinylm_step_fn(cfg, mode, B, tmp):
    torch.manual_seed(0)
    model = GPT(cfg)
    tc = TrainConfig(run_dir=tmp, batch_size=B, total_batch_tokens=B * cfg.seq_len, compile="compile" in mode,
                     dtype="fp32" if mode == "fp32" else "bf16", device="cpu")
    trainer = Trainer(Runtime.create("cpu", tc.dtype), tc, model, RandomBatches(B, cfg.seq_len, cfg.vocab_size))
    return lambda: trainer.train_step(1e-3)


def hf_step_fn(cfg, mode, B):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.hidden_dim,
                         num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                         num_key_value_heads=cfg.n_kv_head, max_position_embeddings=cfg.seq_len,
                         rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
                         attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM(hf_cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    fwd = torch.compile(model) if "compile" in mode else model
    data = RandomBatches(B, cfg.seq_len, cfg.vocab_size)
    use_bf16 = mode != "fp32"

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = fwd(input_ids=data.x, labels=data.y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def time_steps(step, seconds: float, tokens_per_step: int) -> dict:
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step()
    warmup = time.perf_counter() - t0
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    dt = time.perf_counter() - t0
    return {"tok_per_s": tokens_per_step * n / dt, "steps": n, "seconds": dt, "warmup_s": warmup}


def paired(args) -> None:
    import statistics

    B, T = args.batch_size, args.seq_len
    modes = args.modes.split(",")
    load_start, cpu = loadavg(), torch.device("cpu")
    out = {"batch_size": B, "seq_len": T, "method": "paired rounds (see --paired)", "threads": torch.get_num_threads(),
           "loadavg_start": load_start,
           "transformers": __import__("transformers").__version__, "presets": []}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            cfg = model_preset(preset, seq_len=T)
            fpt = flops_per_token(cfg)
            steps, warmup = {}, {}
            for mode in modes:
                for impl in ("tinylm", "hf"):
                    step = tinylm_step_fn(cfg, mode, B, tmp) if impl == "tinylm" else hf_step_fn(cfg, mode, B)
                    t0 = time.perf_counter()
                    for _ in range(2):  # warm-up (and compilation)
                        step()
                    warmup[f"{impl} {mode}"] = round(time.perf_counter() - t0, 1)
                    steps[f"{impl} {mode}"] = step
                    print(f"  {preset} {impl} {mode}: warm-up {warmup[f'{impl} {mode}']} s", flush=True)
            rounds = []
            for r in range(args.rounds):
                row = {"loadavg": loadavg()}
                for key, step in steps.items():
                    t0 = time.perf_counter()
                    step()
                    row[key] = B * T / (time.perf_counter() - t0)
                row["bf16_peak"] = measure_matmul_peak(cpu, torch.bfloat16, n=1024, seconds=0.5)
                rounds.append(row)
                print(f"  {preset} round {r}: " + ", ".join(f"{k} {row[k]:,.0f}" for k in steps)
                      + f" tok/s; bf16 peak {row['bf16_peak'] / 1e12:.3f} TFLOP/s; load {row['loadavg'][0]}", flush=True)
            med = {k: statistics.median(rw[k] for rw in rounds) for k in steps}
            ours = max((k for k in steps if k.startswith("tinylm")), key=med.get)
            hf = max((k for k in steps if k.startswith("hf")), key=med.get)
            summary = {
                "preset": preset, "params": GPT(cfg).num_params(), "flops_per_token": fpt,
                "median_tok_per_s": {k: round(v, 1) for k, v in med.items()},
                "tinylm_best_mode": ours, "hf_best_mode": hf,
                "speedup_vs_hf_best": round(statistics.median(rw[ours] / rw[hf] for rw in rounds), 2),
                "mfu_vs_bf16_peak": {k: round(statistics.median(rw[k] * fpt / rw["bf16_peak"] for rw in rounds), 4)
                                     for k in steps},
                "median_bf16_peak_flops": statistics.median(rw["bf16_peak"] for rw in rounds),
                "warmup_s": warmup, "rounds": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in rw.items()}
                                               for rw in rounds],
            }
            out["presets"].append(summary)
            print(f"{preset}: tinylm {ours} {med[ours]:,.0f} tok/s vs HF {hf} {med[hf]:,.0f} tok/s -> "
                  f"{summary['speedup_vs_hf_best']}x (median of per-round ratios); tinylm MFU "
                  f"{summary['mfu_vs_bf16_peak'][ours]:.1%} of the bf16 peak measured in each round")
            del steps
    write_result("train_throughput", args.out, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="1m,10m")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    ap.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    ap.add_argument("--paired", action="store_true", help="one step of each per round (for a busy machine)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.paired:
        return paired(args)
    B, T = args.batch_size, args.seq_len
    modes = args.modes.split(",")
    load_start = loadavg()

    def measure_peaks():
        return {str(dt).replace("torch.", ""): measure_matmul_peak(torch.device("cpu"), dt, n=1024, seconds=2.0)
                for dt in (torch.float32, torch.bfloat16)}

    peaks_start = measure_peaks()
    peaks = peaks_start
    print(f"measured matmul peak: fp32 {peaks['float32'] / 1e12:.3f} TFLOP/s, bf16 {peaks['bfloat16'] / 1e12:.3f} TFLOP/s")
    results, failures, best_by_preset, rounds_seen = [], [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            cfg = model_preset(preset, seq_len=T)
            fpt = flops_per_token(cfg)
            best: dict[tuple, dict] = {}
            for r in range(args.rounds):
                for mode in modes:
                    for impl in ("tinylm", "hf"):
                        try:
                            step = tinylm_step_fn(cfg, mode, B, tmp) if impl == "tinylm" else hf_step_fn(cfg, mode, B)
                            m = time_steps(step, args.seconds, B * T)
                        except Exception as e:  # e.g. a compiler failure: record it, keep measuring the rest
                            print(f"  {preset:>4} {impl:>6} {mode:<13} failed: {type(e).__name__}: {e}", flush=True)
                            failures.append({"preset": preset, "impl": impl, "mode": mode, "error": f"{type(e).__name__}: {e}"[:500]})
                            continue
                        key = (impl, mode)
                        rounds_seen.setdefault((preset, impl, mode), []).append(round(m["tok_per_s"], 1))
                        if key not in best or m["tok_per_s"] > best[key]["tok_per_s"]:
                            best[key] = m
                        print(f"  {preset:>4} {impl:>6} {mode:<13} round {r}: {m['tok_per_s']:>9,.0f} tok/s", flush=True)
            best_by_preset[preset] = best
    peaks_end = measure_peaks()
    peaks = {k: max(peaks_start[k], peaks_end[k]) for k in peaks_start}
    print(f"matmul peak after: fp32 {peaks_end['float32'] / 1e12:.3f}, bf16 {peaks_end['bfloat16'] / 1e12:.3f} TFLOP/s")
    for preset, best in best_by_preset.items():
        cfg = model_preset(preset, seq_len=T)
        fpt = flops_per_token(cfg)
        for (impl, mode), m in best.items():
            peak = peaks["float32" if mode == "fp32" else "bfloat16"]
            results.append({"preset": preset, "impl": impl, "mode": mode, "params": GPT(cfg).num_params(),
                            "flops_per_token": fpt, "tok_per_s": round(m["tok_per_s"], 1),
                            "round_tok_per_s": rounds_seen[(preset, impl, mode)],
                            "mfu_vs_bf16_peak": round(m["tok_per_s"] * fpt / peaks["bfloat16"], 4),
                            "mfu_vs_own_dtype_peak": round(m["tok_per_s"] * fpt / peak, 4),
                            "warmup_s": round(m["warmup_s"], 1)})

    summary = []
    for preset in args.presets.split(","):
        rows = [r for r in results if r["preset"] == preset]
        ours = max((r for r in rows if r["impl"] == "tinylm"), key=lambda r: r["tok_per_s"])
        hf = max((r for r in rows if r["impl"] == "hf"), key=lambda r: r["tok_per_s"])
        summary.append({"preset": preset, "tinylm_best_mode": ours["mode"], "tinylm_tok_per_s": ours["tok_per_s"],
                        "hf_best_mode": hf["mode"], "hf_tok_per_s": hf["tok_per_s"],
                        "speedup_vs_hf_best": round(ours["tok_per_s"] / hf["tok_per_s"], 2),
                        "tinylm_mfu_vs_bf16_peak": ours["mfu_vs_bf16_peak"]})
    write_result("train_throughput", args.out, {
        "batch_size": B, "seq_len": T, "matmul_peak_flops": peaks, "matmul_peak_flops_start": peaks_start,
        "matmul_peak_flops_end": peaks_end, "loadavg_start": load_start,
        "transformers": __import__("transformers").__version__, "results": results, "summary": summary,
        "failures": failures,
    })
    print(f"\n{'preset':>6} {'impl':>6} {'mode':<13} {'tok/s':>9} {'MFU(bf16 peak)':>15}")
    for r in results:
        print(f"{r['preset']:>6} {r['impl']:>6} {r['mode']:<13} {r['tok_per_s']:>9,.0f} {r['mfu_vs_bf16_peak']:>15.1%}")
    for s in summary:
        print(f"{s['preset']}: tinylm {s['tinylm_best_mode']} {s['tinylm_tok_per_s']:,.0f} tok/s vs HF "
              f"{s['hf_best_mode']} {s['hf_tok_per_s']:,.0f} tok/s -> {s['speedup_vs_hf_best']}x")


if __name__ == "__main__":
    main()

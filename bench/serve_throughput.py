"""Serving throughput: continuous batching against a one-at-a-time queue, same model, same run.

Two `tinylm serve` processes (one torch thread each) serve the same ~1M model: one with
`--max_batch 16` (continuous batching), one with `--max_batch 1` (a FIFO queue: the sequential
baseline). For 1, 4 and 16 concurrent clients (closed loop: each client sends its next request
when the previous one has finished), each streaming chat completions through the OpenAI API,
it measures requests/s, time to first token and tokens/s per client, and prints the ratio of
batched to sequential. The two servers are measured alternately at each level, so a change in
the machine's load hits both.

The model is the reference pipeline's SFT checkpoint when one exists (runs/default/sft as `make run` writes it,
or --model), else the 1m preset with random weights and the reference tokenizer: a random model
rarely emits its stop token, so every request runs to max_tokens, which is what a throughput
measurement wants anyway; the work per token is the same as a trained model's.

Run: OMP_NUM_THREADS=1 python bench/serve_throughput.py [--model runs/default/sft] [--max_tokens 64]
Writes bench/results/serve_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from tinylm.util import cpu_name

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "runs" / "default"  # what `make run` writes
PROMPTS = ["Write a short story about a dog named Max.", "Give three tips for staying healthy.",
           "Tell me a story about a cat who finds a ball.", "What is the capital of France?",
           "Write a poem about the sea.", "Continue this story: Once upon a time, Lily went to the park."]


def pick_model(arg: str, tmp: Path) -> tuple[str, str]:
    """(model path, description)."""
    if arg:
        return arg, arg
    import shutil

    from tinylm.train.checkpoint import list_checkpoints

    for run in (REF / "sft", REF):
        if list_checkpoints(run):  # a copy: that run may still be training and pruning checkpoints
            ckpt = list_checkpoints(run)[-1]
            shutil.copytree(ckpt, tmp / "model" / ckpt.name)
            return str(tmp / "model" / ckpt.name), f"{ckpt} (trained; copied when the benchmark started)"
    from tinylm.config import ModelConfig, model_preset, to_dict
    from tinylm.model import GPT
    from tinylm.tokenizer import Tokenizer
    from tinylm.train.checkpoint import save_checkpoint

    tok_path = REF / "tokenizer.json"
    if not tok_path.exists():
        sys.exit(f"no model: pass --model (no checkpoint or tokenizer under {REF})")
    tok = Tokenizer.load(tok_path)
    cfg = model_preset("1m")
    cfg = ModelConfig(**{**to_dict(cfg), "vocab_size": tok.vocab_size})
    torch.manual_seed(0)
    run = tmp / "random-1m"
    save_checkpoint(run, 0, GPT(cfg), meta={"config": {"model": to_dict(cfg)}, "stage": "random-init"},
                    tokenizer_path=tok_path)
    return str(run), f"1m preset, random weights, tokenizer {tok_path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, max_batch: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "serve", "--model", model, "--port", str(port),
                             "--max_batch", str(max_batch), "--max_queue", "256", "--threads", "1",
                             "--timeout", "900"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 600:  # importing torch alone takes a minute on a loaded machine
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            sys.exit(f"server exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    sys.exit("server did not become ready in 600 s")


async def one_request(client: httpx.AsyncClient, url: str, model_id: str, i: int, max_tokens: int) -> dict:
    body = {"model": model_id, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": True,
            "stream_options": {"include_usage": True}}
    for attempt in range(3):  # a keep-alive connection the server closed at that moment: send again
        try:
            return await _request(client, url, body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if attempt == 2:
                raise
            RETRIES.append(1)


RETRIES: list = []


async def _request(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    t0 = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk["choices"]:
                if first is None and c["delta"].get("content"):
                    first = time.perf_counter()
    end = time.perf_counter()
    return {"ttft": (first or end) - t0, "latency": end - t0, "tokens": tokens}


async def measure(url: str, model_id: str, clients: int, per_client: int, max_tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 2)) as client:
        await one_request(client, url, model_id, 0, 4)  # warm-up

        async def worker(c):
            return [await one_request(client, url, model_id, c * per_client + k, max_tokens) for k in range(per_client)]

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    ttft = sorted(r["ttft"] for r in results)
    return {
        "clients": clients, "requests": len(results), "wall_s": round(wall, 3),
        "requests_per_s": round(len(results) / wall, 3),
        "tokens_per_s_total": round(tokens / wall, 1),
        "tokens_per_s_per_client": round(statistics.mean(r["tokens"] / r["latency"] for r in results), 1),
        "ttft_median_s": round(statistics.median(ttft), 4),
        "ttft_p90_s": round(ttft[int(0.9 * (len(ttft) - 1))], 4),
        "mean_completion_tokens": round(tokens / len(results), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="model to serve (default: the reference SFT run, else random 1m)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--max_tokens", type=int, default=48)
    ap.add_argument("--requests", type=int, default=16, help="requests per level (split across the clients)")
    ap.add_argument("--max_batch", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "bench/results/serve_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, about = pick_model(args.model, tmp)
        print(f"model: {about}")
        servers = {"batched": start_server(model, args.max_batch, tmp / "batched.log"),
                   "sequential": start_server(model, 1, tmp / "sequential.log")}
        try:
            model_id = httpx.get(servers["batched"][1] + "/v1/models").json()["data"][0]["id"]
            rows = []
            for c in (int(x) for x in args.clients.split(",")):
                per = max(1, args.requests // c)
                row = {"clients": c}
                for mode in ("sequential", "batched"):
                    row[mode] = asyncio.run(measure(servers[mode][1], model_id, c, per, args.max_tokens))
                    row[mode]["load_avg_1m"] = round(os.getloadavg()[0], 2)
                s, b = row["sequential"], row["batched"]
                row["ratio_requests_per_s"] = round(b["requests_per_s"] / s["requests_per_s"], 2)
                row["ratio_ttft_median"] = round(b["ttft_median_s"] / s["ttft_median_s"], 2)
                rows.append(row)
                print(f"{c:>3} clients  sequential {s['requests_per_s']:6.2f} req/s  ttft {s['ttft_median_s'] * 1e3:7.0f} ms"
                      f"  {s['tokens_per_s_per_client']:6.1f} tok/s/client | batched {b['requests_per_s']:6.2f} req/s"
                      f"  ttft {b['ttft_median_s'] * 1e3:7.0f} ms  {b['tokens_per_s_per_client']:6.1f} tok/s/client"
                      f"  | ratio {row['ratio_requests_per_s']:.2f}x  (load {b['load_avg_1m']})")
                write(args.out, about, args, load_before, rows)  # after every level: a long run keeps what it measured
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    write(args.out, about, args, load_before, rows)
    print(f"wrote {args.out}")


def write(path: str, about: str, args, load_before, rows: list) -> None:
    out = {
        "benchmark": "serve_throughput", "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "model": about, "max_tokens": args.max_tokens, "max_batch": args.max_batch, "temperature": 0.8,
        "threads_per_process": 1, "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "retried_requests": len(RETRIES), "levels": rows,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(path).with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp_out, path)


if __name__ == "__main__":
    main()

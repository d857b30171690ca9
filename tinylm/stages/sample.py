"""Sample text from a checkpoint (KV cache, temperature / top-k / top-p, seeded).

Run: tinylm sample --checkpoint runs/default --prompt "Once upon a time" --num_samples 3
"""

from __future__ import annotations

import sys

from tinylm.config import SampleConfig
from tinylm.runtime import resolve_device
from tinylm.sample import TextStream, generate
from tinylm.train.checkpoint import load_model


def run(cfg: SampleConfig) -> list[str]:
    model, tok, meta = load_model(cfg.checkpoint, resolve_device(cfg.device))
    outs = []
    for i in range(cfg.num_samples):
        prompt_ids = tok.encode(cfg.prompt)
        sys.stdout.write(cfg.prompt)
        stream = TextStream(tok, prompt_ids)  # decoded with the prompt: a SentencePiece space survives
        ids = [tok.eot_id] + prompt_ids
        for t in generate(model, ids, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                          seed=cfg.seed + i, stop_ids=(tok.eot_id,), compile=cfg.compile):
            if t == tok.eot_id:
                break
            sys.stdout.write(stream.push(t))
            sys.stdout.flush()
        text = stream.text()
        sys.stdout.write(stream.rest() + ("\n" + "-" * 40 + "\n" if i + 1 < cfg.num_samples else "\n"))
        outs.append(cfg.prompt + text)
    return outs

"""Serve a model over HTTP: an OpenAI-compatible API and a chat page in the browser.

The model is read as `tinylm eval` reads it (a tinylm run or checkpoint, a llama2.c `.bin` with
its tokenizer, a Hugging Face Llama directory). The server starts at once and loads the model on a
thread; /health answers 503 until it is ready.

Run: tinylm serve --model runs/default/sft                 # then open http://127.0.0.1:8000/
     tinylm serve --model runs/default/sft --api_key KEY --port 8080 --max_batch 16
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import torch

from tinylm.config import ServeConfig
from tinylm.runtime import resolve_device


def _loader(cfg: ServeConfig):
    def load():
        from tinylm.eval import lm as lm_io

        lm = lm_io.load(cfg.model, cfg.tokenizer, resolve_device(cfg.device))
        if lm.model is None:
            raise ValueError(f"model {cfg.model}: serving needs a Llama-architecture model (tinylm, llama2.c or "
                             f"a Hugging Face Llama), not {lm.info.get('kind')}")
        return lm.model, lm.tok, lm.info["name"]
    return load


def run(cfg: ServeConfig) -> None:
    try:
        import uvicorn

        from tinylm.serve.app import create_app
    except ImportError as e:
        raise ValueError(f"tinylm serve needs starlette and uvicorn ({e.name} is missing): "
                         "pip install 'tinylm[serve]'") from e
    if not Path(cfg.model).exists():
        raise FileNotFoundError(f"--model {cfg.model}: no such file or directory")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        loopback = ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:
        loopback = cfg.host == "localhost"
    if not loopback and not cfg.api_key:
        print(f"serve: listening on {cfg.host}, reachable from other machines, without --api_key")
    server = None

    def stop():
        if server is not None:
            server.should_exit = True

    app = create_app(_loader(cfg), cfg, on_fail=stop)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           timeout_keep_alive=30, timeout_graceful_shutdown=3))
    print(f"serve: loading {cfg.model}; chat page and API at http://{cfg.host}:{cfg.port}/ (batch {cfg.max_batch}, "
          f"queue {cfg.max_queue})")
    server.run()
    error = app.state.serve.error
    if error is not None:
        raise error

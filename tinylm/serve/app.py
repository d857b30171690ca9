"""The HTTP server: an OpenAI-compatible API and a chat page over the generation scheduler.

    POST /v1/chat/completions   messages -> the chat template (tinylm.chat.render_prompt) -> reply
    POST /v1/completions        prompt text -> continuation (as tinylm.sample.complete)
    GET  /v1/models             the one model served, with its context length
    GET  /health                200 when ready, 503 while the model loads
    GET  /                      the chat page (static/chat.html: one self-contained file)

Starlette on uvicorn: the ASGI pieces an OpenAI-style server needs (routing, streaming responses,
disconnect detection, a lifespan to load the model in) without FastAPI's pydantic layer, whose
automatic 422 errors would have to be rewritten into OpenAI's error shape anyway; requests are
checked by hand in tinylm/serve/protocol.py so every bad field gets one clear 4xx message.

The event loop never runs the model: tokenizing runs in the thread pool and generation on the
scheduler's thread (tinylm/serve/scheduler.py), which reports back with call_soon_threadsafe.
A client that disconnects cancels its sequences, which leave the batch at the next step.

Run: tinylm serve --model runs/default/sft [--port 8000] [--api_key KEY]
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tinylm.chat import ChatFormatError, end_id, render_prompt
from tinylm.serve import protocol as P
from tinylm.serve.scheduler import QueueFull, Scheduler, Sequence

PAGE = Path(__file__).parent / "static" / "chat.html"


class ServerState:
    """The model, its scheduler and the limits; `ready` once the loader thread has finished."""

    def __init__(self, loader, cfg, on_fail=None):
        self.loader, self.cfg, self.on_fail = loader, cfg, on_fail
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.scheduler: Scheduler | None = None
        self.created = int(time.time())

    def load(self) -> None:
        try:
            model, tok, name = self.loader()
            self.model, self.tok, self.name = model, tok, name
            self.seq_len = model.cfg.seq_len
            self.max_tokens_cap = min(self.cfg.max_tokens or self.seq_len, self.seq_len)
            self.fingerprint = "fp_" + hashlib.sha256(name.encode()).hexdigest()[:10]
            self.scheduler = Scheduler(model, self.cfg.max_batch, self.cfg.max_queue)
            self.ready.set()
        except BaseException as e:  # reported by the stage after the server stops
            self.error = e
            if self.on_fail:
                self.on_fail()


def _ready(request: Request) -> ServerState:
    state: ServerState = request.app.state.serve
    if not state.ready.is_set():
        raise P.APIError(503, "the model is still loading; retry shortly", type="server_error",
                         code="model_loading", headers={"Retry-After": "2"})
    return state


def _authorize(request: Request, state: ServerState) -> None:
    key = state.cfg.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    if not header:
        raise P.APIError(401, "You didn't provide an API key. Send it in an Authorization header: "
                              "'Authorization: Bearer YOUR_KEY'.", code="missing_api_key")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise P.APIError(401, "Incorrect API key provided.", code="invalid_api_key")


async def _read_json(request: Request, limit: int) -> dict:
    too_big = P.APIError(413, f"the request body is larger than this server's limit of {limit:,} bytes",
                         code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return P.parse_body(bytes(body))


def _check_model(body: dict, state: ServerState) -> None:
    model = body.get("model")
    if model is not None and model != state.name:
        raise P.APIError(404, f"The model {json.dumps(model)[:80]} does not exist; this server serves "
                              f"{state.name!r} (GET /v1/models)", param="model", code="model_not_found")


async def _events(request: Request, queue: asyncio.Queue, seqs: list[Sequence], deadline: float, watch: bool):
    """Lists of (choice index, event), each what has arrived since the last one, until every
    sequence is done (a stream then writes one packet per list, not one per token). Cancels every
    sequence on the way out: client gone, timeout, error, or a caller that stopped reading."""
    gone = asyncio.ensure_future(_disconnected(request)) if watch else None
    left = len(seqs)
    try:
        while left:
            get = asyncio.ensure_future(queue.get())
            waiting = {get} | ({gone} if gone else set())
            done, _ = await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                if gone is not None and gone in done:
                    return  # nobody to answer
                raise P.APIError(504, f"the request took longer than this server's timeout of "
                                      f"{request.app.state.serve.cfg.timeout:g} s", type="server_error", code="timeout")
            batch = [get.result()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            for i, ev in batch:
                if ev[0] == "error":
                    raise P.APIError(ev[1], ev[2], type="server_error", code="timeout" if ev[1] == 504 else None)
                left -= ev[0] == "done"
            yield batch
    finally:
        for s in seqs:
            s.cancel()
        if gone is not None:
            gone.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _emit(loop, queue, index, event) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, (index, event))
    except RuntimeError:  # the loop has closed (server shutting down)
        pass


async def _generate(request: Request, state: ServerState, prompts: list[list[int]], sp: P.Sampling,
                    stop_ids: tuple, chat: bool, prompt_tokens: int) -> Response:
    cfg = state.cfg
    longest = max(len(p) for p in prompts)
    err = P.context_error(state.seq_len, longest, sp.max_tokens, "messages" if chat else "prompt")
    if err:
        raise err
    max_tokens = sp.max_tokens or min(state.max_tokens_cap, state.seq_len - longest)
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    deadline = time.monotonic() + cfg.timeout
    seqs = []
    for p in prompts:
        for j in range(sp.n):
            i = len(seqs)
            seqs.append(Sequence(prompt=p, max_tokens=max_tokens, emit=partial(_emit, loop, queue, i), tok=state.tok,
                                 temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k,
                                 seed=None if sp.seed is None else sp.seed + j, stop_ids=stop_ids, stop=sp.stop,
                                 deadline=deadline))
    try:
        state.scheduler.submit(seqs)
    except QueueFull as e:
        raise P.APIError(503, f"the server is busy: {e}; retry later", type="server_error", code="overloaded",
                         headers={"Retry-After": "1"})
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    head = (rid, int(time.time()), state.name, state.fingerprint)
    texts, reasons, counts = [""] * len(seqs), [None] * len(seqs), [0] * len(seqs)

    if not sp.stream:
        async for batch in _events(request, queue, seqs, deadline, watch=True):
            for i, ev in batch:
                if ev[0] == "text":
                    texts[i] += ev[1]
                else:
                    reasons[i], counts[i] = ev[1], ev[2]
        if None in reasons:  # the client went away; nothing to send
            return Response(status_code=499)
        make = P.chat_completion if chat else P.completion
        return JSONResponse(make(*head, texts, reasons, P.usage(prompt_tokens, sum(counts))))

    iu = sp.include_usage

    def chunk(i, text=None, finish=None, role=False, use=None):
        if chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
            return P.sse(P.chat_chunk(*head, i, delta, finish, use, iu))
        return P.sse(P.completion_chunk(*head, i, text or "", finish, use, iu))

    async def body():
        try:
            if chat:
                for i in range(len(seqs)):
                    yield chunk(i, role=True)
            async for batch in _events(request, queue, seqs, deadline, watch=False):
                out = []
                for i, ev in batch:
                    if ev[0] == "text":
                        out.append(chunk(i, ev[1]))
                    else:
                        counts[i] = ev[2]
                        out.append(chunk(i, finish=ev[1]))
                yield b"".join(out)
            if iu:
                yield chunk(None, use=P.usage(prompt_tokens, sum(counts)))
            yield P.sse("[DONE]")
        except P.APIError as e:  # after the 200 has gone out, an error can only be an event
            yield P.sse(e.body())

    # Starlette's StreamingResponse cancels `body` when the client disconnects; _events then
    # cancels the sequences, and the scheduler frees their rows at its next step.
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def chat_completions(request: Request) -> Response:
    state = _ready(request)
    _authorize(request, state)
    body = await _read_json(request, state.cfg.max_body_bytes)
    _check_model(body, state)
    sp = P.parse_sampling(body, state.cfg.max_n, state.max_tokens_cap)
    messages = P.parse_messages(body)
    try:
        prompt = await run_in_threadpool(render_prompt, state.tok, messages)
        stop = (end_id(state.tok),)
    except ChatFormatError as e:
        raise P.APIError(400, str(e), param="messages", code="invalid_value")
    return await _generate(request, state, [prompt], sp, stop, chat=True, prompt_tokens=len(prompt))


async def completions(request: Request) -> Response:
    state = _ready(request)
    _authorize(request, state)
    body = await _read_json(request, state.cfg.max_body_bytes)
    _check_model(body, state)
    sp = P.parse_sampling(body, state.cfg.max_n, state.max_tokens_cap)
    texts = P.parse_prompts(body)
    tok = state.tok
    # a prompt starts a new document, as every training document did (tinylm.sample.complete)
    prompts = await run_in_threadpool(lambda: [[tok.eot_id] + tok.encode(t) for t in texts])
    return await _generate(request, state, prompts, sp, (tok.eot_id,), chat=False,
                           prompt_tokens=sum(len(p) for p in prompts))


def _model_card(state: ServerState) -> dict:
    return {"id": state.name, "object": "model", "created": state.created, "owned_by": "tinylm",
            "context_length": state.seq_len, "chat": state.tok.has_chat_tokens()}


async def models(request: Request) -> Response:
    state = _ready(request)
    _authorize(request, state)
    return JSONResponse({"object": "list", "data": [_model_card(state)]})


async def model(request: Request) -> Response:
    state = _ready(request)
    _authorize(request, state)
    _check_model({"model": request.path_params["model"]}, state)
    return JSONResponse(_model_card(state))


async def health(request: Request) -> Response:
    state: ServerState = request.app.state.serve
    if state.error is not None:
        return JSONResponse({"status": "failed", "error": str(state.error)}, status_code=500)
    if not state.ready.is_set():
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ok", "model": state.name, **state.scheduler.stats()})


async def page(request: Request) -> Response:
    return HTMLResponse(request.app.state.page)


async def _api_error(request: Request, exc: P.APIError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no route {request.method} {request.url.path}", 405: f"method {request.method} is not allowed "
               f"on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(P.APIError(exc.status_code, message).body(), status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(P.APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error").body(),
                        status_code=500)


def create_app(loader, cfg, on_fail=None) -> Starlette:
    """`loader()` -> (GPT, Tokenizer, model id) runs on a thread after start-up; /health answers
    503 until it returns. `cfg` is a ServeConfig (limits, API key, batch and queue sizes)."""
    state = ServerState(loader, cfg, on_fail)

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=state.load, name="tinylm-load", daemon=True).start()
        yield
        if state.scheduler is not None:
            state.scheduler.close()

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/models/{model:path}", model),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={P.APIError: _api_error, HTTPException: _http_error, Exception: _server_error})
    app.state.serve = state
    app.state.page = PAGE.read_text(encoding="utf-8")
    return app

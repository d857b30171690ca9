"""The OpenAI API's request checks and response shapes, as pure functions of dicts.

Requests are validated field by field; every problem becomes an `APIError` that the app answers
in OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, with a 4xx status.
Responses and streamed chunks carry exactly the fields the OpenAI API gives them (chat
completions, chunks, legacy completions, usage, finish_reason "stop" / "length").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def parse_body(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})",
                       code="invalid_utf8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(400, f"the request body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})",
                       code="invalid_json")
    if not isinstance(obj, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(obj).__name__}", code="invalid_json")
    return obj


@dataclass
class Sampling:
    """What a request asks of generation, checked."""

    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    n: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def _number(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise APIError(400, f"'{name}' must be a number, got {json.dumps(v)[:40]}", param=name, code="invalid_type")
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise APIError(400, f"'{name}' must be in {bounds}, got {v}", param=name, code="invalid_value")
    return float(v)


def _integer(body: dict, name: str, lo: int | None = None, hi: int | None = None, cap_hint: str = "") -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise APIError(400, f"'{name}' must be an integer, got {json.dumps(v)[:40]}", param=name, code="invalid_type")
    if lo is not None and v < lo:
        raise APIError(400, f"'{name}' must be at least {lo}, got {v}", param=name, code="invalid_value")
    if hi is not None and v > hi:
        raise APIError(400, f"'{name}' must be at most {hi}{cap_hint}, got {v}", param=name, code="invalid_value")
    return v


def parse_sampling(body: dict, max_n: int, max_tokens_cap: int) -> Sampling:
    max_tokens = _integer(body, "max_tokens", 1, max_tokens_cap, " on this server")
    if max_tokens is None:  # the chat API's newer name
        max_tokens = _integer(body, "max_completion_tokens", 1, max_tokens_cap, " on this server")
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stop = tuple(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of at most 4 strings", param="stop", code="invalid_type")
    if any(not s for s in stop):
        raise APIError(400, "'stop' strings must not be empty", param="stop", code="invalid_value")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream", code="invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options", code="invalid_type")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise APIError(400, "'seed' must be an integer in [0, 2^63)", param="seed", code="invalid_type")
    return Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=_integer(body, "top_k", 0) or 0,  # not in OpenAI's API; vLLM's extension
        n=_integer(body, "n", 1, max_n, " on this server") or 1,
        seed=seed, stop=stop, stream=stream, include_usage=bool(options.get("include_usage")))


def _check_text(text: str, where: str, param: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(400, f"{where} is not valid Unicode (a lone surrogate {text[e.start]!r} at character {e.start})",
                       param=param, code="invalid_utf8")
    return text


def parse_messages(body: dict) -> list[dict]:
    """OpenAI messages -> tinylm's [{"role", "content": str}]; content may be a list of text parts."""
    msgs = body.get("messages")
    if msgs is None:
        raise APIError(400, "'messages' is required", param="messages", code="missing_required_parameter")
    if not isinstance(msgs, list):
        raise APIError(400, "'messages' must be a list of {role, content} objects", param="messages", code="invalid_type")
    if not msgs:
        raise APIError(400, "'messages' must not be empty", param="messages", code="invalid_value")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(400, f"{where} must be an object with 'role' and 'content'", param=where, code="invalid_type")
        role = m.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ROLES:
            raise APIError(400, f"{where}.role {json.dumps(role)[:40]} is not supported; use one of "
                                f"{', '.join(ROLES)}", param=f"{where}.role", code="invalid_value")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise APIError(400, f"{where}.content[{j}] must be a text part {{\"type\": \"text\", \"text\": ...}}",
                                   param=f"{where}.content", code="invalid_type")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise APIError(400, f"{where}.content must be a string or a list of text parts",
                           param=f"{where}.content", code="invalid_type")
        out.append({"role": role, "content": _check_text(content, f"{where}.content", f"{where}.content")})
    return out


def parse_prompts(body: dict) -> list[str]:
    p = body.get("prompt")
    if p is None:
        raise APIError(400, "'prompt' is required", param="prompt", code="missing_required_parameter")
    if isinstance(p, str):
        p = [p]
    if not isinstance(p, list) or not p or not all(isinstance(s, str) for s in p):
        raise APIError(400, "'prompt' must be a string or a non-empty list of strings (token-id prompts are not "
                            "supported)", param="prompt", code="invalid_type")
    return [_check_text(s, f"prompt[{i}]", "prompt") for i, s in enumerate(p)]


def context_error(seq_len: int, prompt_tokens: int, max_tokens: int | None, what: str) -> APIError | None:
    """OpenAI's context_length_exceeded error, naming the tokens of each part, or None if it fits."""
    if prompt_tokens >= seq_len:
        return APIError(400, f"This model's maximum context length is {seq_len} tokens. However, your {what} "
                             f"resulted in {prompt_tokens} tokens. Please reduce the length of the {what}.",
                        param=what, code="context_length_exceeded")
    if max_tokens is not None and prompt_tokens + max_tokens > seq_len:
        return APIError(400, f"This model's maximum context length is {seq_len} tokens. However, you requested "
                             f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {what}, {max_tokens} in "
                             f"the completion). Please reduce the length of the {what} or completion.",
                        param=what, code="context_length_exceeded")
    return None


# ---------------------------------------------------------------------------------- responses
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(id: str, created: int, model: str, fp: str, texts: list[str], reasons: list[str],
                    use: dict) -> dict:
    return {"id": id, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": fp,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t, "refusal": None},
                         "logprobs": None, "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons))],
            "usage": use}


def chat_chunk(id: str, created: int, model: str, fp: str, index: int | None, delta: dict | None = None,
               finish_reason: str | None = None, use: dict | None = None, include_usage: bool = False) -> dict:
    """One `chat.completion.chunk`; index None gives the usage-only chunk (choices empty)."""
    chunk = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": fp,
             "choices": [] if index is None else [{"index": index, "delta": delta or {}, "logprobs": None,
                                                   "finish_reason": finish_reason}]}
    if include_usage:
        chunk["usage"] = use
    return chunk


def completion(id: str, created: int, model: str, fp: str, texts: list[str], reasons: list[str], use: dict) -> dict:
    return {"id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": fp,
            "choices": [{"text": t, "index": i, "logprobs": None, "finish_reason": r}
                        for i, (t, r) in enumerate(zip(texts, reasons))],
            "usage": use}


def completion_chunk(id: str, created: int, model: str, fp: str, index: int | None, text: str = "",
                     finish_reason: str | None = None, use: dict | None = None, include_usage: bool = False) -> dict:
    chunk = {"id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": fp,
             "choices": [] if index is None else [{"text": text, "index": index, "logprobs": None,
                                                   "finish_reason": finish_reason}]}
    if include_usage:
        chunk["usage"] = use
    return chunk


def sse(obj) -> bytes:
    """One server-sent event; `[DONE]` ends the stream, as OpenAI's does."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode("utf-8")

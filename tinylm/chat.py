"""The chat template: one function turns a conversation into token ids and a loss mask.

A conversation is a list of messages `{"role": "system" | "user" | "assistant", "content": str}`,
rendered as

    <|endoftext|> [<|system|> text <|end|>] <|user|> text <|end|> <|assistant|> text <|end|> ...

Role markers and <|end|> are special tokens inserted by id; message text is encoded as plain text
(so a message cannot forge a role marker). The loss mask is 1 exactly on the assistant's text
tokens and the <|end|> that closes each assistant turn (the model must learn to stop), and 0 on
everything else, the assistant marker included: the prompt is given, never learned.

The same template serves SFT, chat, evaluation and export; as a Jinja chat template:

    {{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}
    {% if add_generation_prompt %}<|assistant|>{% endif %}
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant")
END = "<|end|>"


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered (unknown role, empty assistant turn, ...)."""


def _role_ids(tok) -> dict[str, int]:
    if not tok.has_chat_tokens():
        raise ChatFormatError(
            f"tokenizer {tok.path or ''} lacks the chat tokens <|system|> <|user|> <|assistant|> <|end|>; "
            "train the base model with a tokenizer from `tinylm tokenizer`, which reserves them"
        )
    return {r: tok.hf.token_to_id(f"<|{r}|>") for r in ROLES} | {"end": tok.hf.token_to_id(END)}


def validate(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise ChatFormatError("a conversation is a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatFormatError(f"message {i} is not a {{'role': ..., 'content': ...}} object")
        if m["role"] not in ROLES:
            raise ChatFormatError(f"message {i} has unknown role {m['role']!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise ChatFormatError(f"message {i} content is not a string")
        if m["role"] == "system" and i != 0:
            raise ChatFormatError(f"message {i}: a system message may only come first")
        # after an optional system message, turns alternate user, assistant, user, ...
        expected = "user" if (i - int(messages[0].get("role") == "system")) % 2 == 0 else "assistant"
        if m["role"] != "system" and m["role"] != expected:
            raise ChatFormatError(f"message {i} has role {m['role']!r} where {expected!r} belongs "
                                  "(turns alternate user, assistant, ... after an optional system message)")
        if m["role"] == "assistant" and not m["content"].strip():
            raise ChatFormatError(f"message {i}: empty assistant turn")


def render_conversation(tok, messages) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 = trained on) of a whole conversation."""
    validate(messages)
    ids_of = _role_ids(tok)
    ids, mask = [tok.eot_id], [0]
    for m in messages:
        content = tok.encode(m["content"])
        learn = int(m["role"] == "assistant")
        ids += [ids_of[m["role"]], *content, ids_of["end"]]
        mask += [0] + [learn] * (len(content) + 1)
    return ids, mask


def render_prompt(tok, messages) -> list[int]:
    """Token ids that ask the model for the next assistant turn (history + <|assistant|>)."""
    if messages:
        validate(messages)
    if messages and messages[-1]["role"] == "assistant":
        raise ChatFormatError("the conversation already ends with an assistant turn")
    ids_of = _role_ids(tok)
    ids = [tok.eot_id]
    for m in messages:
        ids += [ids_of[m["role"]], *tok.encode(m["content"]), ids_of["end"]]
    return ids + [ids_of["assistant"]]


def end_id(tok) -> int:
    return _role_ids(tok)["end"]


def stop_ids(tok) -> tuple[int, ...]:
    """Tokens that end an assistant turn: <|end|>, and <|endoftext|> should a model emit it. The
    Hugging Face export lists the same ids as `eos_token_id` in its generation config."""
    return (end_id(tok), tok.eot_id)


def jinja_template(mark: str = "") -> str:
    """The template above for `tokenizer_config.json` (Hugging Face `apply_chat_template`).

    `mark` prefixes the control tokens the template writes: the Hugging Face export names its
    special tokens with that mark (interop/hf.py), so the text `<|end|>` in a message stays text,
    and the mark itself is removed from messages so they cannot forge it."""
    content = f"message['content'] | replace('{mark}', '')" if mark else "message['content']"
    return ("{{ bos_token }}{% for message in messages %}" + mark + "<|{{ message['role'] }}|>{{ " + content + " }}"
            + mark + "<|end|>{% endfor %}{% if add_generation_prompt %}" + mark + "<|assistant|>{% endif %}")


# ---------------------------------------------------------------------------------------------
# Talking to a model


class ContextFullError(RuntimeError):
    """The conversation so far plus the new message does not fit the context: reset it."""


class MessageTooLongError(ContextFullError):
    """The message alone does not fit the context, even in a new conversation."""


class ChatSession:
    """A multi-turn conversation that keeps one KV cache across turns: each turn prefills only
    the new user message, never the whole history again.

    `ids` is the whole conversation as the chat template renders it (render_conversation of
    `messages`, with the replies' generated ids); the cache holds `ids[:cache.pos]` and the rest
    (the last reply token and the <|end|> that closes it) is fed at the start of the next turn."""

    def __init__(self, model, tok, system: str | None = None, compile: bool = False):
        self.model, self.tok, self.system, self.compile = model, tok, system, compile
        self.role = _role_ids(tok)
        self.reset()

    def _start(self) -> list[int]:
        ids = [self.tok.eot_id]
        if self.system:
            ids += [self.role["system"], *self.tok.encode(self.system), self.role["end"]]
        return ids

    def reset(self) -> None:
        from tinylm.model import KVCache

        p = next(self.model.parameters())
        self.cache = KVCache(self.model.cfg, 1, self.model.cfg.seq_len, p.device, p.dtype)
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.ids: list[int] = self._start()
        self.last_reply_ids: list[int] = []

    @property
    def pending(self) -> list[int]:
        """Tokens of the conversation not yet in the cache."""
        return self.ids[self.cache.pos:]

    @property
    def tokens_left(self) -> int:
        return self.model.cfg.seq_len - len(self.ids)

    def send(self, text: str, max_new_tokens: int = 200, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None):
        """Add a user message and stream the assistant's reply as text pieces. Stopping early
        (closing the generator, or KeyboardInterrupt while it runs) keeps the reply so far, closed
        with <|end|>; stopped before the first token, the turn is withdrawn."""
        from tinylm.sample import TextStream, generate

        L = self.model.cfg.seq_len
        end = self.role["end"]
        turn = [self.role["user"], *self.tok.encode(text), end, self.role["assistant"]]
        if len(self.ids) + len(turn) >= L:  # generate() needs room for at least one new token
            alone = len(self._start()) + len(turn)
            if alone >= L:
                raise MessageTooLongError(
                    f"this message is too long by {alone - L + 1} tokens: with the chat markers it needs {alone} "
                    f"of the {L}-token context, and the reply at least one more; shorten it")
            raise ContextFullError(f"the context of {L} tokens is full ({len(self.ids)} used, this message needs "
                                   f"{len(turn)} more and the reply at least one); reset the conversation")
        before = len(self.ids)
        prompt = self.pending + turn
        self.ids += turn
        stops = stop_ids(self.tok)
        stream, out = TextStream(self.tok), []
        try:
            for t in generate(self.model, prompt, max_new_tokens, temperature, top_k, top_p, seed=seed,
                              stop_ids=stops, cache=self.cache, compile=self.compile):
                out.append(t)
                if t in stops:
                    break
                self.ids.append(t)
                yield stream.push(t)
        finally:
            if not out:  # interrupted before the first token: withdraw the turn
                del self.ids[before:]
                self.cache.pos = min(self.cache.pos, len(self.ids))
            else:
                # whichever stop token the model chose (or none, cut by max_new_tokens), the
                # template closes the turn with <|end|>
                self.ids.append(end)
                self.last_reply_ids = [t for t in out if t not in stops]
                self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": stream.text()}]


def respond(model, tok, messages, max_new_tokens: int = 200, temperature: float = 0.0, top_k: int = 0,
            top_p: float = 1.0, seed: int | None = None, compile: bool = False) -> str:
    """One assistant turn for a conversation (evaluation, one-shot generation)."""
    from tinylm.sample import generate

    prompt = render_prompt(tok, messages)
    room = model.cfg.seq_len - len(prompt)
    if room <= 1:
        raise ContextFullError(f"prompt of {len(prompt)} tokens leaves no room in a context of {model.cfg.seq_len}")
    stops = stop_ids(tok)
    out = list(generate(model, prompt, min(max_new_tokens, room), temperature, top_k, top_p, seed=seed,
                        stop_ids=stops, compile=compile))
    return tok.decode([t for t in out if t not in stops])

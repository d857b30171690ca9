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


def jinja_template() -> str:
    """The template above for `tokenizer_config.json` (Hugging Face `apply_chat_template`)."""
    return ("{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
            "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


# ---------------------------------------------------------------------------------------------
# Talking to a model


class ContextFullError(RuntimeError):
    pass


class ChatSession:
    """A multi-turn conversation that keeps one KV cache across turns: each turn prefills only
    the new user message, never the whole history again."""

    def __init__(self, model, tok, system: str | None = None, compile: bool = False):
        self.model, self.tok, self.system, self.compile = model, tok, system, compile
        self.role = _role_ids(tok)
        self.reset()

    def reset(self) -> None:
        from tinylm.model import KVCache

        p = next(self.model.parameters())
        self.cache = KVCache(self.model.cfg, 1, self.model.cfg.seq_len, p.device, p.dtype)
        self.messages: list[dict] = []
        self.ids: list[int] = []  # every token of the conversation so far, in order
        self.pending = [self.tok.eot_id]  # tokens of the conversation not yet in the cache
        if self.system:
            self.messages.append({"role": "system", "content": self.system})
            self.pending += [self.role["system"], *self.tok.encode(self.system), self.role["end"]]

    @property
    def tokens_left(self) -> int:
        return self.model.cfg.seq_len - self.cache.pos - len(self.pending)

    def send(self, text: str, max_new_tokens: int = 200, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None):
        """Add a user message and stream the assistant's reply as text pieces."""
        from tinylm.sample import TextStream, generate

        new = self.pending + [self.role["user"], *self.tok.encode(text), self.role["end"], self.role["assistant"]]
        if self.cache.pos + len(new) >= self.model.cfg.seq_len:
            raise ContextFullError(
                f"the context of {self.model.cfg.seq_len} tokens is full ({self.cache.pos} used, this message needs "
                f"{len(new)}); reset the conversation")
        self.ids += new
        stream, out = TextStream(self.tok), []
        for t in generate(self.model, new, max_new_tokens, temperature, top_k, top_p, seed=seed,
                          stop_ids=(self.role["end"],), cache=self.cache, compile=self.compile):
            out.append(t)
            if t != self.role["end"]:
                yield stream.push(t)
        # the last token is not in the cache yet; close the turn with <|end|> if the model did not
        self.pending = [out[-1]] + ([] if out[-1] == self.role["end"] else [self.role["end"]])
        self.ids += out + ([] if out[-1] == self.role["end"] else [self.role["end"]])
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": stream.text()}]
        self.last_reply_ids = [t for t in out if t != self.role["end"]]


def respond(model, tok, messages, max_new_tokens: int = 200, temperature: float = 0.0, top_k: int = 0,
            top_p: float = 1.0, seed: int | None = None, compile: bool = False) -> str:
    """One assistant turn for a conversation (evaluation, one-shot generation)."""
    from tinylm.sample import generate

    prompt = render_prompt(tok, messages)
    room = model.cfg.seq_len - len(prompt)
    if room <= 1:
        raise ContextFullError(f"prompt of {len(prompt)} tokens leaves no room in a context of {model.cfg.seq_len}")
    stop = end_id(tok)
    out = list(generate(model, prompt, min(max_new_tokens, room), temperature, top_k, top_p, seed=seed,
                        stop_ids=(stop,), compile=compile))
    return tok.decode([t for t in out if t != stop])

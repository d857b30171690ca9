"""Talk to a model: `tinylm chat` (interactive, multi-turn, streaming) and `tinylm generate`
(one answer to one prompt). Both keep a KV cache; chat keeps one across turns.

In chat, type a message and press Enter; Ctrl-C stops a reply, and at the prompt ends the chat.
Commands:
    /reset          start a new conversation
    /temp 0.7       set the temperature (0 = greedy)
    /max 150        set the maximum tokens per answer
    /help, /quit

Run: tinylm chat --checkpoint runs/default/sft
     tinylm generate --checkpoint runs/default/sft --prompt "Write a story about a cat."
"""

from __future__ import annotations

import sys

from tinylm.chat import ChatSession, ContextFullError, MessageTooLongError
from tinylm.config import ChatConfig
from tinylm.runtime import resolve_device
from tinylm.train.checkpoint import load_model

HELP = "commands: /reset  /temp T  /max N  /help  /quit"


def _reply(session: ChatSession, text: str, cfg: ChatConfig, out) -> None:
    """Stream one reply; Ctrl-C stops it (the session keeps what was said so far)."""
    stream = session.send(text, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, seed=cfg.seed)
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        out.write(" (stopped)")
    out.write("\n")


def generate_once(cfg: ChatConfig, out=sys.stdout) -> str:
    model, tok, _ = load_model(cfg.checkpoint, resolve_device(cfg.device))
    session = ChatSession(model, tok, cfg.system or None, compile=cfg.compile)
    _reply(session, cfg.prompt, cfg, out)
    return session.messages[-1]["content"]


def chat(cfg: ChatConfig, inp=sys.stdin, out=sys.stdout) -> None:
    model, tok, meta = load_model(cfg.checkpoint, resolve_device(cfg.device))
    session = ChatSession(model, tok, cfg.system or None, compile=cfg.compile)
    out.write(f"tinylm chat: {meta.get('stage', 'model')} checkpoint at step {meta.get('step')}, context "
              f"{model.cfg.seq_len} tokens. {HELP}\n")
    while True:
        out.write("you> ")
        out.flush()
        try:
            line = inp.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt: leave quietly
            line = ""
        if not line:  # end of input
            out.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            try:
                if cmd in ("/quit", "/exit"):
                    return
                elif cmd == "/reset":
                    session.reset()
                    out.write("(new conversation)\n")
                elif cmd == "/temp":
                    t = float(arg)
                    if not t >= 0:
                        out.write(f"(/temp {arg} refused: the temperature is 0 (greedy) or more)\n")
                        continue
                    cfg.temperature = t
                    out.write(f"(temperature {cfg.temperature})\n")
                elif cmd == "/max":
                    n, ctx = int(arg), model.cfg.seq_len
                    if not 1 <= n < ctx:
                        out.write(f"(/max {n} refused: the context holds {ctx} tokens, prompt included; "
                                  f"choose 1 to {ctx - 1})\n")
                        continue
                    cfg.max_new_tokens = n
                    out.write(f"(max tokens {cfg.max_new_tokens})\n")
                else:
                    out.write(HELP + "\n")
            except ValueError:
                out.write(f"(bad value {arg!r}) {HELP}\n")
            continue
        out.write("bot> ")
        try:
            _reply(session, text, cfg, out)
        except MessageTooLongError as e:
            out.write(f"(message not sent: {e}.)\n")
            continue
        except ContextFullError as e:
            out.write(f"(context full: {e}. Type /reset to start over.)\n")
            continue
        if session.tokens_left < 16:
            out.write(f"(only {session.tokens_left} tokens of context left; /reset soon)\n")

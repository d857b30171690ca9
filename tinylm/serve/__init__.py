"""Serving: an OpenAI-compatible HTTP API and a chat page (app.py) over a continuous-batching
generation scheduler (scheduler.py); request checks and response shapes in protocol.py."""

"""tinylm: train your own Llama-style GPT from scratch, end to end, on a laptop CPU or one GPU."""

__version__ = "0.1.0"

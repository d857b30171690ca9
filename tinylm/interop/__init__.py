


def read_model(format: str, path, tokenizer=""):
    """(GPT, Tokenizer) from a model made elsewhere: a llama2.c `.bin` with its tokenizer (`.bin`
    or SentencePiece `.model`), or a Hugging Face Llama directory (its tokenizer.json unless
    `tokenizer` names another). Weights are loaded strictly; `tinylm import` saves the result as a
    checkpoint, `tinylm eval` scores it in memory."""
    from pathlib import Path

    from tinylm.interop import hf as hf_io
    from tinylm.interop import llama2c
    from tinylm.model import GPT
    from tinylm.tokenizer import Tokenizer
    from tinylm.train.checkpoint import load_state_dict_checked

    if format == "llama2c":
        if not tokenizer:
            raise ValueError(f"{path}: a llama2.c checkpoint needs its tokenizer: --tokenizer tok512.bin (or .model)")
        cfg, sd = llama2c.read_checkpoint(path)
        tok = Tokenizer(llama2c.hf_tokenizer(tokenizer), str(tokenizer))
    elif format == "hf":
        cfg, sd, tok_path = hf_io.import_hf(path)
        tok_path = Path(tokenizer) if tokenizer else tok_path
        if tok_path is None:
            raise ValueError(f"{path}: no tokenizer.json; pass --tokenizer")
        try:
            from tokenizers import Tokenizer as HFTokenizer

            hf = HFTokenizer.from_str(hf_io.unmarked_tokenizer_json(Path(tok_path).read_text(encoding="utf-8")))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{tok_path}: not a valid tokenizer.json ({e})") from e
        tok = Tokenizer(hf, str(tok_path))
    else:
        raise ValueError(f"unknown import format {format!r}; choose hf or llama2c")
    model = GPT(cfg)
    load_state_dict_checked(model, sd, path)
    return model, tok

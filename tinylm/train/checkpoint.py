"""Checkpoints: safetensors weights and optimizer state, a JSON meta file, written atomically.

    run_dir/checkpoints/step_000500/
        model.safetensors      weights (tied output head stored once, as wte.weight)
        optimizer.safetensors  AdamW moments and step counts, plus the torch RNG states
        tokenizer.json         copy, so a checkpoint directory is self-contained
        meta.json              step, tokens, resolved config, tokenizer hash, code version,
                               hardware, data-loader position, numpy/python RNG states

A checkpoint is assembled in a hidden temporary directory and renamed into place in one step, so a
crash or SIGKILL mid-write leaves the previous checkpoint intact and no half-written one behind.
Only the newest `keep_last` are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tinylm.util import default_mode, fsync_dir

STEP_PREFIX = "step_"


class CheckpointError(ValueError):
    """A checkpoint file that is missing or damaged; the message names it."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, say); the previous one is intact."""


def read_tensors(path) -> dict[str, torch.Tensor]:
    """A safetensors file, or CheckpointError naming it when it is missing, truncated or corrupt."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found (incomplete checkpoint)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint file ({' '.join(str(e).split())})") from e


def _model_tensors(model, sd: dict | None = None) -> dict[str, torch.Tensor]:
    sd = dict(model.state_dict() if sd is None else sd)
    if getattr(model, "cfg", None) is not None and model.cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)  # same storage as wte.weight; safetensors refuses shared tensors
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def load_state_dict_checked(model, sd: dict, source) -> None:
    """Load weights, allowing only the tied output head to be absent; name `source` on mismatch."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    allowed = {"lm_head.weight"} if model.cfg.tie_embeddings else set()
    if set(missing) - allowed or unexpected:
        raise ValueError(f"{source}: weights do not match the model (missing {missing}, unexpected {unexpected})")


def load_model_weights(model, path) -> None:
    load_state_dict_checked(model, read_tensors(path), path)


def _optimizer_tensors(sd: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            tensors[f"state.{idx}.{k}"] = v.detach().contiguous().cpu() if torch.is_tensor(v) else torch.tensor(v)
    return tensors, sd["param_groups"]


def optimizer_state(ckpt_dir) -> dict:
    """The checkpoint's AdamW state as `optimizer.state_dict()` returns it (state by parameter index)."""
    ckpt_dir = Path(ckpt_dir)
    tensors = read_tensors(ckpt_dir / "optimizer.safetensors")
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": read_meta(ckpt_dir)["optimizer_param_groups"]}


def save_checkpoint(run_dir, step: int, model, optimizer=None, meta: dict | None = None,
                    tokenizer_path=None, keep_last: int = 0, state: tuple[dict, dict | None] | None = None) -> Path:
    """Write a checkpoint of `model` (and `optimizer`). `state` = (model state dict, optimizer state
    dict) gathered elsewhere replaces `model.state_dict()` / `optimizer.state_dict()`: the full state
    of a sharded (FSDP) model, which only a collective over all ranks can produce."""
    model_sd, optim_sd = state if state is not None else (None, optimizer.state_dict() if optimizer is not None else None)
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"{STEP_PREFIX}{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, default_mode(directory=True))
        save_file(_model_tensors(model, model_sd), str(tmp / "model.safetensors"))
        meta = dict(meta or {}, step=step)
        if optim_sd is not None:
            tensors, groups = _optimizer_tensors(optim_sd)
            tensors["rng.torch"] = torch.get_rng_state()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                tensors["rng.cuda"] = torch.cuda.get_rng_state()
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer_param_groups"] = groups
            np_state = np.random.get_state()
            meta["rng_numpy"] = [np_state[0], np_state[1].tolist(), *np_state[2:]]
            py_state = random.getstate()
            meta["rng_python"] = [py_state[0], list(py_state[1]), py_state[2]]
        if tokenizer_path:
            shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        with open(tmp / "meta.json", "w") as f:  # written last: its presence marks a complete checkpoint
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        for p in tmp.iterdir():
            if p.name != "meta.json":
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():  # same step saved again (e.g. final save == periodic save): replace it
            trash = ckpt_root / f".{final.name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        fsync_dir(ckpt_root)
    except OSError as e:  # a full disk, a read-only directory: say so, and that the last checkpoint is fine
        shutil.rmtree(tmp, ignore_errors=True)
        prev = list_checkpoints(run_dir)
        raise CheckpointWriteError(
            f"could not write checkpoint {final} ({e.strerror or e}); "
            + (f"the previous checkpoint {prev[-1]} is intact" if prev else "no earlier checkpoint exists")
        ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temp(run_dir) -> list[Path]:
    """Delete the hidden `.step_N.*.tmp` / `.step_N.old` directories a kill mid-write leaves behind
    (the checkpoint they were becoming was never complete). Returns what was removed."""
    root = Path(run_dir) / "checkpoints"
    stale = [p for p in root.glob(f".{STEP_PREFIX}*") if p.is_dir() and p.name.endswith((".tmp", ".old"))] \
        if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def list_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoints of a run, oldest first (hidden temp dirs are never listed)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    ckpts = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and (p / "meta.json").exists()]
    return sorted(ckpts, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def find_checkpoint(path) -> Path:
    """A checkpoint directory itself, or the newest checkpoint of a run directory."""
    path = Path(path)
    if (path / "meta.json").exists() and (path / "model.safetensors").exists():
        return path
    ckpts = list_checkpoints(path)
    if not ckpts:
        raise FileNotFoundError(f"{path}: no checkpoint found (expected {path}/checkpoints/{STEP_PREFIX}*/)")
    return ckpts[-1]


def read_meta(ckpt_dir) -> dict:
    path = Path(ckpt_dir) / "meta.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint meta ({e})") from e


def restore_training_state(ckpt_dir, optimizer) -> dict:
    """Load optimizer moments (unless `optimizer` is None: a sharded one is loaded collectively)
    and every RNG state; returns the meta dict."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    tensors = read_tensors(ckpt_dir / "optimizer.safetensors")
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state(ckpt_dir))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    s = meta["rng_numpy"]
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), *s[2:]))
    p = meta["rng_python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    return meta


def load_model(path, device="cpu"):
    """(model, tokenizer, meta) from a checkpoint or run directory, for sampling and evaluation."""
    from tinylm.config import ModelConfig, from_dict
    from tinylm.model import GPT
    from tinylm.tokenizer import Tokenizer

    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    try:
        cfg = from_dict(ModelConfig, meta["config"]["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt / 'meta.json'}: no usable model config ({e})") from e
    tok = Tokenizer.load(ckpt / "tokenizer.json")
    check_tokenizer(tok, meta, ckpt / "meta.json", cfg.vocab_size)
    model = GPT(cfg)
    load_model_weights(model, ckpt / "model.safetensors")
    model.to(device).eval()
    return model, tok, meta


def check_tokenizer(tok, meta: dict, meta_path, vocab_size: int | None = None) -> None:
    """The tokenizer must be the one the model was trained with (hash in meta.json) and fit the
    model's vocabulary; otherwise token ids would mean other strings, or index past the embedding."""
    want = meta.get("tokenizer_sha256")
    if want and tok.sha256 != want:
        raise CheckpointError(f"{tok.path} (sha256 {tok.sha256[:12]}) is not the tokenizer recorded in {meta_path} "
                              f"(sha256 {want[:12]}): the model was trained with another tokenizer")
    if vocab_size is not None and tok.vocab_size > vocab_size:
        raise CheckpointError(f"{tok.path} has {tok.vocab_size} tokens but the model in {Path(meta_path).parent} "
                              f"has a vocabulary of {vocab_size}")

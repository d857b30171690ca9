"""Shared fixtures: tests make their own tiny data (a few KB of synthetic stories) and never
touch the network. Tests that read ../shared/data skip when it is absent."""

from __future__ import annotations

import random

import pytest
import torch

from tinylm.config import ModelConfig, TrainConfig
from tinylm.data.shards import prepare
from tinylm.data.sources import data_dir, resolve
from tinylm.tokenizer import train_tokenizer

NAMES = ["Lily", "Tom", "Max", "Sue", "Ben", "Mia"]
THINGS = ["ball", "cat", "tree", "boat", "cake", "kite"]
PLACES = ["park", "garden", "house", "river", "forest"]


def make_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        t, p = rng.choice(THINGS), rng.choice(PLACES)
        out.append(
            f"Once upon a time, {a} found a {t} in the {p}. {a} was very happy.\n"
            f"{a} said, \"Look, {b}! A {t}!\" {b} smiled and they played with the {t} all day."
        )
    return out


def write_corpus(path, docs) -> None:
    path.write_text("".join(d + "\n<|endoftext|>\n" for d in docs), encoding="utf-8")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """train.txt (400 stories) and valid.txt (40 stories)."""
    d = tmp_path_factory.mktemp("corpus")
    write_corpus(d / "train.txt", make_stories(400, seed=1))
    write_corpus(d / "valid.txt", make_stories(40, seed=2))
    return d


@pytest.fixture(scope="session")
def tokenizer(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    return train_tokenizer(resolve(str(corpus_dir / "train.txt")).documents(), 320, out)


@pytest.fixture(scope="session")
def prepared(corpus_dir, tokenizer, tmp_path_factory):
    """A prepared data directory (train + val shards) for the tiny corpus."""
    out = tmp_path_factory.mktemp("data")
    prepare(resolve(str(corpus_dir / "train.txt"), valid=str(corpus_dir / "valid.txt")), tokenizer, out)
    return out


@pytest.fixture
def tiny_model_cfg(tokenizer) -> ModelConfig:
    return ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


@pytest.fixture
def tiny_train_cfg(prepared, tmp_path) -> TrainConfig:
    return TrainConfig(run_dir=str(tmp_path / "run"), data=str(prepared), device="cpu", dtype="fp32",
                       batch_size=4, total_batch_tokens=4 * 32, max_steps=12, warmup_steps=2, lr=3e-3,
                       log_every=1, eval_every=0, sample_every=0, save_every=4, keep_last=5)


@pytest.fixture
def shared_data():
    d = data_dir()
    if d is None:
        pytest.skip("../shared/data not present")
    return d


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

"""TokenLoader: shifted windows, exact resume, epochs, data-parallel ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylm.data.loader import TokenLoader
from tinylm.data.shards import open_shard, write_shard
from tinylm.data.sources import DataError

T = 8  # sequence length used throughout
VOCAB = 65536


def _shard(path, n_windows, offset=0):
    """A shard whose token at position i is offset + i, holding exactly n_windows windows of T."""
    return write_shard(path, np.arange(offset, offset + n_windows * T + 1), VOCAB)


def _window_ids(x, offset=0):
    """Window index of each row (tokens are positions, windows start at multiples of T)."""
    starts = x[:, 0] - offset
    assert torch.all(starts % T == 0)
    return (starts // T).tolist()


def _batches(loader, n):
    return [loader.next_batch() for _ in range(n)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.fixture
def shard24(tmp_path):
    return _shard(tmp_path / "s.bin", 24)


def test_targets_are_inputs_shifted_by_one_and_rows_are_contiguous_slices(tmp_path):
    data = np.random.default_rng(0).integers(0, 320, size=20 * T + 1)
    path = write_shard(tmp_path / "r.bin", data, 320)
    loader = TokenLoader([path], batch_size=4, seq_len=T, seed=3)
    for _ in range(5):
        x, y = loader.next_batch()
        assert x.shape == y.shape == (4, T)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])
        for xr, yr in zip(x.numpy(), y.numpy()):
            row = np.concatenate([xr, yr[-1:]])
            matches = [s for s in range(0, len(data) - T, T) if np.array_equal(data[s : s + T + 1], row)]
            assert matches, "row is not a window of the shard"


def test_windows_never_cross_shard_boundaries(tmp_path):
    a = _shard(tmp_path / "a.bin", 5, offset=0)
    b = write_shard(tmp_path / "b.bin", np.arange(30000, 30000 + 7 * T + 5), VOCAB)  # 7 windows + ragged tail
    loader = TokenLoader([a, b], batch_size=4, seq_len=T, shuffle=False)
    assert loader.n_windows == 12
    seen = []
    for _ in range(3):
        x, y = loader.next_batch()
        full = torch.cat([x, y[:, -1:]], dim=1)
        assert torch.all(full[:, 1:] - full[:, :-1] == 1)  # contiguous within one shard
        seen += full[:, 0].tolist()
    assert seen == [i * T for i in range(5)] + [30000 + i * T for i in range(7)]


def test_shuffle_false_yields_windows_in_order(shard24):
    loader = TokenLoader([shard24], batch_size=4, seq_len=T, shuffle=False)
    ids = []
    for _ in range(6):
        x, y = loader.next_batch()
        ids += _window_ids(x)
        assert torch.equal(x[:, 0], torch.arange(len(ids) - 4, len(ids)) * T)
    assert ids == list(range(24))
    x, _ = loader.next_batch()  # the next epoch starts over in the same order
    assert _window_ids(x) == [0, 1, 2, 3]


def test_each_epoch_visits_every_window_exactly_once(shard24):
    loader = TokenLoader([shard24], batch_size=4, seq_len=T, seed=7)
    epochs = []
    for _ in range(3):
        ids = []
        for _ in range(6):
            ids += _window_ids(loader.next_batch()[0])
        epochs.append(ids)
    for ids in epochs:
        assert sorted(ids) == list(range(24))
    assert epochs[0] != list(range(24))  # shuffled
    assert epochs[0] != epochs[1] != epochs[2]  # a fresh order each epoch
    assert loader.state_dict()["epoch"] == 2


def test_ragged_tail_is_dropped_without_repeating_windows(tmp_path):
    loader = TokenLoader([_shard(tmp_path / "s.bin", 26)], batch_size=4, seq_len=T, seed=1)
    ids = []
    for _ in range(6):
        ids += _window_ids(loader.next_batch()[0])
    assert len(set(ids)) == 24 and set(ids) <= set(range(26))
    assert loader.state_dict()["epoch"] == 0
    loader.next_batch()
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["cursor"] == 4


def test_same_seed_gives_same_order_and_different_seed_differs(shard24):
    a = _batches(TokenLoader([shard24], batch_size=4, seq_len=T, seed=5), 6)
    b = _batches(TokenLoader([shard24], batch_size=4, seq_len=T, seed=5), 6)
    c = _batches(TokenLoader([shard24], batch_size=4, seq_len=T, seed=6), 6)
    _assert_same_batches(a, b)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


@pytest.mark.parametrize("k", [0, 1, 4, 6, 7])
def test_restoring_state_gives_bit_identical_following_batches(shard24, k):
    # 6 batches per epoch: k=4 resumes mid-epoch and crosses the boundary, k=6 resumes right at it
    original = TokenLoader([shard24], batch_size=4, seq_len=T, seed=11)
    _batches(original, k)
    state = dict(original.state_dict())
    expected = _batches(original, 8)

    fresh = TokenLoader([shard24], batch_size=4, seq_len=T, seed=11)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    _assert_same_batches(_batches(fresh, 8), expected)


def test_state_dict_records_epoch_and_cursor(shard24):
    loader = TokenLoader([shard24], batch_size=4, seq_len=T, seed=2)
    fixed = {"seed": 2, "n_windows": 24, "shard_tokens": [len(open_shard(shard24))], "shuffle": True}
    assert loader.state_dict() == {"epoch": 0, "cursor": 0, **fixed}
    _batches(loader, 7)
    assert loader.state_dict() == {"epoch": 1, "cursor": 4, **fixed}


def test_two_ranks_together_equal_one_rank_with_double_batch(shard24):
    B = 3  # 24 windows, global batch 6: 4 batches per epoch
    single = TokenLoader([shard24], batch_size=2 * B, seq_len=T, seed=4)
    r0 = TokenLoader([shard24], batch_size=B, seq_len=T, seed=4, rank=0, world_size=2)
    r1 = TokenLoader([shard24], batch_size=B, seq_len=T, seed=4, rank=1, world_size=2)
    for _ in range(10):  # spans two epoch boundaries
        x, y = single.next_batch()
        x0, y0 = r0.next_batch()
        x1, y1 = r1.next_batch()
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert not set(_window_ids(x0)) & set(_window_ids(x1))
        assert r0.state_dict() == r1.state_dict() == single.state_dict()


def test_state_saved_at_world_size_two_resumes_at_world_size_one(shard24):
    B = 3
    r0 = TokenLoader([shard24], batch_size=B, seq_len=T, seed=9, rank=0, world_size=2)
    r1 = TokenLoader([shard24], batch_size=B, seq_len=T, seed=9, rank=1, world_size=2)
    _batches(r0, 3)
    _batches(r1, 3)
    state = dict(r0.state_dict())
    expected = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(_batches(r0, 5), _batches(r1, 5))]

    single = TokenLoader([shard24], batch_size=2 * B, seq_len=T, seed=9)
    single.load_state_dict(state)
    _assert_same_batches(_batches(single, 5), expected)


def test_shard_too_small_for_one_batch_raises(tmp_path):
    path = _shard(tmp_path / "tiny.bin", 3)
    with pytest.raises(DataError, match="fewer than one global batch") as e:
        TokenLoader([path], batch_size=4, seq_len=T)
    assert str(path) in str(e.value)
    TokenLoader([path], batch_size=3, seq_len=T)  # exactly one batch fits
    with pytest.raises(DataError):
        TokenLoader([path], batch_size=2, seq_len=T, world_size=2)


def test_shard_shorter_than_one_window_has_no_windows(tmp_path):
    path = write_shard(tmp_path / "t.bin", np.arange(T), VOCAB)  # T tokens: one short of a window
    with pytest.raises(DataError, match="0 windows"):
        TokenLoader([path], batch_size=1, seq_len=T)


def test_load_state_with_different_seed_raises(shard24):
    a = TokenLoader([shard24], batch_size=4, seq_len=T, seed=1)
    _batches(a, 2)
    b = TokenLoader([shard24], batch_size=4, seq_len=T, seed=2)
    with pytest.raises(DataError, match="seed"):
        b.load_state_dict(a.state_dict())
    assert b.state_dict()["cursor"] == 0  # unchanged


def test_load_state_with_different_data_raises(shard24, tmp_path):
    a = TokenLoader([shard24], batch_size=4, seq_len=T, seed=1)
    _batches(a, 2)
    other = _shard(tmp_path / "other.bin", 30)
    b = TokenLoader([other], batch_size=4, seq_len=T, seed=1)
    with pytest.raises(DataError, match="different data"):
        b.load_state_dict(a.state_dict())
    c = TokenLoader([shard24], batch_size=4, seq_len=T + 1, seed=1)  # different seq_len: other windows
    with pytest.raises(DataError):
        c.load_state_dict(a.state_dict())


def test_loader_reads_a_prepared_directory(prepared, tokenizer):
    from tinylm.data.shards import load_prepared

    train, val, _ = load_prepared(prepared)
    loader = TokenLoader(train, batch_size=4, seq_len=32, seed=0)
    x, y = loader.next_batch()
    assert x.shape == (4, 32)
    assert int(x.max()) < tokenizer.vocab_size and int(x.min()) >= 0
    assert torch.equal(y[:, :-1], x[:, 1:])


def test_restoring_position_into_different_data_with_same_window_count_is_refused(tmp_path):
    # 2 shards of 5 windows vs 1 shard of 10 windows: same window count, different data
    T = 4
    a = [write_shard(tmp_path / f"a{i}.bin", np.arange(5 * T + 1), 1000) for i in range(2)]
    b = [write_shard(tmp_path / "b.bin", np.arange(10 * T + 1), 1000)]
    la, lb = TokenLoader(a, 2, T, seed=0), TokenLoader(b, 2, T, seed=0)
    assert la.n_windows == lb.n_windows == 10
    with pytest.raises(DataError, match="different data"):
        lb.load_state_dict(la.state_dict())
    with pytest.raises(DataError, match="different data"):
        TokenLoader(a, 2, T, seed=0, shuffle=False).load_state_dict(la.state_dict())


def test_copying_drills_repeat_the_first_half_of_a_fixed_share_of_windows(tmp_path):
    path = _shard(tmp_path / "big.bin", 400)
    plain = TokenLoader([path], batch_size=400, seq_len=T, shuffle=False)
    drill = TokenLoader([path], batch_size=400, seq_len=T, shuffle=False, repeat_frac=0.25)
    (xp, yp), (xd, yd) = plain.next_batch(), drill.next_batch()
    rows = [w for w in range(400) if drill.is_drill(w)]
    assert 70 < len(rows) < 130  # about a quarter
    half = (T + 1) // 2
    whole, orig = torch.cat([xd, yd[:, -1:]], 1), torch.cat([xp, yp[:, -1:]], 1)  # T + 1 tokens a window
    for w in range(400):
        if w in rows:  # first half, then the same tokens again: y is x shifted by one as always
            assert torch.equal(whole[w, :half], orig[w, :half]) and torch.equal(whole[w, half:], orig[w, : T + 1 - half])
        else:
            assert torch.equal(xd[w], xp[w]) and torch.equal(yd[w], yp[w])
    assert torch.equal(xd[:, 1:], yd[:, :-1])
    # the drills depend on (seed, window), not on the draw order: a shuffled epoch drills the same windows
    shuffled = TokenLoader([path], batch_size=400, seq_len=T, seed=0, repeat_frac=0.25)
    assert [w for w in range(400) if shuffled.is_drill(w)] == rows
    # a position saved with drills is refused without them (the data would differ)
    with pytest.raises(DataError, match="repeat_frac"):
        plain.load_state_dict(drill.state_dict())
    with pytest.raises(ValueError, match="repeat_frac"):
        TokenLoader([path], batch_size=4, seq_len=T, repeat_frac=1.5)

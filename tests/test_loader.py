"""Batch sources: order is a function of (seed, epoch), and a restored state continues exactly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainwise.errors import DataError
from trainwise.data.loader import (DatasetBatches, InMemoryBatches, UserLoaderBatches, epoch_permutation,
                              make_batches)


def data(n: int = 50):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return x, torch.arange(n)


def collect(batches) -> list[int]:
    return [int(v) for _, y in batches for v in y]


def test_permutation_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_permutation(20, 3, 1), epoch_permutation(20, 3, 1))
    assert not torch.equal(epoch_permutation(20, 3, 1), epoch_permutation(20, 3, 2))
    assert not torch.equal(epoch_permutation(20, 3, 1), epoch_permutation(20, 4, 1))
    assert sorted(epoch_permutation(20, 0, 0).tolist()) == list(range(20))


def test_in_memory_batches_cover_every_sample_once_with_a_short_last_batch():
    batches = InMemoryBatches(*data(50), batch_size=16, shuffle=True, seed=0)
    batches.set_epoch(0)
    sizes = [len(y) for _, y in batches]
    assert sizes == [16, 16, 16, 2] == batches.batch_sizes()
    batches.set_epoch(0)
    assert sorted(collect(batches)) == list(range(50))
    assert collect(batches) == []  # exhausted until the next set_epoch


@pytest.mark.parametrize("make", ["memory", "dataset"])
def test_restored_state_continues_with_the_same_samples(make):
    x, y = data(50)

    def build():
        if make == "memory":
            return InMemoryBatches(x, y, batch_size=8, shuffle=True, seed=5)
        return DatasetBatches(TensorDataset(x, y), batch_size=8, shuffle=True, seed=5)

    full = build()
    full.set_epoch(3)
    expected = collect(full)
    partial = build()
    partial.set_epoch(3)
    iterator = iter(partial)
    seen = [int(v) for v in next(iterator)[1]] + [int(v) for v in next(iterator)[1]]
    state = partial.state_dict()
    resumed = build()
    resumed.load_state_dict(state)
    assert seen + collect(resumed) == expected


def test_augmentation_is_repeatable_after_restore():
    x = torch.randn(40, 1, 8, 8)
    y = torch.zeros(40, dtype=torch.long)

    def noisy(batch, generator):
        return batch + torch.rand(batch.shape, generator=generator)

    def build():
        return InMemoryBatches(x, y, batch_size=10, shuffle=True, seed=1, augment=noisy)

    full = build()
    full.set_epoch(0)
    expected = [xb for xb, _ in full]
    partial = build()
    partial.set_epoch(0)
    iterator = iter(partial)
    next(iterator)
    resumed = build()
    resumed.load_state_dict(partial.state_dict())
    for got, want in zip(resumed, expected[1:]):
        assert torch.equal(got[0], want)


def test_user_loader_skips_seen_batches_on_resume():
    loader = DataLoader(TensorDataset(*data(40)), batch_size=10, shuffle=False)
    batches = UserLoaderBatches(loader)
    batches.load_state_dict({"epoch": 0, "position": 2})
    assert collect(batches) == list(range(20, 40))


def test_make_batches_picks_the_source():
    x, y = data(10)

    class Plain(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return x[i], y[i]

    device = torch.device("cpu")
    assert isinstance(make_batches((x, y), batch_size=4, shuffle=False, seed=0, device=device), InMemoryBatches)
    assert isinstance(make_batches((x.numpy(), y.numpy()), batch_size=4, shuffle=False, seed=0, device=device),
                      InMemoryBatches)
    assert isinstance(make_batches(TensorDataset(x, y), batch_size=4, shuffle=False, seed=0, device=device),
                      InMemoryBatches)
    assert isinstance(make_batches(Plain(), batch_size=4, shuffle=False, seed=0, device=device), DatasetBatches)
    with pytest.raises(DataError, match="must be an \\(inputs, targets\\) or .* got str"):
        make_batches("x.csv", batch_size=4, shuffle=False, seed=0, device=device)
    with pytest.raises(DataError, match="10 inputs, 3 targets"):
        InMemoryBatches(x, y[:3], batch_size=4, shuffle=False)

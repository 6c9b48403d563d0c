"""Seeded, stratified, disjoint splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainwise.data import load_data
from trainwise.data.splits import split_indices
from trainwise.errors import DataError


def test_stratified_split_takes_each_class_share_exactly() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = split_indices(100, fraction=0.2, rng=np.random.default_rng(0), labels=labels)
    assert np.bincount(labels[held]).tolist() == [10, 6, 4]
    assert np.bincount(labels[keep]).tolist() == [40, 24, 16]
    assert list(held) == sorted(held) and list(keep) == sorted(keep)


def test_stratified_split_spreads_the_remainder_by_largest_remainder() -> None:
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    _, held = split_indices(15, fraction=0.5, rng=np.random.default_rng(1), labels=labels)
    counts = np.bincount(labels[held], minlength=3)
    assert counts.sum() == 8 and sorted(counts.tolist()) == [2, 3, 3]


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=60),
    fraction=st.floats(0.01, 0.9),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_a_stratified_partition(labels: list[int], fraction: float, seed: int) -> None:
    labels_array = np.array(labels)
    n = len(labels)
    expected_held = max(1, round(fraction * n))
    if expected_held >= n:
        with pytest.raises(DataError, match="leaves no samples to train on"):
            split_indices(
                n, fraction=fraction, rng=np.random.default_rng(seed), labels=labels_array
            )
        return
    keep, held = split_indices(
        n, fraction=fraction, rng=np.random.default_rng(seed), labels=labels_array
    )
    assert len(held) == expected_held
    assert sorted([*keep, *held]) == list(range(n))
    for label in set(labels):
        in_class = int((labels_array == label).sum())
        assert abs(int((labels_array[held] == label).sum()) - fraction * in_class) < 1 + 1e-9


def test_unstratified_split_is_a_seeded_partition() -> None:
    keep, held = split_indices(10, fraction=0.3, rng=np.random.default_rng(0))
    again_keep, again_held = split_indices(10, fraction=0.3, rng=np.random.default_rng(0))
    assert len(held) == 3 and sorted([*keep, *held]) == list(range(10))
    assert held.tolist() == again_held.tolist() and keep.tolist() == again_keep.tolist()


def test_small_positive_fraction_holds_out_one_sample() -> None:
    _, held = split_indices(5, fraction=0.01, rng=np.random.default_rng(0))
    assert len(held) == 1


def test_fraction_that_leaves_nothing_is_a_data_error() -> None:
    with pytest.raises(DataError, match="a fraction of 0.9 of 2 samples leaves no samples"):
        split_indices(2, fraction=0.9, rng=np.random.default_rng(0))


def ids_by_split(path: Path, seed: int) -> list[list[int]]:
    bundle = load_data("npz", path=path, seed=seed, normalize=False)
    return [split[0][:, 0].long().tolist() for split in (bundle.train, bundle.val, bundle.test)]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_load_data_splits_are_disjoint_and_seeded(tmp_path: Path, task: str) -> None:
    # Feature 0 is the sample's id, so every sample can be found in its split.
    n = 200
    y = np.arange(n) % 4 if task == "classification" else np.linspace(0, 1, n)
    np.savez(tmp_path / "ids.npz", x=np.stack([np.arange(n), np.zeros(n)], axis=1), y=y)
    train, val, test = ids_by_split(tmp_path / "ids.npz", seed=0)
    assert (len(train), len(val), len(test)) == (144, 16, 40)
    assert sorted(train + val + test) == list(range(n))
    assert ids_by_split(tmp_path / "ids.npz", seed=0) == [train, val, test]
    other = ids_by_split(tmp_path / "ids.npz", seed=1)
    assert other[1] != val and other[2] != test


def test_load_data_splits_are_stratified() -> None:
    raw = load_data("digits", normalize=False, val_fraction=0, test_fraction=0)
    class_counts = torch.bincount(raw.train[1]).double()
    bundle = load_data("digits", seed=7)
    test_counts = torch.bincount(bundle.test[1], minlength=10).double()
    val_counts = torch.bincount(bundle.val[1], minlength=10).double()
    assert (test_counts - 0.2 * class_counts).abs().max() <= 1
    assert (val_counts - 0.1 * (class_counts - test_counts)).abs().max() <= 1


def test_zero_fractions_give_no_split() -> None:
    bundle = load_data("synthetic", val_fraction=0.0, test_fraction=0.0)
    assert bundle.val is None and bundle.test is None and len(bundle.train[0]) == 2000

"""Regression targets standardized with train-split statistics; classification left alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainwise.config.build import data_description, load_bundle
from trainwise.config.schema import load_config
from trainwise.data import (
    denormalize_target,
    fit_target_normalization,
    load_data,
    normalize_target,
)
from trainwise.errors import DataError


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def official_split_npz(tmp_path: Path) -> Path:
    """One feature; targets 1, 3, 5 to train on, 11 to validate, -3 to test."""
    return write_npz(
        tmp_path / "r.npz",
        x=np.array([[0.0], [1.0], [2.0]]),
        y=np.array([1.0, 3.0, 5.0]),
        x_val=np.array([[3.0]]),
        y_val=np.array([11.0]),
        x_test=np.array([[4.0]]),
        y_test=np.array([-3.0]),
    )


def test_targets_are_standardized_with_exact_train_statistics(tmp_path: Path) -> None:
    bundle = load_data("npz", path=official_split_npz(tmp_path))
    std = math.sqrt(8 / 3)  # population std of 1, 3, 5
    assert bundle.target_normalization == {"mean": [3.0], "std": [pytest.approx(std)]}
    torch.testing.assert_close(bundle.train[1], torch.tensor([-2 / std, 0.0, 2 / std]))
    # val and test use the train statistics, not their own (theirs would give exactly 0)
    torch.testing.assert_close(bundle.val[1], torch.tensor([8 / std]))
    torch.testing.assert_close(bundle.test[1], torch.tensor([-6 / std]))
    assert bundle.train[1].dtype == torch.float32 and bundle.train[1].shape == (3,)


def test_statistics_come_from_the_train_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    lines = ["a,b,c,price"] + [
        f"{a},{b},{c},{100 + 40 * a + rng.normal():.6f}" for a, b, c in x
    ]
    path = tmp_path / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = load_data("csv", path=path, target="price", standardize_target=False, seed=3)
    scaled = load_data("csv", path=path, target="price", seed=3)
    train_y = raw.train[1].double()
    assert scaled.target_normalization["mean"] == pytest.approx([float(train_y.mean())])
    assert scaled.target_normalization["std"] == pytest.approx([float(train_y.std(correction=0))])
    everything = torch.cat([raw.train[1], raw.val[1], raw.test[1]]).double()
    assert scaled.target_normalization["mean"][0] != pytest.approx(float(everything.mean()))
    assert float(scaled.train[1].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(scaled.train[1].std(correction=0)) == pytest.approx(1.0, abs=1e-5)
    for original, standardized in ((raw.val, scaled.val), (raw.test, scaled.test)):
        torch.testing.assert_close(
            denormalize_target(standardized[1], scaled.target_normalization), original[1]
        )
        assert torch.equal(original[0], standardized[0])  # inputs untouched by this step


def test_multi_target_columns_each_get_their_own_statistics_and_zero_spread_gives_one(
    tmp_path: Path,
) -> None:
    y = np.array([[0.0, 7.0, 10.0], [2.0, 7.0, 30.0], [4.0, 7.0, 20.0]])
    path = write_npz(tmp_path / "m.npz", x=np.zeros((3, 1)), y=y)
    bundle = load_data("npz", path=path, val_fraction=0, test_fraction=0)
    stats = bundle.target_normalization
    assert stats["mean"] == pytest.approx([2.0, 7.0, 20.0])
    assert stats["std"] == pytest.approx([math.sqrt(8 / 3), 1.0, math.sqrt(200 / 3)])
    assert bundle.train[1].shape == (3, 3)
    torch.testing.assert_close(bundle.train[1][:, 1], torch.zeros(3))  # only centered
    torch.testing.assert_close(denormalize_target(bundle.train[1], stats), torch.tensor(y).float())


@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_classification_targets_are_untouched(dataset: str) -> None:
    plain = load_data(dataset, standardize_target=False, seed=1)
    bundle = load_data(dataset, seed=1)
    assert bundle.task == "classification" and bundle.target_normalization is None
    assert bundle.train[1].dtype == torch.int64
    assert torch.equal(bundle.train[1], plain.train[1]) and torch.equal(bundle.test[1], plain.test[1])


def test_standardize_target_false_keeps_the_original_units(tmp_path: Path) -> None:
    bundle = load_data("npz", path=official_split_npz(tmp_path), standardize_target=False)
    assert bundle.target_normalization is None
    assert bundle.train[1].tolist() == [1.0, 3.0, 5.0] and bundle.val[1].tolist() == [11.0]


def test_config_key_reaches_the_bundle_and_the_data_description(tmp_path: Path) -> None:
    path = official_split_npz(tmp_path)
    on = load_bundle(load_config(None, ["data.dataset=npz", f"data.path={path}"]))
    off = load_bundle(
        load_config(None, ["data.dataset=npz", f"data.path={path}", "data.standardize_target=false"])
    )
    assert on.target_normalization["mean"] == [3.0] and off.target_normalization is None
    assert data_description(on)["target_normalization"] == on.target_normalization
    assert data_description(off)["target_normalization"] is None
    assert data_description(load_data("digits"))["target_normalization"] is None


def test_normalize_and_denormalize_are_inverse_and_take_a_model_output_column() -> None:
    stats = fit_target_normalization(torch.tensor([2.0, 4.0, 9.0]))
    y = torch.tensor([0.5, 100.0])
    torch.testing.assert_close(denormalize_target(normalize_target(y, stats), stats), y)
    output = torch.tensor([[0.0], [1.0]])  # a model's (N, 1) output for one target
    expected = torch.tensor([[stats["mean"][0]], [stats["mean"][0] + stats["std"][0]]])
    torch.testing.assert_close(denormalize_target(output, stats), expected)


def test_mismatched_statistics_are_refused() -> None:
    with pytest.raises(DataError, match="2 means and 2 stds, but targets of shape \\(3,\\) have 1"):
        normalize_target(torch.zeros(3), {"mean": [0.0, 1.0], "std": [1.0, 1.0]})
    with pytest.raises(DataError, match="must have keys 'mean' and 'std'"):
        denormalize_target(torch.zeros(3), {"mu": [0.0]})
    with pytest.raises(DataError, match=r"\(N,\) or \(N, k\), got shape \(2, 2, 2\)"):
        fit_target_normalization(torch.zeros(2, 2, 2))

"""load_data over every source: digits, synthetic, mnist1d, csv, npz; argument checks."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainwise.data import DATASETS, builtin, load_data
from trainwise.errors import ConfigError, DataError, DataNotFoundError


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --- built-in data sets -------------------------------------------------------------------------


def test_digits() -> None:
    bundle = load_data("digits", seed=0)
    assert bundle.input_shape == (1, 8, 8)
    assert (bundle.task, bundle.num_classes, bundle.num_outputs) == ("classification", 10, 10)
    assert bundle.class_names == [str(digit) for digit in range(10)]
    # 1,797 samples: 20% (359) to test, then 10% of the remaining 1,438 (144) to validation.
    assert [len(split[0]) for split in (bundle.train, bundle.val, bundle.test)] == [1294, 144, 359]
    assert bundle.train[0].shape[1:] == (1, 8, 8) and bundle.train[0].dtype == torch.float32
    assert bundle.train[1].dtype == torch.int64
    assert "train=1294" in repr(bundle)


def test_digits_raw_values_are_scaled_to_unit_range() -> None:
    bundle = load_data("digits", normalize=False, val_fraction=0, test_fraction=0)
    x, _ = bundle.train
    assert bundle.normalization is None and bundle.val is None and bundle.test is None
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_synthetic_is_seeded(task: str) -> None:
    first = load_data("synthetic", task=task, seed=3)
    again = load_data("synthetic", task=task, seed=3)
    other = load_data("synthetic", task=task, seed=4)
    assert torch.equal(first.train[0], again.train[0]) and torch.equal(first.test[1], again.test[1])
    assert not torch.equal(first.train[1], other.train[1])
    assert first.input_shape == (20,) and first.task == task
    total = sum(len(split[0]) for split in (first.train, first.val, first.test))
    assert total == 2000


def test_synthetic_classification_has_ten_balanced_classes() -> None:
    bundle = load_data("synthetic", val_fraction=0, test_fraction=0)
    assert (bundle.num_classes, bundle.num_outputs) == (10, 10)
    assert torch.bincount(bundle.train[1]).tolist() == [200] * 10


def test_synthetic_regression_targets() -> None:
    bundle = load_data("synthetic", task="regression")
    assert bundle.num_classes is None and bundle.num_outputs == 1 and bundle.class_names is None
    y = bundle.train[1]
    assert y.dtype == torch.float32 and y.shape == (len(bundle.train[0]),)
    assert float(y.std()) > 0.5  # a real signal, not noise around zero


SMALL_MNIST1D = {
    "x": np.zeros((30, 40)),
    "y": np.arange(30) % 10,
    "x_test": np.ones((10, 40)),
    "y_test": np.arange(10),
}


@pytest.mark.slow  # generating MNIST-1D takes a few seconds of CPU
def test_mnist1d_is_generated_locally_with_the_official_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python_state, numpy_state = random.getstate(), np.random.get_state()
    bundle = load_data("mnist1d", root=tmp_path, val_fraction=0.1, test_fraction=0.5, seed=1)
    # The package reseeds the global generators; load_data gives them back untouched.
    assert random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert bundle.input_shape == (1, 40) and bundle.train[0].shape[1:] == (1, 40)
    assert [len(split[0]) for split in (bundle.train, bundle.val, bundle.test)] == [3600, 400, 1000]
    assert bundle.num_classes == 10 and bundle.class_names == [str(d) for d in range(10)]
    assert (tmp_path / "mnist1d.npz").is_file()

    def must_not_run() -> None:
        raise AssertionError("MNIST-1D was generated again although the cache exists")

    monkeypatch.setattr(builtin, "_generate_mnist1d", must_not_run)
    again = load_data("mnist1d", root=tmp_path, val_fraction=0.1, seed=1)
    assert torch.equal(bundle.test[0], again.test[0]) and torch.equal(bundle.val[1], again.val[1])


def test_mnist1d_reuses_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def generate() -> dict[str, np.ndarray]:
        calls.append(1)
        return SMALL_MNIST1D

    monkeypatch.setattr(builtin, "_generate_mnist1d", generate)
    first = load_data("mnist1d", root=tmp_path / "cache", val_fraction=0, normalize=False)
    second = load_data("mnist1d", root=tmp_path / "cache", val_fraction=0, normalize=False)
    assert len(calls) == 1
    assert torch.equal(first.train[0], second.train[0]) and len(first.test[0]) == 10


def test_mnist1d_default_cache_is_under_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: SMALL_MNIST1D)
    load_data("mnist1d", val_fraction=0)
    assert (tmp_path / "trainwise" / "mnist1d.npz").is_file()


def test_mnist1d_regenerates_an_unreadable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: SMALL_MNIST1D)
    (tmp_path / "mnist1d.npz").write_bytes(b"garbage")
    bundle = load_data("mnist1d", root=tmp_path, val_fraction=0, normalize=False)
    assert "unreadable" in caplog.text
    assert torch.equal(bundle.test[0], torch.ones(10, 1, 40))
    with np.load(tmp_path / "mnist1d.npz") as cached:
        assert cached["x"].shape == (30, 40)


# --- csv ---------------------------------------------------------------------------------------


def test_csv_classification_with_string_labels(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "flowers.csv",
        [
            "length,width,species",
            "1.0,2.0,virginica",
            "3,4,setosa",
            "5,6.5,versicolor",
            "7,8,setosa",
            "",
            "9,10,virginica",
        ],
    )
    bundle = load_data("csv", path=path, val_fraction=0, test_fraction=0, normalize=False)
    assert bundle.task == "classification" and bundle.name == "flowers"
    assert bundle.class_names == ["setosa", "versicolor", "virginica"]
    assert (bundle.num_classes, bundle.num_outputs, bundle.input_shape) == (3, 3, (2,))
    x, y = bundle.train
    assert y.tolist() == [2, 0, 1, 0, 2]
    assert x.tolist() == [[1, 2], [3, 4], [5, 6.5], [7, 8], [9, 10]]


def test_csv_integer_target_is_classification_sorted_numerically(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", ["a,label"] + [f"{i},{[2, 10, 1][i % 3]}" for i in range(9)]
    )
    bundle = load_data("csv", path=path, val_fraction=0, test_fraction=0)
    assert bundle.class_names == ["1", "2", "10"]
    assert bundle.train[1].tolist() == [1, 2, 0] * 3


def test_csv_regression_with_named_target(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "houses.csv",
        [
            "rooms,price,age",
            "3,100.5,10",
            "4,150.25,5",
            "2,80.0,30",
            "5,210.75,1",
        ],
    )
    bundle = load_data(
        "csv",
        path=path,
        target="price",
        val_fraction=0,
        test_fraction=0,
        normalize=False,
        standardize_target=False,
    )
    assert (bundle.task, bundle.num_classes, bundle.num_outputs) == ("regression", None, 1)
    x, y = bundle.train
    assert y.dtype == torch.float32 and y.tolist() == [100.5, 150.25, 80.0, 210.75]
    assert x.tolist() == [[3, 10], [4, 5], [2, 30], [5, 1]]


def test_csv_task_override_makes_integers_a_regression_target(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["a,b", "1,3", "2,4", "3,5"])
    bundle = load_data(
        "csv",
        path=path,
        task="regression",
        val_fraction=0,
        test_fraction=0,
        standardize_target=False,
    )
    assert bundle.task == "regression" and bundle.train[1].tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("lines", "kwargs", "error", "match"),
    [
        (
            ["size,color,y", "1,red,0", "2,3,1"],
            {},
            DataError,
            r"feature column 'color' holds numbers and the text 'red' on line 2 \(a missing-value marker\?\)",
        ),
        (["a,y", "1,0", "2"], {}, DataError, "line 3: 1 values but the header has 2 columns"),
        (["a,b,y", "1,,0"], {}, DataError, "line 2: empty value in column 'b'"),
        (["1,2,3", "4,5,6"], {}, DataError, "has no header"),
        ([""], {}, DataError, "is empty"),
        (["a,y"], {}, DataError, "has a header but no rows of data"),
        (
            ["a,y", "1,cat"],
            {"task": "regression"},
            DataError,
            "target column 'y' has the non-numeric value 'cat'",
        ),
        (
            ["a,label", "1,0"],
            {"target": "lable"},
            ConfigError,
            "target column 'lable' is not in .*did you mean 'label'\\? columns: a, label",
        ),
        (
            ["a,y", "nan,1", "2,0", "inf,1"],
            {},
            DataError,
            r"x has 2 NaN/Inf values, first in row 0",
        ),
    ],
)
def test_csv_errors(
    tmp_path: Path, lines: list[str], kwargs: dict, error: type[Exception], match: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", lines)
    with pytest.raises(error, match=match):
        load_data("csv", path=path, **kwargs)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"csv file .*missing.csv does not exist"):
        load_data("csv", path=tmp_path / "missing.csv")


# --- npz ---------------------------------------------------------------------------------------


def test_npz_without_official_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_npz(tmp_path / "images.npz", x=rng.random((50, 3, 4, 4)), y=np.arange(50) % 5)
    bundle = load_data("npz", path=path, val_fraction=0.2, test_fraction=0.2)
    assert bundle.input_shape == (3, 4, 4) and bundle.name == "images"
    assert (bundle.task, bundle.num_classes, bundle.class_names) == ("classification", 5, None)
    assert [len(split[0]) for split in (bundle.train, bundle.val, bundle.test)] == [32, 8, 10]
    assert len(bundle.normalization["mean"]) == 3


def test_npz_official_splits_are_used_as_given(tmp_path: Path) -> None:
    x, x_val, x_test = (np.full((n, 2), float(n)) for n in (6, 3, 4))
    path = write_npz(
        tmp_path / "d.npz",
        x=x,
        y=np.arange(6) % 2,
        x_val=x_val,
        y_val=np.array([0, 1, 1]),
        x_test=x_test,
        y_test=np.array([1, 0, 0, 1]),
        class_names=np.array(["cat", "dog"]),
    )
    bundle = load_data("npz", path=path, val_fraction=0.5, test_fraction=0.5, normalize=False)
    assert bundle.train[0].tolist() == x.tolist() and bundle.train[1].tolist() == [0, 1] * 3
    assert bundle.val[0].tolist() == x_val.tolist() and bundle.val[1].tolist() == [0, 1, 1]
    assert bundle.test[0].tolist() == x_test.tolist() and bundle.test[1].tolist() == [1, 0, 0, 1]
    assert bundle.class_names == ["cat", "dog"] and bundle.num_classes == 2


def test_npz_official_test_with_fractional_validation(tmp_path: Path) -> None:
    path = write_npz(
        tmp_path / "d.npz",
        x=np.zeros((40, 3)),
        y=np.arange(40) % 4,
        x_test=np.zeros((7, 3)),
        y_test=np.arange(7) % 4,
    )
    bundle = load_data("npz", path=path, val_fraction=0.25, test_fraction=0.5)
    assert [len(split[0]) for split in (bundle.train, bundle.val, bundle.test)] == [30, 10, 7]


def test_npz_multi_target_regression(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "r.npz", x=np.ones((20, 4)), y=np.ones((20, 2), np.float32))
    bundle = load_data("npz", path=path)
    assert (bundle.task, bundle.num_outputs, bundle.num_classes) == ("regression", 2, None)
    assert bundle.train[1].shape[1:] == (2,) and bundle.train[1].dtype == torch.float32


def test_npz_one_dimensional_x_is_one_feature(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "r.npz", x=np.arange(10.0), y=np.arange(10.0))
    bundle = load_data("npz", path=path, val_fraction=0, test_fraction=0)
    assert bundle.input_shape == (1,)


@pytest.mark.parametrize(
    ("arrays", "kwargs", "match"),
    [
        ({"y": np.zeros(3)}, {}, "needs arrays 'x' and 'y', found: y"),
        (
            {"x": np.zeros((3, 2)), "y": np.zeros(3, int), "x_val": np.zeros((1, 2))},
            {},
            "has only one of 'x_val' and 'y_val'",
        ),
        ({"x": np.zeros((4, 2)), "y": np.zeros(3, int)}, {}, "x has 4 samples but y has 3"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, {}, "no samples"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 1])}, {}, "label -1 in row 1 is negative"),
        (
            {"x": np.zeros((3, 2)), "y": np.array([0.5, 1, 2])},
            {"task": "classification"},
            "task is classification but y holds non-integer values",
        ),
        (
            {
                "x": np.zeros((3, 2)),
                "y": np.zeros(3, int),
                "x_test": np.zeros((2, 3)),
                "y_test": np.zeros(2, int),
            },
            {},
            r"samples have shape \(3,\) but the train samples \(2,\)",
        ),
        (
            {"x": np.zeros((3, 2)), "y": np.array([np.nan, 1.0, 2.0])},
            {},
            "y has 1 NaN/Inf values, first in row 0",
        ),
        ({"x": np.zeros((3, 2)), "y": np.array(["a", "b", "c"])}, {}, "y must be numeric"),
        (
            {
                "x": np.zeros((3, 2)),
                "y": np.zeros(3, int),
                "class_names": np.array(["only"]),
                "y_test": np.ones(1, int),
                "x_test": np.zeros((1, 2)),
            },
            {},
            "label 1 in row 0 is out of range for num_classes=1",
        ),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, kwargs: dict, match: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_data("npz", path=path, val_fraction=0, test_fraction=0, **kwargs)


def test_npz_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read npz file .*bad.npz"):
        load_data("npz", path=path)


# --- normalization ------------------------------------------------------------------------------


def test_normalization_statistics_are_exact_and_from_train_only(tmp_path: Path) -> None:
    path = write_npz(
        tmp_path / "n.npz",
        x=np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]]),
        y=np.arange(3.0),
        x_val=np.array([[8.0, 12.0]]),
        y_val=np.zeros(1),
        x_test=np.array([[-2.0, 9.0]]),
        y_test=np.zeros(1),
    )
    bundle = load_data("npz", path=path)
    std = math.sqrt(8 / 3)
    assert bundle.normalization["mean"] == pytest.approx([2.0, 10.0], abs=1e-6)
    assert bundle.normalization["std"] == pytest.approx([std, 1.0], abs=1e-6)  # constant -> 1
    torch.testing.assert_close(bundle.train[0], torch.tensor([[-2 / std, 0], [0, 0], [2 / std, 0]]))
    torch.testing.assert_close(bundle.val[0], torch.tensor([[6 / std, 2.0]]))
    torch.testing.assert_close(bundle.test[0], torch.tensor([[-4 / std, -1.0]]))


def test_image_normalization_is_per_channel_on_train_split() -> None:
    raw = load_data("digits", normalize=False, seed=5)
    normalized = load_data("digits", normalize=True, seed=5)
    train_x = raw.train[0]
    assert normalized.normalization["mean"] == pytest.approx([float(train_x.mean())], rel=1e-5)
    assert normalized.normalization["std"] == pytest.approx(
        [float(train_x.std(correction=0))], rel=1e-5
    )
    all_x = torch.cat([raw.train[0], raw.val[0], raw.test[0]])
    assert normalized.normalization["mean"][0] != pytest.approx(float(all_x.mean()), rel=1e-6)
    expected_test = (raw.test[0] - train_x.mean()) / train_x.std(correction=0)
    torch.testing.assert_close(normalized.test[0], expected_test, rtol=1e-5, atol=1e-5)


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "kwargs", "match"),
    [
        ("mnst", {}, "unknown dataset 'mnst'; did you mean 'mnist'\\? available: csv, digits"),
        ("imagenet", {}, "unknown dataset 'imagenet'; did you mean 'imagefolder'\? available: " + ", ".join(DATASETS)),
        ("digits", {"val_fraction": 1.5}, r"val_fraction must be in \[0, 1\), got 1.5"),
        ("digits", {"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1.0"),
        ("digits", {"test_fraction": -0.1}, r"test_fraction must be in \[0, 1\), got -0.1"),
        ("digits", {"root": "/data"}, "root is not used by dataset 'digits', got root='/data'"),
        ("synthetic", {"target": "y"}, "target is not used by dataset 'synthetic'"),
        ("npz", {}, "dataset 'npz' needs path="),
        ("digits", {"task": "regression"}, "'digits' is a classification data set"),
        ("synthetic", {"task": "ranking"}, "task must be one of classification, regression"),
        ("digits", {"seed": "1"}, "seed must be an integer, got '1'"),
    ],
)
def test_argument_errors(dataset: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_data(dataset, **kwargs)

"""MNIST and Fashion-MNIST from IDX files: the real MNIST files and small files written here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from trainwise.data import load_data
from trainwise.data.idx import parse_idx, read_idx
from trainwise.errors import DataError, DataNotFoundError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist"

# Label counts of the official MNIST files (LeCun et al.), train and t10k.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype[type_code]).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    data = idx_bytes(array)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_fake_mnist(
    root: Path, *, gz: bool, train: int = 20, test: int = 6, size: int = 6
) -> dict[str, np.ndarray]:
    """Four small IDX files with the official names; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(test, dtype=np.uint8) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / name, array, gz=gz)
    return arrays


@pytest.mark.parametrize(
    ("type_code", "values"),
    [
        (0x08, np.array([[0, 255], [7, 9]], dtype=np.uint8)),
        (0x09, np.array([-128, 0, 127], dtype=np.int8)),
        (0x0B, np.array([[-300, 2], [5, 30000]], dtype=np.int16)),
        (0x0C, np.array([-70000, 1], dtype=np.int32)),
        (0x0D, np.array([[0.5, -1.25, 3.0]], dtype=np.float32)),
        (0x0E, np.array([1e-300, -2.5], dtype=np.float64)),
    ],
)
def test_parse_idx_reads_every_type_exactly(type_code: int, values: np.ndarray) -> None:
    parsed = parse_idx(idx_bytes(values, type_code), source="test")
    assert parsed.shape == values.shape
    np.testing.assert_array_equal(parsed, values)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not an IDX file"),
        (
            b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00",
            "must start with two zero bytes",
        ),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
        (b"\x00\x00\x08\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00", r"has 10 bytes .* needs 13"),
    ],
)
def test_parse_idx_rejects_malformed_files(data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_idx(data, source="file.idx")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_small_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_fake_mnist(tmp_path, gz=gz)
    bundle = load_data("mnist", root=tmp_path, val_fraction=0.25, normalize=False, seed=0)

    assert bundle.input_shape == (1, 6, 6)
    assert (bundle.num_classes, bundle.num_outputs, bundle.task) == (10, 10, "classification")
    assert bundle.class_names == [str(digit) for digit in range(10)]
    assert bundle.name == "mnist"
    x_test, y_test = bundle.test
    # The official test split is kept, in file order, scaled to [0, 1].
    expected_test = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
    torch.testing.assert_close(x_test, expected_test.unsqueeze(1), rtol=0, atol=0)
    assert y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert (len(bundle.train[0]), len(bundle.val[0])) == (15, 5)
    pool_x = torch.cat([bundle.train[0], bundle.val[0]])
    expected_pool = arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    assert sorted(map(tuple, pool_x.flatten(1).tolist())) == sorted(
        map(tuple, expected_pool.reshape(20, -1).tolist())
    )
    assert bundle.train[0].dtype == torch.float32 and bundle.train[1].dtype == torch.int64


def test_fashion_mnist_reads_the_torchvision_layout(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "FashionMNIST/raw", gz=True)
    bundle = load_data("fashion-mnist", root=tmp_path, seed=0)
    assert bundle.class_names[0] == "T-shirt/top" and bundle.class_names[9] == "Ankle boot"
    assert len(bundle.test[0]) == 6


@pytest.mark.parametrize(
    ("dataset", "source"),
    [("mnist", "yann.lecun.com/exdb/mnist"), ("fashion-mnist", "zalandoresearch/fashion-mnist")],
)
def test_missing_folder_says_where_to_get_the_files(
    tmp_path: Path, dataset: str, source: str
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match=f"folder {missing} does not exist.*{source}"):
        load_data(dataset, root=missing)


def test_missing_file_is_named(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found in .*ossci-datasets"
    ):
        load_data("mnist", root=tmp_path)


def test_malformed_header_in_mnist_folder(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x99" + path.read_bytes()[3:])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has unknown IDX type code 0x99"):
        load_data("mnist", root=tmp_path)


def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*train-images-idx3-ubyte.gz"):
        load_data("mnist", root=tmp_path)


@pytest.mark.parametrize(
    ("name", "array", "match"),
    [
        ("train-labels-idx1-ubyte", np.zeros(7, np.uint8), r"one label per image .*\(20\)"),
        ("train-images-idx3-ubyte", np.zeros((20, 36), np.uint8), r"images of shape \(N, H, W\)"),
        ("t10k-images-idx3-ubyte", np.zeros((6, 5, 5), np.uint8), r"train images are \(6, 6\)"),
        ("train-labels-idx1-ubyte", np.full(20, 12, np.uint8), "label 12 in row 0 is out of range"),
    ],
)
def test_inconsistent_idx_files(tmp_path: Path, name: str, array: np.ndarray, match: str) -> None:
    write_fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / name, array, gz=False)
    with pytest.raises(DataError, match=match):
        load_data("mnist", root=tmp_path)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST files not in {SHARED_MNIST}")
def test_real_mnist() -> None:
    labels = read_idx(SHARED_MNIST / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels[:5].tolist() == [5, 0, 4, 1, 9]

    bundle = load_data("mnist", root=SHARED_MNIST, seed=0)
    (x, y), (x_val, y_val), (x_test, y_test) = bundle.train, bundle.val, bundle.test
    assert x.shape == (54000, 1, 28, 28) and x_val.shape == (6000, 1, 28, 28)
    assert x_test.shape == (10000, 1, 28, 28) and bundle.input_shape == (1, 28, 28)
    assert torch.bincount(y_test).tolist() == MNIST_TEST_COUNTS
    assert (torch.bincount(y) + torch.bincount(y_val)).tolist() == MNIST_TRAIN_COUNTS
    # Stratified: each class gives 10% of its samples to validation, up to rounding.
    expected_val = torch.tensor(MNIST_TRAIN_COUNTS) * 0.1
    assert (torch.bincount(y_val) - expected_val).abs().max() <= 1
    # Statistics of the train split only; the whole MNIST train set has mean 0.1307, std 0.3081.
    assert bundle.normalization["mean"][0] == pytest.approx(0.1307, abs=2e-3)
    assert bundle.normalization["std"][0] == pytest.approx(0.3081, abs=2e-3)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)


def test_default_root_is_in_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"trainwise/mnist does not exist.*data\.root"):
        load_data("mnist")
    write_fake_mnist(tmp_path / "trainwise" / "mnist", gz=True)
    assert len(load_data("mnist").test[0]) == 6

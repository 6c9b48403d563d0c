"""MNIST and Fashion-MNIST from their original IDX files, gzipped or not.

The IDX format: two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the values, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from trainwise.data.bundle import RawData
from trainwise.errors import DataError, DataNotFoundError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SOURCES = {
    "mnist": "https://yann.lecun.com/exdb/mnist/ or the mirror "
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)",
}

# torchvision keeps the same files under <root>/<Name>/raw; accept that layout too.
TORCHVISION_FOLDERS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}

CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


def parse_idx(data: bytes, *, source: str) -> np.ndarray:
    """Decode the bytes of one IDX file into an array of its shape and type.

    Raises:
        DataError: The header is malformed or the length does not match the dimensions;
            ``source`` names the file in the message.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{source} is not an IDX file: it must start with two zero bytes, got "
            f"{data[:4].hex() or 'an empty file'}; re-download it"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataError(
            f"{source} has unknown IDX type code 0x{type_code:02x}; expected one of "
            f"{', '.join(f'0x{code:02x}' for code in IDX_DTYPES)}; re-download it"
        )
    header_length = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_length:
        raise DataError(f"{source} has a truncated IDX header ({ndim} dimensions); re-download it")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = header_length + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{source} has {len(data)} bytes but its header {shape} of {dtype.name} needs "
            f"{expected}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_length).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, decompressing it when its name ends in ``.gz``."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error}; re-download it") from error
    return parse_idx(data, source=str(path))


def _find_file(root: Path, dataset: str, stem: str) -> Path:
    folders = (root, root / TORCHVISION_FOLDERS[dataset])
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataNotFoundError(
        f"{dataset} file {stem}[.gz] not found in {root}; put the four IDX files "
        f"({', '.join(IDX_FILES.values())}, gzipped or not) there, from {SOURCES[dataset]}, "
        "and point root (data.root) at that folder"
    )


def _images_and_labels(root: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_file(root, dataset, IDX_FILES[f"{split}_images"])
    labels_path = _find_file(root, dataset, IDX_FILES[f"{split}_labels"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path} must hold uint8 images of shape (N, H, W), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path} must hold one label per image of {images_path} ({len(images)}), "
            f"got shape {labels.shape}"
        )
    return images, labels


def load_idx_dataset(dataset: str, root: Path) -> RawData:
    """MNIST or Fashion-MNIST from ``root``: images scaled to [0, 1], official test split kept.

    Raises:
        DataNotFoundError: ``root`` or one of the four files is missing.
        DataError: A file is not valid IDX or its shape is not images/labels.
    """
    if not root.is_dir():
        raise DataNotFoundError(
            f"{dataset} folder {root} does not exist; download the four IDX files "
            f"({', '.join(IDX_FILES.values())}) from {SOURCES[dataset]} into a folder and "
            "point root (data.root) at it"
        )
    arrays = {split: _images_and_labels(root, dataset, split) for split in ("train", "test")}
    train_size, test_size = arrays["train"][0].shape[1:], arrays["test"][0].shape[1:]
    if train_size != test_size:
        raise DataError(
            f"{dataset} in {root}: train images are {train_size} but test images {test_size}; "
            "both files must come from the same data set"
        )

    def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
        return x, torch.from_numpy(labels.astype(np.int64))

    x, y = to_tensors(*arrays["train"])
    x_test, y_test = to_tensors(*arrays["test"])
    return RawData(
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        task="classification",
        num_classes=10,
        class_names=list(CLASS_NAMES[dataset]),
        name=dataset,
    )

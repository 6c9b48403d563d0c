"""Data sets that need no files from the user: digits, MNIST-1D and synthetic data."""

from __future__ import annotations

import logging
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from trainwise.data.bundle import RawData

logger = logging.getLogger(__name__)

MNIST1D_CACHE_NAME = "mnist1d.npz"
MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")

SYNTHETIC_SAMPLES = 2000
SYNTHETIC_FEATURES = 20
SYNTHETIC_CLASSES = 10


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/trainwise``, or ``~/.cache/trainwise`` when that is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trainwise"


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(images (N, 8, 8) float64 in 0..16, targets (N,) int)``, read from the CSV file it
    ships, as ``load_digits`` reads it, without importing ``sklearn.datasets`` (2+ s of imports: scipy, ...; every
    run of the digits example paid it); ``load_digits`` itself when the file is not where scikit-learn keeps it."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # finds the package without running its __init__
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def load_digits_data() -> RawData:
    """scikit-learn's bundled 8x8 digits (1,797 samples) as ``(N, 1, 8, 8)`` images in [0, 1]."""
    images, targets = _digits_arrays()
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(targets.astype(np.int64))
    return RawData(
        x=x,
        y=y,
        task="classification",
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
        name="digits",
    )


def _generate_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global random and NumPy generators; give the caller theirs back.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {name: np.asarray(data[name]) for name in MNIST1D_ARRAYS}


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            return {name: cached[name] for name in MNIST1D_ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("MNIST-1D cache %s is unreadable (%s); generating it again", path, error)
        return None


def _write_mnist1d_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Write to a temporary name and rename, so an interrupted run never leaves half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            np.savez(
                handle,
                x=arrays["x"],
                y=arrays["y"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
            )
        os.replace(temporary, path)
    except OSError as error:
        logger.warning(
            "cannot write the MNIST-1D cache %s (%s); it will be regenerated", path, error
        )
        temporary.unlink(missing_ok=True)


def load_mnist1d(root: Path | None) -> RawData:
    """MNIST-1D with the ``mnist1d`` package's default arguments: 4,000 train, 1,000 test.

    The data are generated locally (never downloaded), a few seconds the first time, and kept
    as ``mnist1d.npz`` under ``root`` (default: ``~/.cache/trainwise``). Sequences have shape
    ``(N, 1, 40)``; the package's own test split is kept.
    """
    cache_path = (root if root is not None else default_cache_dir()) / MNIST1D_CACHE_NAME
    arrays = _read_mnist1d_cache(cache_path)
    if arrays is None:
        logger.info("generating MNIST-1D into %s", cache_path)
        arrays = _generate_mnist1d()
        _write_mnist1d_cache(cache_path, arrays)

    def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        sequences = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
        return sequences, torch.from_numpy(y.astype(np.int64))

    x, y = to_tensors(arrays["x"], arrays["y"])
    x_test, y_test = to_tensors(arrays["x_test"], arrays["y_test"])
    return RawData(
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        task="classification",
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
        name="mnist1d",
    )


def make_synthetic(task: str, seed: int) -> RawData:
    """2,000 seeded samples with 20 features.

    Classification: 10 Gaussian blobs of equal size whose centers overlap a little, so a
    model can learn it well but not perfectly. Regression: a linear term plus a sine and an
    interaction of features, with a little noise; one target.
    """
    rng = np.random.default_rng(seed)
    shape = (SYNTHETIC_SAMPLES, SYNTHETIC_FEATURES)
    if task == "classification":
        centers = rng.normal(0.0, 0.6, (SYNTHETIC_CLASSES, SYNTHETIC_FEATURES))
        labels = rng.permutation(np.arange(SYNTHETIC_SAMPLES) % SYNTHETIC_CLASSES)
        x = centers[labels] + rng.normal(0.0, 1.0, shape)
        y = torch.from_numpy(labels.astype(np.int64))
        num_classes: int | None = SYNTHETIC_CLASSES
    else:
        x = rng.normal(0.0, 1.0, shape)
        weights = rng.normal(0.0, 1.0, SYNTHETIC_FEATURES) / np.sqrt(SYNTHETIC_FEATURES)
        target = x @ weights + np.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
        target += rng.normal(0.0, 0.1, SYNTHETIC_SAMPLES)
        y = torch.from_numpy(target.astype(np.float32))
        num_classes = None
    return RawData(
        x=torch.from_numpy(x.astype(np.float32)),
        y=y,
        task=task,
        num_classes=num_classes,
        class_names=None,
        name="synthetic",
    )

"""``load_data``: one call from a data set's name to checked, split, normalized tensors."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import torch

from trainwise.data.builtin import default_cache_dir, load_digits_data, load_mnist1d, make_synthetic
from trainwise.data.bundle import DataBundle, RawData, Split
from trainwise.data.checks import check_arrays, check_task
from trainwise.data.idx import load_idx_dataset
from trainwise.data.normalization import (
    fit_normalization,
    fit_target_normalization,
    normalize_,
    normalize_target,
)
from trainwise.data.splits import check_fraction, make_splits
from trainwise.data.tabular import load_csv, load_npz
from trainwise.checks import check_choice, closest
from trainwise.data.missing import fill_from_train
from trainwise.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DATASETS = ("csv", "digits", "fashion-mnist", "imagefolder", "mnist", "mnist1d", "npz", "synthetic", "text")
# Read from disk batch by batch, not into tensors: trainwise.data.load_text, load_image_folder.
DISK_DATASETS = {"imagefolder": "trainwise.data.image_folder.load_image_folder",
                 "text": "trainwise.data.text_data.load_text"}

# The optional arguments each data set reads; giving one it ignores is a mistake worth a message.
ARGUMENTS_USED = {
    "csv": ("path", "target", "drop_columns", "missing"),
    "digits": (),
    "fashion-mnist": ("root",),
    "mnist": ("root",),
    "mnist1d": ("root",),
    "npz": ("path",),
    "synthetic": (),
}
CLASSIFICATION_ONLY = ("digits", "fashion-mnist", "mnist", "mnist1d")


def _check_arguments(dataset: str, given: dict[str, object], task: str | None) -> None:
    if dataset not in DATASETS:
        match = closest(dataset, DATASETS)
        hint = f"did you mean {match!r}? " if match else ""
        raise ConfigError(f"unknown dataset {dataset!r}; {hint}available: {', '.join(DATASETS)}")
    if dataset in DISK_DATASETS:
        raise ConfigError(f"dataset {dataset!r} is read from disk batch by batch, not into tensors; load it with "
                          f"{DISK_DATASETS[dataset]}")
    for name, value in given.items():
        if value is not None and name not in ARGUMENTS_USED[dataset]:
            raise ConfigError(
                f"{name} is not used by dataset {dataset!r}, got {name}={value!r}; leave it None"
            )
    check_task(task, allow_none=True)
    if dataset in CLASSIFICATION_ONLY and task not in (None, "classification"):
        raise ConfigError(
            f"dataset {dataset!r} is a classification data set, got task={task!r}; leave task None"
        )


def _read_source(
    dataset: str,
    *,
    root: Path | None,
    path: Path | None,
    target: str | None,
    task: str | None,
    seed: int,
    drop_columns: list[str] | None = None,
    missing: str = "refuse",
) -> RawData:
    if dataset == "digits":
        return load_digits_data()
    if dataset in ("mnist", "fashion-mnist"):
        return load_idx_dataset(
            dataset, root if root is not None else default_cache_dir() / dataset
        )
    if dataset == "mnist1d":
        return load_mnist1d(root)
    if dataset == "synthetic":
        return make_synthetic(task or "classification", seed)
    if path is None:
        raise ConfigError(
            f"dataset {dataset!r} needs path= (data.path), the file to read, got None"
        )
    raw = load_csv(path, target=target, task=task, drop=drop_columns, missing=missing) if dataset == "csv" else \
        load_npz(path, task=task)
    raw.details["file_sha256"] = file_sha256(Path(path))  # evaluate --split re-splits this file: it must not change
    return raw


def file_sha256(path: Path) -> str:
    """The SHA-256 of a data file's bytes: data.json records it, and a later re-split checks it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gaps_as_zeros(raw: RawData, gaps: dict[str, int]) -> RawData:
    """``raw`` for the data checks, its NaN at the gaps to be filled read as 0 (any other NaN still fails)."""
    x = raw.x.clone()
    for position in gaps.values():
        x[:, position] = torch.nan_to_num(x[:, position], nan=0.0)
    return dataclasses.replace(raw, x=x)


def _check_raw(raw: RawData) -> None:
    parts = [
        ("data (x, y)", raw.x, raw.y),
        ("validation data (x_val, y_val)", raw.x_val, raw.y_val),
        ("test data (x_test, y_test)", raw.x_test, raw.y_test),
    ]
    for label, x, y in parts:
        if x is None or y is None:
            continue
        where = f"{raw.name!r} {label}"
        check_arrays(x, y, task=raw.task, num_classes=raw.num_classes, where=where)
        if x.shape[1:] != raw.x.shape[1:]:
            raise DataError(
                f"{where}: samples have shape {tuple(x.shape[1:])} but the train samples "
                f"{tuple(raw.x.shape[1:])}; every split needs the same sample shape"
            )
        if raw.task == "regression" and (y.dim() > 2 or y.shape[1:] != raw.y.shape[1:]):
            raise DataError(
                f"{where}: regression targets must be (N,) or (N, k) with the same k in every "
                f"split, got {tuple(y.shape)} and {tuple(raw.y.shape)} for the train targets"
            )


def load_data(
    dataset: str,
    *,
    root: str | Path | None = None,
    path: str | Path | None = None,
    target: str | None = None,
    task: str | None = None,
    drop_columns: list[str] | None = None,
    missing: str = "refuse",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    standardize_target: bool = True,
    seed: int = 0,
) -> DataBundle:
    """Load a data set, check it, split it and normalize it with train statistics.

    Args:
        dataset: ``digits``, ``mnist``, ``fashion-mnist``, ``mnist1d``, ``csv``, ``npz`` or
            ``synthetic``.
        root: Folder of the MNIST/Fashion-MNIST IDX files (default
            ``~/.cache/trainwise/<dataset>``), or of the MNIST-1D cache (default
            ``~/.cache/trainwise``).
        path: The file for ``csv`` and ``npz``.
        target: The target column of a CSV file; default its last column.
        drop_columns: Columns of a CSV file that are not features (an id, a date); left out.
        missing: ``refuse`` (a CSV's missing value is an error) or ``fill``: a numeric feature's gaps get
            the training split's median and a ``<column>_missing`` indicator, a text one's the category
            ``(missing)`` (``data/missing.py``).
        task: ``"classification"`` or ``"regression"``; None guesses it from the targets
            (csv, npz) or takes the data set's own (classification for ``synthetic``).
        val_fraction: Share of the training pool held out for validation, in [0, 1); 0 gives
            no validation split. Ignored when an npz file has ``x_val``.
        test_fraction: Share of all samples held out for testing, in [0, 1); 0 gives no test
            split. Ignored where the data set has an official test split (mnist,
            fashion-mnist, mnist1d, npz with ``x_test``).
        normalize: Standardize inputs per channel (images, sequences) or per feature (tables)
            with statistics of the train split only.
        standardize_target: For regression, standardize each target column of every split
            with the train split's mean and std (a std of 0 counts as 1) and record them as
            ``target_normalization``, so a model's outputs and losses are on the scale of 1
            whatever the targets' units. Ignored for classification.
        seed: Seeds the splits and the synthetic data; the same seed gives the same bundle.

    Returns:
        The splits as CPU tensors with what a model needs to know about them.

    Raises:
        ConfigError: Unknown data set, bad fraction or task, an argument the data set does
            not use, a CSV target column that does not exist.
        DataNotFoundError: A file or folder is missing; the message says where to get it.
        DataError: The data are malformed: NaN/Inf, labels out of range, mismatched lengths,
            no samples, a non-numeric CSV feature, a corrupt IDX file.

    Example:
        >>> bundle = load_data("synthetic", task="regression", seed=1)
        >>> bundle.task, bundle.num_outputs, bundle.input_shape
        ('regression', 1, (20,))
    """
    check_choice("missing", missing, ("refuse", "fill"))
    _check_arguments(dataset, {"root": root, "path": path, "target": target, "drop_columns": drop_columns,
                               "missing": None if missing == "refuse" else missing}, task)
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    raw = _read_source(
        dataset,
        root=None if root is None else Path(root).expanduser(),
        path=None if path is None else Path(path).expanduser(),
        target=target,
        task=task,
        seed=seed,
        drop_columns=drop_columns,
        missing=missing,
    )
    gaps = raw.details.pop("missing_positions", {})
    _check_raw(_gaps_as_zeros(raw, gaps) if gaps else raw)
    train, val, test = make_splits(
        raw, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    if gaps:  # medians of the training rows only, then every split filled with them
        raw.details["missing_fill"] = fill_from_train((train, val, test), gaps)
    normalization = fit_normalization(train[0]) if normalize else None
    if normalization is not None:
        # Every split's x is a fresh tensor made by the source or the split, so in place is safe.
        for split in (train, val, test):
            if split is not None:
                normalize_(split[0], normalization)
    target_normalization = None
    if standardize_target and raw.task == "regression":
        target_normalization = fit_target_normalization(train[1])
        train = (train[0], normalize_target(train[1], target_normalization))
        val = _standardized(val, target_normalization)
        test = _standardized(test, target_normalization)
    logger.info(
        "loaded %s: %d train, %d val, %d test samples of shape %s",
        raw.name,
        len(train[1]),
        0 if val is None else len(val[1]),
        0 if test is None else len(test[1]),
        tuple(raw.x.shape[1:]),
    )
    return DataBundle(
        train=train,
        val=val,
        test=test,
        task=raw.task,
        num_classes=raw.num_classes,
        num_outputs=_num_outputs(raw),
        input_shape=tuple(raw.x.shape[1:]),
        normalization=normalization,
        class_names=raw.class_names,
        name=raw.name,
        target_normalization=target_normalization,
        details=dict(raw.details),
    )


def _standardized(split: Split | None, stats: dict[str, list[float]]) -> Split | None:
    """``split`` with its regression targets standardized (a new ``y``; ``x`` is shared)."""
    return None if split is None else (split[0], normalize_target(split[1], stats))


def _num_outputs(raw: RawData) -> int:
    if raw.num_classes is not None:
        return raw.num_classes
    return 1 if raw.y.dim() == 1 else int(raw.y.shape[1])

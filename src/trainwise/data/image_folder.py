"""``load_image_folder``: a folder of class folders of images as train/val/test splits.

Class names are the folder names, sorted; the splits are stratified and seeded. Normalization
statistics come from a sample of training images. Decoding runs in DataLoader workers. When the
decoded images fit in memory (``cache``: ``auto`` up to ``CACHE_BYTES``) every image is decoded
once, by the workers, and the splits are tensors: later epochs slice them and augment whole
batches on the device (``benchmarks/image_folder.py`` measures what that saves). Otherwise each
split is a ``Dataset`` that decodes, resizes, normalizes and augments one image per call, in the
workers.

Example:
    >>> bundle = load_image_folder("data/pets", image_size=(64, 64), num_workers=2)
    >>> bundle.class_names, bundle.input_shape
    (['cat', 'dog'], (3, 64, 64))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trainwise.data.augment import build_augment
from trainwise.data.bundle import DataBundle
from trainwise.data.images import ImageFile, check_same_size, decode_image, scan_image_folder
from trainwise.data.normalization import fit_normalization
from trainwise.data.splits import check_fraction, split_indices
from trainwise.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CACHE_BYTES = 1 << 30  # decoded float32 images kept in memory up to 1 GiB with cache: auto
NORMALIZATION_SAMPLE = 256  # training images decoded to fit the per-channel mean and std


class ImageFiles(Dataset):
    """Images decoded on each call: ``(float (C, H, W), label)``, scaled to [0, 1], normalized with
    ``normalization`` and augmented by ``augment(batch, generator)`` when given."""

    def __init__(self, files: Sequence[ImageFile], *, channels: int, size: tuple[int, int],
                 normalization: Optional[dict[str, list[float]]] = None, augment: Optional[Callable] = None) -> None:
        self.files, self.channels, self.size = list(files), channels, size
        self.mean = self.std = None
        if normalization is not None:
            self.mean = torch.tensor(normalization["mean"]).view(-1, 1, 1)
            self.std = torch.tensor(normalization["std"]).view(-1, 1, 1)
        self.augment = augment
        self._generator: Optional[torch.Generator] = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file = self.files[index]
        x = decode_image(file.path, channels=self.channels, size=self.size).float().div_(255)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.augment is not None:
            if self._generator is None:  # one per worker, seeded by the worker's torch seed
                self._generator = torch.Generator().manual_seed(torch.initial_seed())
            x = self.augment(x.unsqueeze(0), self._generator).squeeze(0)
        return x, file.label


class _Decoded(Dataset):
    """Each image as uint8, or the error that kept it from decoding (for the one-time cache pass)."""

    def __init__(self, files: Sequence[ImageFile], channels: int, size: tuple[int, int]) -> None:
        self.files, self.channels, self.size = files, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Union[torch.Tensor, str]:
        try:
            return decode_image(self.files[index].path, channels=self.channels, size=self.size)
        except DataError as exc:
            return str(exc)


def load_image_folder(root: Union[str, Path], *, image_size: Union[int, Sequence[int], None] = None,
                      channels: Optional[int] = None, strict: bool = False, val_fraction: float = 0.1,
                      test_fraction: float = 0.2, normalize: bool = True, augment: Any = None,
                      cache: Union[bool, str] = "auto", num_workers: int = 0, seed: int = 0) -> DataBundle:
    """Scan, split and (when it fits) decode a class-per-folder image tree.

    Args:
        root: the folder holding one folder per class.
        image_size: ``(H, W)`` or one side for squares: every image is resized to it. None: all
            images must share one size (else one message naming two files that differ).
        channels: 1 (grayscale) or 3 (colour); None: 3 when any image has colour, else 1.
        strict: refuse a corrupt image (named) instead of skipping it (named, and counted in
            ``details["skipped_images"]``, which the CLI puts into summary.json).
        val_fraction, test_fraction: stratified, seeded shares held out.
        normalize: standardize each channel with a training sample's mean and std.
        augment: an augmentation spec (``trainwise.data.build_augment``), applied to training images.
        cache: True, False or ``auto`` (decode everything once when it fits in ``CACHE_BYTES``).
        num_workers: DataLoader worker processes that decode.
        seed: the splits and the normalization sample.

    Raises:
        DataNotFoundError, DataError: see ``scan_image_folder``; differing sizes without ``image_size``.
    """
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if channels not in (None, 1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (colour), got {channels!r}")
    scanned = scan_image_folder(Path(root).expanduser(), strict=strict)
    size = _size(image_size) if image_size is not None else check_same_size(scanned.files)
    channels = channels or (3 if any(f.colour for f in scanned.files) else 1)
    files = scanned.files
    skipped = list(scanned.corrupt)
    if _use_cache(cache, len(files), channels, size):
        decoded, failed = _decode_all(files, channels, size, num_workers)
        if failed and strict:
            raise DataError(f"{failed[0]}; data.strict is true: remove or replace the file, or set data.strict=false")
        skipped += failed
        files = [f for f, image in zip(files, decoded) if image is not None]
        images = [image for image in decoded if image is not None]
    else:
        images = None
    for reason in skipped:
        logger.warning("skipped %s", reason)
    if len({f.label for f in files}) < 2:
        raise DataError(f"fewer than two classes under {root} hold a readable image; a classifier needs two")
    labels = np.array([f.label for f in files])
    parts = _split(labels, val_fraction, test_fraction, seed)
    shape = (channels, *size)
    spec_augment = build_augment(augment, dataset="imagefolder", input_shape=shape) if augment else None
    details = {"root": str(scanned.root), "images": len(files), "skipped_images": len(skipped),
               "skipped_files": skipped, "channels": channels, "image_size": list(size), "cached": images is not None}
    if images is not None:
        x = torch.stack(images).float().div_(255)
        normalization = fit_normalization(x[torch.as_tensor(parts["train"][:NORMALIZATION_SAMPLE])]) if normalize else None
        if normalization is not None:
            x = (x - torch.tensor(normalization["mean"]).view(1, -1, 1, 1)) / torch.tensor(
                normalization["std"]).view(1, -1, 1, 1)
        y = torch.as_tensor(labels, dtype=torch.int64)
        splits = {name: (x[index], y[index]) if len(index) else None for name, index in parts.items()}
    else:
        sample = [files[i] for i in parts["train"][:NORMALIZATION_SAMPLE]]
        normalization = fit_normalization(torch.stack([decode_image(f.path, channels=channels, size=size) for f in sample])
                             .float().div_(255)) if normalize else None
        splits = {name: ImageFiles([files[i] for i in index], channels=channels, size=size,
                                   normalization=normalization, augment=spec_augment if name == "train" else None)
                  if len(index) else None for name, index in parts.items()}
    return DataBundle(train=splits["train"], val=splits["val"], test=splits["test"], task="classification",
                      num_classes=len(scanned.classes), num_outputs=len(scanned.classes), input_shape=shape,
                      normalization=normalization, class_names=scanned.classes, name=Path(root).name,
                      details=details)


def _size(image_size: Union[int, Sequence[int]]) -> tuple[int, int]:
    sides = [image_size] if isinstance(image_size, int) else list(image_size)
    if len(sides) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sides):
        raise ConfigError(f"data.image_size must be [H, W] or one side, positive integers, got {image_size!r}")
    return (sides[0], sides[-1])


def _use_cache(cache: Union[bool, str], count: int, channels: int, size: tuple[int, int]) -> bool:
    if cache not in (True, False, "auto"):
        raise ConfigError(f"data.cache must be true, false or auto, got {cache!r}")
    return cache is True or (cache == "auto" and count * channels * size[0] * size[1] * 4 <= CACHE_BYTES)


def _decode_all(files: list[ImageFile], channels: int, size: tuple[int, int],
                workers: int) -> tuple[list[Optional[torch.Tensor]], list[str]]:
    """Every image decoded once, by ``workers`` processes; undecodable ones as None and named."""
    loader = DataLoader(_Decoded(files, channels, size), batch_size=64, num_workers=workers,
                        collate_fn=list)
    decoded: list[Optional[torch.Tensor]] = []
    failed: list[str] = []
    for batch in loader:
        for item in batch:
            if isinstance(item, str):
                failed.append(item)
                decoded.append(None)
            else:
                decoded.append(item)
    return decoded, failed


def _split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Stratified, seeded index sets: test from everything, then validation from the rest."""
    rng = np.random.default_rng(seed)
    pool, test = split_indices(len(labels), fraction=test_fraction, rng=rng, labels=labels)
    kept, val = split_indices(len(pool), fraction=val_fraction, rng=rng, labels=labels[pool])
    train = pool[kept][rng.permutation(len(kept))]  # shuffled: the normalization sample spans the classes
    return {"train": train, "val": pool[val], "test": test}

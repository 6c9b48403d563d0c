"""Batch sources for the loop: in-memory tensor slicing, or a ``DataLoader`` for big ``Dataset``s.

Both draw the epoch's sample order from ``(seed, epoch)`` alone and can start part-way into an
epoch, which is what makes a resumed run see the same remaining samples in the same order.

Example:
    >>> batches = InMemoryBatches(x, y, batch_size=64, shuffle=True, seed=0)
    >>> batches.set_epoch(0)
    >>> for xb, yb in batches: ...
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from trainwise.errors import DataError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class InMemoryBatches:
    """Batches by index slicing of tensors that already live on the training device.

    Args:
        x, y: whole split, first dimension = samples.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: draw a new permutation each epoch (from ``seed`` and the epoch number).
        seed: seed of the permutations and of the augmentation generator.
        augment: optional ``f(batch, generator) -> batch`` applied to training inputs.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool,
                 seed: int = 0, augment: Optional[Augment] = None) -> None:
        if len(x) != len(y):
            raise DataError(f"inputs and targets differ in length: {len(x)} inputs, {len(y)} targets")
        if batch_size <= 0:
            raise DataError(f"batch_size must be > 0, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.position = 0  # batches already consumed in this epoch
        self.order: Optional[torch.Tensor] = None
        self.aug_generator = torch.Generator(device=x.device) if augment else None

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def batch_sizes(self) -> list[int]:
        n, b = len(self.x), self.batch_size
        return [min(b, n - start) for start in range(0, n, b)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        self.order = epoch_permutation(len(self.x), self.seed, epoch).to(self.x.device) if self.shuffle else None
        if self.aug_generator is not None:
            self.aug_generator.manual_seed(self.seed * 7919 + epoch)

    def __iter__(self) -> Iterator[Batch]:
        x, y, b, order = self.x, self.y, self.batch_size, self.order
        for start in range(self.position * b, len(x), b):
            if order is None:
                xb, yb = x[start:start + b], y[start:start + b]
            else:
                index = order[start:start + b]
                xb, yb = x.index_select(0, index), y.index_select(0, index)
            if self.augment is not None:
                xb = self.augment(xb, self.aug_generator)
            self.position += 1
            yield xb, yb

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "position": self.position,
                                 "order": None if self.order is None else self.order.cpu()}
        if self.aug_generator is not None:
            state["aug_generator"] = self.aug_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(state["epoch"])
        self.position = state["position"]
        if state.get("order") is not None:
            self.order = state["order"].to(self.x.device)
        if self.aug_generator is not None and "aug_generator" in state:
            self.aug_generator.set_state(state["aug_generator"])


class _EpochSampler(Sampler[int]):
    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.order: list[int] = list(range(n))
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.order = epoch_permutation(self.n, self.seed, epoch).tolist() if self.shuffle else list(range(self.n))
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.start:])

    def __len__(self) -> int:
        return self.n - self.start


class DatasetBatches:
    """A map-style ``Dataset`` through a ``DataLoader`` with workers, ordered by our own sampler
    so the order is a function of (seed, epoch) and resume can start mid-epoch."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int = 0,
                 num_workers: int = 0, pin_memory: bool = False, device: torch.device | None = None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.sampler = _EpochSampler(len(dataset), seed, shuffle)  # type: ignore[arg-type]
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
                                 pin_memory=pin_memory, persistent_workers=num_workers > 0)
        self.epoch = 0
        self.position = 0

    @property
    def num_samples(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def batch_sizes(self) -> list[int]:
        n, b = self.num_samples, self.batch_size
        return [min(b, n - start) for start in range(0, n, b)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        self.sampler.set_epoch(self.epoch, start=self.position * self.batch_size)
        non_blocking = self.device.type == "cuda"
        for xb, yb in self.loader:
            self.position += 1
            yield xb.to(self.device, non_blocking=non_blocking), yb.to(self.device, non_blocking=non_blocking)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(state["epoch"])
        self.position = state["position"]


class UserLoaderBatches:
    """A user's own ``DataLoader``, used as it is. Mid-epoch resume skips the batches already
    seen, which is exact only when the loader's order is deterministic for the epoch."""

    def __init__(self, loader: DataLoader, *, device: torch.device | None = None) -> None:
        self.loader = loader
        self.device = device or torch.device("cpu")
        self.epoch = 0
        self.position = 0
        self.batch_size = loader.batch_size or 1

    @property
    def num_samples(self) -> int:
        try:
            return len(self.loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            return len(self) * self.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def batch_sizes(self) -> list[int]:
        return [self.batch_size] * len(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Batch]:
        skip = self.position
        for index, batch in enumerate(self.loader):
            if index < skip:
                continue
            xb, yb = batch[0], batch[1]
            self.position += 1
            yield xb.to(self.device), yb.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(state["epoch"])
        self.position = state["position"]


def as_tensors(source: Any) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The (x, y) tensors of an in-memory source, or None when it is a Dataset/DataLoader."""
    if isinstance(source, (tuple, list)) and len(source) == 2:
        x, y = source
        return _to_tensor(x, "inputs"), _to_tensor(y, "targets")
    if isinstance(source, TensorDataset) and len(source.tensors) == 2:
        return source.tensors[0], source.tensors[1]
    return None


def _to_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.float() if tensor.is_floating_point() else tensor
    raise DataError(f"{what} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def make_batches(source: Any, *, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                 augment: Optional[Augment] = None, num_workers: int = 0):
    """Pick the batch source for ``source``: tensors/arrays/TensorDataset → in-memory slicing on
    ``device``; any other map-style ``Dataset`` → ``DataLoader`` with workers; a ``DataLoader`` → as is."""
    if isinstance(source, DataLoader):
        return UserLoaderBatches(source, device=device)
    tensors = as_tensors(source)
    if tensors is not None:
        x, y = tensors
        return InMemoryBatches(x.to(device), y.to(device), batch_size=batch_size, shuffle=shuffle,
                               seed=seed, augment=augment)
    if isinstance(source, Dataset):
        return DatasetBatches(source, batch_size=batch_size, shuffle=shuffle, seed=seed,
                              num_workers=num_workers, pin_memory=device.type == "cuda", device=device)
    raise DataError(
        "training data must be an (inputs, targets) pair of tensors or arrays, a TensorDataset, "
        f"a map-style Dataset or a DataLoader, got {type(source).__name__}"
    )

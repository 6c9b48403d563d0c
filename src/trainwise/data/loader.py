"""Batch sources for the loop: in-memory tensor slicing, or a ``DataLoader`` for big ``Dataset``s.

Both draw the epoch's sample order from ``(seed, epoch)`` alone and can start part-way into an
epoch, which is what makes a resumed run see the same remaining samples in the same order.

Example:
    >>> batches = InMemoryBatches(x, y, batch_size=64, shuffle=True, seed=0)
    >>> batches.set_epoch(0)
    >>> for xb, yb in batches: ...
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from trainwise.data.arrays import is_array_like, to_tensor
from trainwise.data.sharding import BatchPlan, ShardedBatchSampler, epoch_permutation, loader_settings
from trainwise.data.tensors import to_device
from trainwise.errors import DataError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def balanced_sample_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-sample weights ``1 / count(class)``: every class is drawn equally often (``sampler="balanced"``)."""
    labels = y.reshape(len(y), -1)[:, 0].long().cpu() if y.dim() > 1 else y.long().cpu()
    if y.is_floating_point() and not torch.equal(y.reshape(len(y), -1)[:, 0].cpu(), labels.to(y.dtype)):
        raise DataError("sampler='balanced' needs class labels (integers), got fractional targets; "
                        "it balances classes, not regression targets")
    counts = torch.bincount(labels - labels.min())
    return 1.0 / counts[labels - labels.min()].double()


class _PlannedBatches:
    """Batch counts read from ``self.plan`` (a ``data.sharding.BatchPlan``), shared by the sources
    that share their batches out over ranks by one plan."""

    plan: BatchPlan

    def __len__(self) -> int:
        return len(self.global_batch_sizes())

    def global_batch_sizes(self) -> list[int]:
        """Samples in each batch over all ranks (the batch a single process would see)."""
        return self.plan.global_batch_sizes()

    def batch_sizes(self) -> list[int]:
        """Samples of each batch on this rank (all of them in a single process)."""
        return self.plan.batch_sizes()


class InMemoryBatches(_PlannedBatches):
    """Batches by index slicing of tensors that already live on the training device.

    Args:
        x, *extra: whole split, first dimension = samples (``extra``: targets, then e.g. sample weights);
            each batch is the tuple of their slices, or a dict when ``keys`` names them.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: draw a new permutation each epoch (from ``seed`` and the epoch number).
        seed: seed of the permutations and of the augmentation generator.
        augment: optional ``f(batch, generator) -> batch`` applied to training inputs (the first tensor).
        keys: yield ``dict(zip(keys, slices))`` instead of a tuple.
        rank, world_size: in a DistributedDataParallel job each rank takes its share of every
            batch (``batch_size`` is the global batch: the epoch's order is the same on all ranks,
            and rank ``r`` of ``W`` takes samples ``[r*m//W, (r+1)*m//W)`` of a batch of ``m``).
            In training (``shuffle``) a last batch smaller than ``world_size`` is left out, so every
            rank has a share of every batch; in evaluation a rank may get nothing of a last batch.
    """

    def __init__(self, x: torch.Tensor, *extra: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, augment: Optional[Augment] = None, keys: Optional[Sequence[str]] = None,
                 sample_weights: Optional[torch.Tensor] = None, rank: int = 0, world_size: int = 1,
                 min_share: int = 1) -> None:
        tensors = (x, *extra)
        lengths = {len(t) for t in tensors}
        if len(lengths) > 1:
            counts = ", ".join(f"{len(t)} {name}" for t, name in zip(tensors, ("inputs", "targets", "weights")))
            raise DataError(f"inputs and targets differ in length: {counts}; give one of each per sample")
        self.plan = BatchPlan(len(x), batch_size, rank, world_size, training=shuffle, min_share=min_share)
        self.rank, self.world_size = rank, world_size
        self.tensors = tensors
        self.keys = tuple(keys) if keys is not None else None
        self.x = x
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.position = 0  # batches already consumed in this epoch
        self.order: Optional[torch.Tensor] = None
        self.aug_generator = torch.Generator(device=x.device) if augment else None
        self.sample_weights = sample_weights  # draw with replacement by these (the balanced sampler)

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def integers_lack(self, value: int) -> bool:
        """No integer tensor of the data holds ``value`` (every target position counts when ``value`` is
        the ignore index): one scan per fit, so that no batch needs an op to count its positions."""
        integers = [t for t in self.tensors if not t.is_floating_point() and not t.is_complex()]
        return not any(bool((t == value).any()) for t in integers)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        weights = self.sample_weights
        self.order = (epoch_permutation(len(self.x), self.seed, epoch, weights).to(self.x.device)
                      if self.shuffle or weights is not None else None)
        if self.aug_generator is not None:
            self.aug_generator.manual_seed(self.seed * 7919 + epoch)

    def __iter__(self) -> Iterator[Any]:
        tensors, b, order, keys = self.tensors, self.batch_size, self.order, self.keys
        sizes = self.global_batch_sizes()
        for index in range(self.position, len(sizes)):
            low, high = self.plan.share(sizes[index])
            self.position += 1
            if low == high:  # evaluation: nothing of this last batch falls to this rank
                continue
            start, end = index * b + low, index * b + high
            if order is None:
                batch = tuple(t[start:end] for t in tensors)
            else:
                batch = tuple(t.index_select(0, order[start:end]) for t in tensors)
            if self.augment is not None:
                batch = (self.augment(batch[0], self.aug_generator), *batch[1:])
            yield batch if keys is None else dict(zip(keys, batch))

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


class DatasetBatches(_PlannedBatches):
    """A map-style ``Dataset`` through a ``DataLoader`` with workers, batched by our own sampler
    (``sharding.ShardedBatchSampler``): the order is a function of (seed, epoch), resume can start
    mid-epoch, and in a DDP job each rank loads only its share of every global batch.

    ``training``: a training epoch (default: ``shuffle``), where under DDP every rank must get a
    share of every batch; ``drop_last`` leaves out a last partial batch; ``loader_args``: further
    ``DataLoader`` arguments (a user loader's ``collate_fn``, ``worker_init_fn``, ...)."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int = 0,
                 num_workers: int = 0, pin_memory: bool = False, device: torch.device | None = None,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False, training: Optional[bool] = None,
                 min_share: int = 1, **loader_args: Any) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.rank, self.world_size = rank, world_size
        self.plan = BatchPlan(len(dataset), batch_size, rank, world_size,  # type: ignore[arg-type]
                              training=shuffle if training is None else training, drop_last=drop_last,
                              min_share=min_share)
        self.sampler = ShardedBatchSampler(self.plan, shuffle=shuffle, seed=seed)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers,
                                 pin_memory=pin_memory, persistent_workers=num_workers > 0, **loader_args)
        self.epoch = 0
        self.position = 0  # global batches already consumed in this epoch

    @property
    def num_samples(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch, start=self.position)
        non_blocking = self.device.type == "cuda"
        for batch in self.loader:
            self.position += 1
            yield to_device(batch, self.device, non_blocking=non_blocking)

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

    def __iter__(self) -> Iterator[Any]:
        skip = self.position
        for index, batch in enumerate(self.loader):
            if index < skip:
                continue
            self.position += 1
            yield to_device(batch, self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(state["epoch"])
        self.position = state["position"]


def main_output(outputs: Any) -> Any:
    """The prediction tensor of a model's outputs: the outputs themselves, the first item of a
    tuple/list (``(logits, hidden)``), or ``outputs["logits"]`` of a dict (Hugging Face style)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (tuple, list)) and outputs:
        return outputs[0]
    logits = outputs.get("logits") if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):  # a dict, or a Hugging Face ModelOutput
        return logits
    raise DataError(f"the model returned a {type(outputs).__name__}; return a tensor, a tuple whose first item is "
                    "the prediction, or a dict with 'logits' — or override Trainer.compute_loss(model, batch)")


def batch_length(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor (in a tuple, list or dict)."""
    first = batch
    while not isinstance(first, torch.Tensor):
        if isinstance(first, dict):
            first = next(iter(first.values()))
        elif isinstance(first, (tuple, list)) and first:
            first = first[0]
        else:
            return 1
    return len(first) if first.dim() else 1


def as_tensors(source: Any) -> Optional[tuple[torch.Tensor, ...]]:
    """The tensors of an in-memory source — ``(inputs, targets)`` or ``(inputs, targets, weights)``
    as tensors, arrays or pandas tables, or a TensorDataset of those — or None for anything else."""
    if isinstance(source, (tuple, list)) and len(source) in (2, 3) and all(is_array_like(v) for v in source):
        return tuple(to_tensor(v, what) for v, what in zip(source, ("inputs", "targets", "weights")))
    if isinstance(source, TensorDataset) and len(source.tensors) in (2, 3):
        return tuple(source.tensors)
    return None


def as_tensor_dict(source: Any) -> Optional[dict[str, torch.Tensor]]:
    """A dict of equally long tensors or arrays (each batch is then a dict), or None."""
    if isinstance(source, dict) and source and all(is_array_like(v) for v in source.values()):
        return {str(k): to_tensor(v, f"data[{k!r}]") for k, v in source.items()}
    return None


def make_batches(source: Any, *, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                 augment: Optional[Augment] = None, num_workers: int = 0, sampler: Optional[str] = None,
                 rank: int = 0, world_size: int = 1, min_share: int = 1):
    """Pick the batch source for ``source``: tensors/arrays/TensorDataset → in-memory slicing on
    ``device``; any other map-style ``Dataset`` → ``DataLoader`` with workers; a ``DataLoader`` → as is.
    ``sampler="balanced"`` (in-memory data with class labels) draws every class equally often.
    ``rank``/``world_size``: this process's share of each batch in a DDP job (``data.sharding``);
    there a plain ``DataLoader`` is rebuilt over its dataset with the same settings (``sharding.loader_settings``).
    ``min_share``: a last training batch whose share on some rank would be smaller is left out (2 for BatchNorm;
    ``sharding.BatchPlan``): not for streams or a user's own ``DataLoader`` in one process, whose batches are theirs."""
    if sampler is not None and as_tensors(source) is None:
        raise DataError(f"sampler={sampler!r} needs in-memory (inputs, targets) data with class labels, got "
                        f"{type(source).__name__}; pass a torch WeightedRandomSampler in your own DataLoader instead")
    shard = {"rank": rank, "world_size": world_size}
    stream = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(stream, IterableDataset):  # a stream: an epoch is one pass, sharded by rank and worker once
        from trainwise.data.streams import StreamBatches

        return StreamBatches(stream, batch_size=batch_size, num_workers=num_workers, device=device,
                             loader=source if isinstance(source, DataLoader) else None, **shard)
    if isinstance(source, DataLoader):
        if world_size == 1:
            return UserLoaderBatches(source, device=device)
        settings = loader_settings(source, world_size, training=shuffle)
        return DatasetBatches(device=device, seed=seed, training=shuffle, min_share=min_share, **shard, **settings)
    shard["min_share"] = min_share
    tensors = as_tensors(source)
    if tensors is not None:
        weights = balanced_sample_weights(tensors[1]) if sampler == "balanced" else None
        return InMemoryBatches(*(t.to(device) for t in tensors), batch_size=batch_size, shuffle=shuffle,
                               seed=seed, augment=augment, sample_weights=weights, **shard)
    named = as_tensor_dict(source)
    if named is not None:
        return InMemoryBatches(*(t.to(device) for t in named.values()), batch_size=batch_size, shuffle=shuffle,
                               seed=seed, augment=augment, keys=list(named), **shard)
    if isinstance(source, Dataset):
        return DatasetBatches(source, batch_size=batch_size, shuffle=shuffle, seed=seed, num_workers=num_workers,
                              pin_memory=device.type == "cuda", device=device, **shard)
    raise DataError(
        "data must be an (inputs, targets) or (inputs, targets, weights) tuple of tensors or arrays, a dict of "
        f"tensors, a TensorDataset, a map-style Dataset or a DataLoader, got {type(source).__name__}"
    )

"""How an epoch's samples are cut into batches and shared between the ranks of a DDP job.

One rule for every map-style source (tensors sliced in memory, a ``Dataset`` through a
``DataLoader``): the epoch's order is ``epoch_permutation(n, seed, epoch)`` on every rank, batch
``k`` is ``order[k*B:(k+1)*B]`` for the *global* batch size ``B``, and rank ``r`` of ``W`` takes the
contiguous share ``[r*m//W, (r+1)*m//W)`` of a batch of ``m``. So the ranks together see exactly
the batches one process would see (the curves agree), shuffling changes with the epoch (``set_epoch``),
and no sample is repeated to pad: in training a last batch smaller than ``W`` is left out, so every
rank has a share of every step; in evaluation a rank may get nothing of the last batch, and the
split's sums (all-reduced) count every sample exactly once.

Example:
    >>> plan = BatchPlan(num_samples=10, batch_size=4, rank=1, world_size=2, training=True)
    >>> plan.global_batch_sizes(), plan.batch_sizes()
    ([4, 4, 2], [2, 2, 1])
    >>> sampler = ShardedBatchSampler(plan, shuffle=False)
    >>> sampler.set_epoch(0)
    >>> list(sampler)
    [[2, 3], [6, 7], [9]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

import torch
from torch.utils.data import Sampler

from trainwise.errors import DataError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


def epoch_permutation(n: int, seed: int, epoch: int, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The sample order of one epoch: a pure function of (seed, epoch). With per-sample
    ``weights``: ``n`` draws with replacement, each sample drawn with probability ∝ its weight."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is not None:
        return torch.multinomial(weights.double().cpu(), n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


@dataclass(frozen=True)
class BatchPlan:
    """The batches of one epoch over ``num_samples`` samples, and this rank's share of each.

    Args:
        batch_size: the global batch (all ranks together).
        training: a training epoch: under DDP a last batch smaller than ``world_size`` is left out (every rank
            needs a share of every step), and a partial last batch that would give some rank fewer than
            ``min_share`` samples too, when another batch remains.
        drop_last: leave out a last batch smaller than ``batch_size`` (a user DataLoader's setting).
        min_share: the fewest samples a rank's share of a training batch may hold: 1, or 2 for a model with
            BatchNorm, which cannot train on one sample ("Expected more than 1 value per channel").
    """

    num_samples: int
    batch_size: int
    rank: int = 0
    world_size: int = 1
    training: bool = True
    drop_last: bool = False
    min_share: int = 1

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise DataError(f"batch_size must be > 0, got {self.batch_size}")
        if self.training and self.world_size > 1 and not self.every_rank_has_data():
            raise DataError(f"{self.world_size} processes need a batch size and a data set of at least "
                            f"{self.world_size} samples, got batch size {self.batch_size} and {self.num_samples} "
                            "samples; use fewer processes (--nproc) or a larger data.batch_size")

    def every_rank_has_data(self) -> bool:
        """Whether every rank gets a share of the first batch (in evaluation a rank may otherwise get
        nothing at all: fine for ``predict``, not for figures summed over the ranks)."""
        return min(self.batch_size, self.num_samples) >= self.world_size

    def global_batch_sizes(self) -> list[int]:
        """Samples in each batch over all ranks (the batches a single process would see)."""
        n, b = self.num_samples, self.batch_size
        sizes = [min(b, n - start) for start in range(0, n, b)]
        if sizes and self.drop_last and sizes[-1] < b:
            sizes.pop()
        if sizes and self.world_size > 1 and self.training and sizes[-1] < self.world_size:
            sizes.pop()  # training: every rank needs a share of every batch
        if self.training and len(sizes) > 1 and sizes[-1] < min(b, self.min_share * self.world_size):
            # BatchNorm: a partial last batch too small for it (full batches, even of 1 sample, are the user's choice)
            sizes.pop()
        return sizes

    def samples_left_out(self) -> int:
        """Samples of the epoch in no batch (a last batch left out)."""
        return self.num_samples - sum(self.global_batch_sizes())

    def share(self, size: int) -> tuple[int, int]:
        """This rank's part ``[start, end)`` of a global batch of ``size`` samples."""
        return self.rank * size // self.world_size, (self.rank + 1) * size // self.world_size

    def batch_sizes(self) -> list[int]:
        """Samples of each batch on this rank (all of them in a single process)."""
        return [high - low for low, high in map(self.share, self.global_batch_sizes())]


class ShardedBatchSampler(Sampler[list[int]]):
    """A ``DataLoader`` batch sampler that yields this rank's share of each batch of the epoch, in
    the order ``(seed, epoch)`` gives, from batch ``start`` on (a resumed epoch)."""

    def __init__(self, plan: BatchPlan, *, shuffle: bool, seed: int = 0) -> None:
        self.plan, self.shuffle, self.seed = plan, shuffle, seed
        self.order: Optional[list[int]] = None
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        n = self.plan.num_samples
        self.order = epoch_permutation(n, self.seed, epoch).tolist() if self.shuffle else None
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        b = self.plan.batch_size
        for index, size in enumerate(self.plan.global_batch_sizes()):
            if index < self.start:
                continue
            low, high = self.plan.share(size)
            if low == high:  # evaluation: nothing of this last batch falls to this rank
                continue
            start, end = index * b + low, index * b + high
            yield self.order[start:end] if self.order is not None else list(range(start, end))

    def __len__(self) -> int:
        return sum(1 for size in self.plan.batch_sizes()[self.start:] if size > 0)


def loader_settings(loader: "DataLoader", world_size: int, *, training: bool) -> dict[str, Any]:
    """The settings to rebuild a user's ``DataLoader`` as one rank's share of a DDP job: its dataset,
    batch size, shuffling and worker options. Only what can be rebuilt without guessing is: exactly
    ``torch.utils.data.DataLoader`` over a map-style dataset, batched by torch's own ``BatchSampler``
    over a ``RandomSampler`` or ``SequentialSampler`` (its ``batch_size`` is then the global batch,
    as for a single process) or a ``DistributedSampler`` for this world size (its ``batch_size`` is
    per process, as the user wrote it for DDP). Anything else is refused with the fix."""
    from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                                  SequentialSampler)

    fix = ("pass the Dataset itself (trainwise shards it per process; batch_size is the global batch), or train "
           "in one process")
    if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
        raise DataError(f"{world_size} processes (DDP) cannot share out a {type(loader).__name__} over a "
                        f"{type(loader.dataset).__name__}: trainwise rebuilds only a plain torch DataLoader over a "
                        f"map-style dataset; {fix}")
    sampler = loader.sampler
    if type(loader.batch_sampler) is not BatchSampler or type(sampler) not in (RandomSampler, SequentialSampler,
                                                                               DistributedSampler):
        custom = type(loader.batch_sampler if type(loader.batch_sampler) is not BatchSampler else sampler).__name__
        raise DataError(f"{world_size} processes (DDP) cannot share out a DataLoader whose sampler is a {custom}: "
                        f"its order is its own; {fix}")
    if isinstance(sampler, RandomSampler) and (sampler.replacement or sampler._num_samples is not None):
        raise DataError(f"{world_size} processes (DDP) cannot share out a RandomSampler that draws with replacement "
                        f"or a set number of samples; {fix}")
    batch_size = loader.batch_sampler.batch_size  # type: ignore[union-attr]  # also when a BatchSampler was given
    if isinstance(sampler, DistributedSampler):
        if sampler.num_replicas != world_size:
            raise DataError(f"the DataLoader's DistributedSampler was built for {sampler.num_replicas} processes but "
                            f"the job has {world_size}; build it inside the job, or {fix}")
        batch_size *= world_size  # its batch_size was per process
    shuffle = training and (isinstance(sampler, RandomSampler) or getattr(sampler, "shuffle", False))
    settings: dict[str, Any] = dict(
        dataset=loader.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=loader.num_workers,
        pin_memory=loader.pin_memory, drop_last=loader.batch_sampler.drop_last,  # type: ignore[union-attr]
        collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn, timeout=loader.timeout)
    if loader.num_workers > 0:
        settings.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    return settings

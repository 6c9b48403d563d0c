"""Streams: an ``IterableDataset`` (or a ``DataLoader`` over one) as training or evaluation data.

An epoch is one pass over the stream; its length is unknown until it ends. Every element is read
by exactly one reader, and ``batch_size`` is the global batch, as for a map-style ``Dataset``:

- With ``W`` processes (DDP ranks), the stream is cut into blocks of ``batch_size`` consecutive
  elements (one global batch each) and rank ``r`` keeps the elements at offsets ``r, r + W, ...``
  of each block (``rank_batch_size``): the ranks share each batch of the single-process order, so
  a DDP job follows the curve of one process.
- With ``K`` DataLoader workers, worker ``k`` reads the rank's batches ``k, k + K, ...``, which the
  DataLoader yields in turn: the same batches in the same order as without workers.
- A dataset that already splits itself between workers (it calls
  ``torch.utils.data.get_worker_info()``, as PyTorch's documentation shows) is split only by rank,
  so it is never sharded twice: ``shards_itself`` finds out by asking the dataset for its first
  element as worker 0 and as worker 1 of 2.

Under DDP the training loop ends a pass on every rank when one rank's share ends
(``distributed.ops.while_every_rank_has_a_batch``): a last block with fewer elements than ranks is
left out, as the map-style plan leaves out a last batch smaller than the world.

Resume replays the stream to the saved position (it skips the batches already trained on, which
reads them again): exact for a deterministic stream, and said in the resume event.

Example:
    >>> batches = StreamBatches(MyStream(), batch_size=32, num_workers=2)
    >>> batches.set_epoch(0)
    >>> for xb, yb in batches: ...
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils import worker as _worker

from trainwise.data.tensors import to_device
from trainwise.errors import DataError


def rank_batch_size(rank: int, world_size: int, batch_size: int) -> int:
    """Elements of each global batch of ``batch_size`` that fall to ``rank`` (offsets ``rank, rank + W, ...``)."""
    return len(range(rank, batch_size, world_size))


def reader_elements(items: Iterable[Any], *, rank: int, world_size: int, batch_size: int, worker: int,
                    num_workers: int) -> Iterator[Any]:
    """The elements of ``items`` that one reader (``rank``, DataLoader ``worker``) keeps: by offset
    within each global batch across ranks, then by whole rank batches across workers."""
    if world_size > 1:
        items = (item for position, item in enumerate(items) if position % batch_size % world_size == rank)
    if num_workers > 1:
        unit = rank_batch_size(rank, world_size, batch_size)
        items = (item for position, item in enumerate(items) if position // unit % num_workers == worker)
    return iter(items)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def shards_itself(dataset: IterableDataset) -> bool:
    """True when ``dataset`` yields different first elements as worker 0 and worker 1 of 2, i.e. it
    splits itself between DataLoader workers (then trainwise splits it by rank only)."""
    firsts = []
    previous = _worker._worker_info
    try:
        for worker in (0, 1):
            _worker._worker_info = _worker.WorkerInfo(id=worker, num_workers=2, seed=0, dataset=dataset)
            firsts.append(next(iter(dataset), None))
    finally:
        _worker._worker_info = previous
    return not _same(firsts[0], firsts[1])


class ShardedStream(IterableDataset):
    """``dataset`` as one reader sees it (``reader_elements``). ``batch_size``: the global batch
    (1 when the DataLoader does not batch: each element is then a unit)."""

    def __init__(self, dataset: IterableDataset, *, rank: int = 0, world_size: int = 1, by_worker: bool = True,
                 batch_size: int = 1) -> None:
        self.dataset, self.rank, self.world_size, self.by_worker = dataset, rank, world_size, by_worker
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers = info.num_workers if info is not None and self.by_worker else 1
        return reader_elements(iter(self.dataset), rank=self.rank, world_size=self.world_size,
                               batch_size=self.batch_size, worker=info.id if info is not None else 0,
                               num_workers=workers)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class StreamBatches:
    """Batches of a stream through a ``DataLoader`` (workers, pinned memory), sharded once; the
    epoch is one pass and ``len()`` is None until known. ``loader``: a user's DataLoader over the
    stream, rebuilt around the sharded dataset with its own settings (batch size, workers, collate)."""

    stream = True

    def __init__(self, dataset: IterableDataset, *, batch_size: int, num_workers: int = 0,
                 device: Optional[torch.device] = None, rank: int = 0, world_size: int = 1,
                 loader: Optional[DataLoader] = None) -> None:
        self.device = device or torch.device("cpu")
        workers = loader.num_workers if loader is not None else num_workers
        self.by_worker = workers <= 1 or not shards_itself(dataset)
        options: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers,
                                   "pin_memory": self.device.type == "cuda"}
        if loader is not None:
            options = {"batch_size": loader.batch_size, "num_workers": loader.num_workers,
                       "collate_fn": loader.collate_fn, "pin_memory": loader.pin_memory, "drop_last": loader.drop_last,
                       "worker_init_fn": loader.worker_init_fn, "timeout": loader.timeout}
        global_batch = options["batch_size"] or world_size  # a loader without batching: each element is a unit
        if world_size > 1 and global_batch < world_size:
            raise DataError(f"a batch of {global_batch} stream elements cannot be shared by {world_size} processes "
                            f"(DDP): each needs at least one; use batch_size >= {world_size}")
        self.sharded = ShardedStream(dataset, rank=rank, world_size=world_size, by_worker=self.by_worker,
                                     batch_size=global_batch)
        if options["batch_size"]:  # this rank's share of each global batch
            options["batch_size"] = rank_batch_size(rank, world_size, global_batch)
        self.loader = DataLoader(self.sharded, **options)
        self.batch_size = options["batch_size"] or 1
        self.world_size = world_size
        self.epoch, self.position = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        self.sharded.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        skip = self.position  # resume: replay the pass to where the checkpoint was
        for index, batch in enumerate(self.loader):
            if index < skip:
                continue
            self.position = index + 1
            yield to_device(batch, self.device, non_blocking=self.device.type == "cuda")

    def describe(self) -> dict[str, Any]:
        return {"stream": True, "sharding": "rank x worker" if self.by_worker else "rank (the dataset splits "
                "itself between workers)", "batch": "shared by the ranks (each keeps offsets rank, rank + world size, "
                "... of every global batch)" if self.world_size > 1 else "the whole batch",
                "resume": "replays the stream to the saved position"}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(state["epoch"])
        self.position = state["position"]

"""Rank helpers for the parts and the engine: who this process is in a DistributedDataParallel job,
and the few collectives the loop, the evaluation and the checkpoints need.

Everything here is a no-op in a single process (no process group initialized), so the callers
never branch on "distributed or not" beyond asking ``world()``. Launching and setting up the
process group live in ``trainwise.distributed.launch``.

Example:
    >>> rank, world_size = world()
    >>> (rank, world_size)
    (0, 1)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import torch

# Attributes of a meter that are settings, not running sums (never summed across ranks).
_NOT_SUMS = ("scale", "num_classes", "ignore_index", "class_axis")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0, the one process that writes the run folder (and in a single process)."""
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if world()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (any picklable object)."""
    rank, world_size = world()
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value)
    return values


class StepSync:
    """Agrees, once per micro-batch, on what every rank must see alike: the global batch's mean loss
    and sample count (so non-finite checks, spike counts and logged losses match on every rank and
    equal a single process's), and whether any rank received SIGTERM/SIGINT (so all stop together).

    One all-reduce of three float64 numbers per micro-batch."""

    def __init__(self, device: torch.device) -> None:
        self.buffer = torch.zeros(3, dtype=torch.float64, device=device)

    def __call__(self, loss: torch.Tensor, n: int, signal_pending: int) -> tuple[float, int, int]:
        import torch.distributed as dist

        buffer = self.buffer
        buffer[0] = loss.detach().double() * n
        buffer[1] = n
        buffer[2] = signal_pending
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        total_loss, count, signals = buffer.tolist()
        # A signal number summed over ranks is not a signal number; SIGTERM is what every rank then acts on.
        signum = 0 if signals == 0 else (signal_pending or 15)
        return total_loss / max(count, 1.0), int(count), signum


def while_every_rank_has_a_batch(batches: Iterable[Any], device: torch.device,
                                 on_uneven: Callable[[int], None]) -> Iterator[Any]:
    """``batches`` as long as every rank of the job still has one: a stream's shares may end a batch
    apart, and every rank must take every optimizer step. One all-reduce of one number per batch;
    ``on_uneven(k)``: ``k`` ranks still had a batch when another's share ended (theirs are left out)."""
    import torch.distributed as dist

    world_size = world()[1]
    having = torch.zeros((), dtype=torch.int64, device=device)
    end = object()
    items = iter(batches)
    while True:
        batch = next(items, end)
        having.fill_(0 if batch is end else 1)
        dist.all_reduce(having, op=dist.ReduceOp.SUM)
        ranks_with_a_batch = int(having.item())
        if ranks_with_a_batch < world_size:
            if ranks_with_a_batch:
                on_uneven(ranks_with_a_batch)
            return
        yield batch


def all_reduce_sums(meter: Any, skip: Iterable[str] = _NOT_SUMS) -> None:
    """Sum a meter's running sums (tensors and int counts, nested meters too) over all ranks, in place,
    so that ``meter.compute()`` gives the figures of the whole split on every rank."""
    if world()[1] == 1:
        return
    import torch.distributed as dist

    skipped = set(skip)
    for name in sorted(vars(meter)):
        value = getattr(meter, name)
        if name in skipped or value is None:
            continue
        if isinstance(value, torch.Tensor):
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        elif isinstance(value, int) and not isinstance(value, bool):
            total = torch.tensor(value, dtype=torch.int64, device=_device_of(meter))
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            setattr(meter, name, int(total.item()))
        elif hasattr(value, "__dict__") and not callable(value):
            all_reduce_sums(value, skip)


def _device_of(meter: Any) -> Optional[torch.device]:
    for value in vars(meter).values():
        if isinstance(value, torch.Tensor):
            return value.device
    return None


def main_then_all(action: Callable[[], Any]) -> Any:
    """Run ``action`` on rank 0 alone; its result, or the user error it raised, reaches every rank
    (so all ranks fail alike, and none waits in a collective for a rank that gave up)."""
    from trainwise.errors import TrainwiseError

    outcome: Any = None
    error: Optional[TrainwiseError] = None
    if is_main():
        try:
            outcome = action()
        except TrainwiseError as exc:
            if world()[1] == 1:
                raise
            error = exc
    outcome, error = broadcast((outcome, error))
    if error is not None:
        raise error
    return outcome


def run_together(action: Callable[[], Any], what: str) -> Any:
    """Run ``action`` on every rank (it may do work of rank 0 alone: a logger's setup, the run
    folder's first files) and agree on how it went. When it raised on any rank, every rank raises
    at once: that rank its own error, the others a ``StoppedWithPeerError`` naming it, instead of
    waiting at their next collective for a rank that gave up until the group's timeout. One gather
    of a few bytes; nothing in a single process."""
    from trainwise.errors import StoppedWithPeerError

    rank, world_size = world()
    if world_size == 1:
        return action()
    outcome: Any = None
    failure: Optional[Exception] = None
    try:
        outcome = action()
    except Exception as exc:  # noqa: BLE001 - told to every rank below, then raised here as it was
        failure = exc
    reports = gather(None if failure is None else _one_line(failure))
    if failure is not None:
        raise failure
    failed = [(other, report) for other, report in enumerate(reports) if report is not None]
    if failed:
        other, report = failed[0]
        raise StoppedWithPeerError(f"rank {rank} stopped before training because rank {other} failed {what}: {report}")
    return outcome


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"


def gather_in_input_order(chunks: list[Any], plan: Any) -> list[Any]:
    """Every rank's per-batch results (``chunks``: this rank's, one per non-empty share of
    ``plan``'s batches) put back in the order of the input: batch by batch, each batch's shares in
    rank order (a ``data.sharding.BatchPlan`` gives each rank a contiguous share of each batch)."""
    rank, world_size = world()
    if world_size == 1:
        return chunks
    from dataclasses import replace

    parts = [iter(part) for part in gather(chunks)]
    shares = [replace(plan, rank=r).batch_sizes() for r in range(world_size)]
    return [next(parts[r]) for index in range(len(shares[0])) for r in range(world_size) if shares[r][index] > 0]

"""DistributedDataParallel: the process group of a job, the model as the ranks train it, and the
checks on how many processes a machine can run.

A job is N processes of the same program (``trainwise train CONFIG --nproc N``, or
``torchrun --nproc-per-node N -m trainwise train CONFIG``, or a user's script under torchrun),
each told who it is by the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``. gloo is the backend on CPU, nccl on GPU (the nccl path is written but was not
run: the machine this was built on has no GPU). ``data.batch_size`` is the global batch: each rank
trains on its share of every batch (``data.sharding``), gradients are averaged by DDP,
each micro-batch's loss is agreed by all ranks (``ops.StepSync``), evaluation sums every rank's
share, and rank 0 alone writes the run folder. Joining the job is ``world.join_world``, which
``Trainer.fit`` calls itself.

Example (a script run with ``torchrun --nproc-per-node 2 script.py``):
    >>> Trainer(model, batch_size=128).fit(train, val)   # joins the job; 64 samples per rank and step
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Optional

import torch
from torch import nn

from trainwise.distributed.ops import StepSync, world
from trainwise.distributed.world import DEFAULT_TIMEOUT, join_world
from trainwise.errors import ConfigError

log = logging.getLogger(__name__)

# What gloo/nccl say when another rank is gone or hung.
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Timed out waiting", "Broken pipe",
              "Socket closed", "Connection refused")


class PeerLostError(RuntimeError):
    """Another process of a DDP job stopped (killed, crashed, or timed out): this one cannot go on."""


def init_from_env(timeout: float = DEFAULT_TIMEOUT, device: Optional[torch.device] = None) -> Optional[torch.device]:
    """Join the process group described by the environment (torchrun's variables, or ``--nproc``'s).
    Returns the device this rank trains on (``cuda:LOCAL_RANK`` on GPUs), or None outside a job.
    ``Trainer.fit`` does this itself (``world.join_world``); kept for scripts that call it first."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    joined = join_world(device, timeout)
    return joined.device if joined.distributed else None


def shut_down() -> None:
    """Leave the process group (each rank, at the end of a job)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # leave together: a rank that tears its connections down while rank 0 is still writing the
        # run folder (summary, report, index) can die in gloo ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def check_nproc(nproc: int, device: torch.device) -> None:
    """Refuse more processes than the machine has CPU cores (on CPU) or GPUs (on GPU)."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1 (processes on this machine), got {nproc}")
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise ConfigError(f"--nproc {nproc} asks for more processes than this machine has GPUs ({gpus}); "
                              f"use --nproc {gpus} or fewer (one process per GPU)")
        return
    cores = os.cpu_count() or 1
    if nproc > cores:
        raise ConfigError(f"--nproc {nproc} asks for more processes than this machine has CPU cores ({cores}); "
                          f"use --nproc {cores} or fewer")


def check_sync_batchnorm(enabled: bool, device: torch.device, world_size: int) -> None:
    """torch's SyncBatchNorm runs on CUDA only; on CPU each rank's BatchNorm sees its own share."""
    if enabled and world_size > 1 and device.type != "cuda":
        raise ConfigError(f"sync_batchnorm needs GPUs (torch's SyncBatchNorm runs on CUDA only), got device "
                          f"{device.type}; set train.sync_batchnorm=false (on CPU each process's BatchNorm "
                          "normalizes over its share of the batch)")


def is_peer_failure(exc: BaseException) -> bool:
    """True for the errors a rank sees when another rank of its job died or hung."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(words in str(exc) for words in _PEER_LOST)


@contextlib.contextmanager
def training_model(t: Any, world_size: int) -> Iterator[None]:
    """While the loop runs in a DDP job: SyncBatchNorm when asked, and ``t.train_model`` = the model
    in DistributedDataParallel (the loss goes through it; evaluation and checkpoints use ``t.model``,
    whose weights are the same tensors). A lost peer becomes one ``PeerLostError``. A single
    process: nothing changes."""
    if world_size == 1:
        yield
        return
    from torch.nn.parallel import DistributedDataParallel

    if t.sync_batchnorm:
        t.model = _convert_sync_batchnorm(t.model)
    device_ids = [t.device.index] if t.device.type == "cuda" else None
    t.train_model = DistributedDataParallel(t.model, device_ids=device_ids)
    try:
        yield
    except RuntimeError as exc:
        if is_peer_failure(exc):
            raise PeerLostError(f"rank {world()[0]}: another process of the job stopped ({_first_line(exc)}); "
                                f"{_what_follows()}") from exc
        raise
    finally:
        t.train_model = t.model


def _what_follows() -> str:
    """After a lost peer: the launcher's restart when it has one left, else the user's resume."""
    restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) - \
        int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if restarts_left > 0:
        return "the launcher restarts the job, which continues from its last checkpoint"
    return "the run can continue from its last checkpoint with --resume auto"


def step_sync_for(device: torch.device, world_size: int) -> Optional[StepSync]:
    """The loop's per-micro-batch agreement of the ranks; None in a single process."""
    return StepSync(device) if world_size > 1 else None


def _convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm layers → SyncBatchNorm, in place (the parameters stay the same tensors, so the
    optimizer keeps them); a model whose root is a BatchNorm layer is refused."""
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if converted is not model:
        raise ConfigError("sync_batchnorm cannot convert a model that is itself a BatchNorm layer; wrap it in a module")
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    known = next((words for words in _PEER_LOST if words in text), None)
    if known is not None:
        return f"{backend_name()}: {known}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def backend_name() -> str:
    import torch.distributed as dist

    return dist.get_backend() if dist.is_initialized() else "torch.distributed"

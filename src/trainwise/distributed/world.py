"""Who this process is in a training job, found once: ``join_world`` reads the launcher's
environment (torchrun's, ``--nproc``'s, or a user's own launcher setting the same variables), joins
the process group if nobody has yet, and returns a frozen ``World``.

The rules:
- A process group that already exists (the user called ``init_process_group``) is used as it is and
  never destroyed by trainwise.
- ``WORLD_SIZE`` > 1 (or a torchrun launch) without a group: join it with ``env://`` (gloo on CPU,
  nccl on CUDA, ``cuda:LOCAL_RANK`` as the device), after checking that ``RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT`` are set; a group trainwise created is left at the process's exit.
- Otherwise: one process, ``World()``.

Example (a script run with ``torchrun --nproc-per-node 2 script.py``; ``Trainer.fit`` does this itself):
    >>> world = join_world(torch.device("cpu"))
    >>> world.rank, world.world_size, world.backend
    (0, 2, 'gloo')
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import torch

from trainwise.errors import ConfigError

if TYPE_CHECKING:
    from torch.distributed import Store

# Seconds a rank waits in a collective for the others before the job fails (torch's own default is
# 30 minutes: a hung rank would hold the job that long). train.dist_timeout sets it.
DEFAULT_TIMEOUT = 120.0
EXIT_WAIT = 30.0  # seconds a rank waits at exit for the others to reach their exit too
_NEEDED = ("RANK", "MASTER_ADDR", "MASTER_PORT")
_HOW_TO_START = ("start the job with trainwise train CONFIG --nproc N, or torchrun --nproc-per-node N script.py "
                 "(torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)")


@dataclass(frozen=True)
class World:
    """This process's place in its job. ``World()`` is a single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: Optional[str] = None  # gloo or nccl; None in a single process
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: how many times the job was restarted

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the one process that writes the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset): how many processes this job has."""
    return _env_int("WORLD_SIZE", 1)


def in_launched_job() -> bool:
    """True in a process started as one rank of a job of several (torchrun, ``--nproc``)."""
    return env_world_size() > 1


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a job of several
    processes (each rank its own GPU); any other device is kept."""
    if device.type != "cuda" or device.index is not None or not in_launched_job():
        return device
    if "LOCAL_RANK" not in os.environ:
        raise ConfigError(f"WORLD_SIZE is {env_world_size()} on CUDA but LOCAL_RANK is not set, so this process "
                          f"cannot tell which GPU is its own; {_HOW_TO_START}")
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.device_count() == 1 and os.environ.get("CUDA_VISIBLE_DEVICES"):
        return torch.device("cuda", 0)  # the launcher shows each process its own GPU
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK is {local_rank} but this machine has {torch.cuda.device_count()} GPUs; "
                          "start at most one process per GPU (--nproc-per-node)")
    return torch.device("cuda", local_rank)


def join_world(device: torch.device, timeout: float = DEFAULT_TIMEOUT) -> World:
    """The ``World`` of this process, joining the job's process group first when the environment
    describes one and no group exists yet. ``device``: the device asked for (``cuda`` is mapped to
    this rank's GPU). Safe to call again: later calls return the same world."""
    import torch.distributed as dist

    restart = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), _env_int("LOCAL_RANK", dist.get_rank()), dist.get_world_size(),
                     device, dist.get_backend(), restart)
    if not in_launched_job():
        return World(device=device, restart=restart)
    world_size = env_world_size()
    for key in _NEEDED:
        if key not in os.environ:
            raise ConfigError(f"WORLD_SIZE is {world_size} but {key} is not set; {_HOW_TO_START}")
    rank = _env_int("RANK", 0)
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK must be in 0..{world_size - 1} (WORLD_SIZE is {world_size}), got {rank}")
    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    wait = datetime.timedelta(seconds=timeout)
    store = _attempt_store(world_size, restart, wait)
    if store is not None:
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=wait)
    else:
        dist.init_process_group(backend, timeout=wait)
    atexit.register(_leave)
    return World(rank, _env_int("LOCAL_RANK", rank), world_size, device, backend, restart)


def _attempt_store(world_size: int, restart: int, wait: datetime.timedelta) -> Optional["Store"]:
    """Under torch's elastic agent, the agent's store with keys of this attempt only. The agent keeps
    one store across restarts and torch 2.13 no longer prefixes the keys by attempt, so a restarted
    rank could read the previous attempt's gloo addresses ("connectFullMesh failed ... Connection
    refused", seen in one restart of three). None elsewhere (``env://`` as usual)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    import torch.distributed as dist

    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=wait)
    return dist.PrefixStore(f"trainwise/attempt_{restart}", agent)


def _leave() -> None:
    """At the exit of a process whose group trainwise created: leave it, so torch does not warn of a
    group never destroyed. On gloo the ranks leave together: a rank that tears its connections down
    while another is still tearing its own can abort in gloo ("terminate called without an active
    exception", seen in 1 exit of 5 under load). A rank that dies of an uncaught exception does not
    wait (the others are stuck in a collective and torchrun stops them); a wait is bounded anyway."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if dist.get_backend() == "gloo" and getattr(sys, "last_value", None) is None:
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=EXIT_WAIT))
        except RuntimeError:
            pass  # another rank left early (failed, or exited without Python's atexit): leave anyway
    dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}; {_HOW_TO_START}") from exc

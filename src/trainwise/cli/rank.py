"""One rank of a DDP job running ``trainwise train``: join the process group, agree on the run
folder, keep quiet unless rank 0, and turn a lost peer into one line and exit code 1."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from trainwise.cli import EXIT_RUN_FAILED
from trainwise.config.schema import RunConfig
from trainwise.distributed.ops import broadcast, world
from trainwise.distributed.launch import PeerLostError, init_from_env, shut_down
from trainwise.errors import ConfigError

TrainBody = Callable[[argparse.Namespace, RunConfig, Path], int]
_PR_SET_PDEATHSIG = 1


def continue_after_restart(args: argparse.Namespace) -> None:
    """A job restarted by its launcher (``--max-restarts``; torchrun's ``TORCHELASTIC_RESTART_COUNT``)
    continues from its last checkpoint: ``--resume auto`` is implied (it starts over when the failed
    attempt had saved none)."""
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if restart not in ("", "0") and args.resume is None:
        args.resume = "auto"
        if os.environ.get("RANK", "0") == "0":  # the job speaks once
            logging.getLogger("trainwise").info("restart %s of the job: continuing from the last checkpoint", restart)


def _die_with_launcher() -> None:
    """A rank started by an elastic launcher is killed when the launcher dies (SIGKILL included), so
    a killed launcher leaves no orphans training on (torch's launcher does not ask for it)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the request was made
        os._exit(EXIT_RUN_FAILED)


def train_rank(args: argparse.Namespace, cfg: RunConfig, run_dir: Path, body: TrainBody) -> int:
    """Run ``body`` as this process's rank; rank 0's ``run_dir`` is every rank's (a default folder
    name holds the time, which ranks may read a second apart)."""
    if args.nproc is not None and args.nproc > 1:
        raise ConfigError(f"--nproc {args.nproc} was given inside a job that already has processes (WORLD_SIZE is "
                          "set, e.g. by torchrun); drop --nproc and set the count with torchrun --nproc-per-node")
    _die_with_launcher()
    init_from_env(cfg.train.dist_timeout)
    rank = world()[0]
    if rank != 0:  # rank 0 speaks for the job; the others say only what goes wrong (stderr)
        logging.getLogger().setLevel(logging.ERROR)
        sys.stdout = open(os.devnull, "w")  # same callbacks as rank 0 (a progress bar too), printing nowhere
    try:
        code = body(args, cfg, Path(broadcast(str(run_dir))))
    except PeerLostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    shut_down()
    # End the process here, past the interpreter's teardown: gloo's threads, destroyed by C++ static
    # destructors at exit, can abort a rank that finished cleanly ("terminate called without an
    # active exception", exit -6). Everything the run wrote is closed and fsynced by now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

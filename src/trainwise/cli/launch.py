"""``trainwise train CONFIG --nproc N``: the job's ranks started and watched by torch's own elastic
launcher (``torch.distributed.run``, what ``torchrun`` runs), with what trainwise adds on top.

From torch: the rendezvous (on one machine an OS-chosen port, so two jobs at once never collide;
across machines ``--nnodes`` with ``--rdzv-endpoint``), restarts of the whole job when a rank fails
(``--max-restarts``), SIGINT/SIGTERM passed on to every rank (they save a checkpoint and stop
together), and the other ranks stopped when one dies. From trainwise: a restarted job continues
from its last checkpoint (``--resume auto`` is implied on a restart, see ``cli/rank.py``), the ranks
die with the launcher (no orphans), the cores are shared out (``OMP_NUM_THREADS``), and when the job
fails for good one line says which rank died, how, and the command that continues it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from trainwise.cli import EXIT_INTERRUPTED, EXIT_RUN_FAILED, EXIT_USER_ERROR
from trainwise.errors import ConfigError

MONITOR_SECONDS = 0.1  # how often the agent looks at its ranks (torch's default)
SHUTDOWN_SECONDS = 10  # what the agent gives a rank to end after SIGTERM before SIGKILL


def check_launch_args(args: argparse.Namespace) -> None:
    """The launcher's flags, refused in one line before anything starts."""
    if args.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0 (restarts of the whole job after a failure), "
                          f"got {args.max_restarts}")
    nodes = _nodes(args.nnodes)
    if nodes[1] > 1 and not args.rdzv_endpoint:
        raise ConfigError(f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT, the same on every machine "
                          "(a machine of the job that the others can reach)")
    if nodes[1] > 1 and not args.run_dir:
        raise ConfigError(f"--nnodes {args.nnodes} needs --run-dir, the same folder on every machine (the default "
                          "folder name holds the time, which differs between machines)")


def launch(args: argparse.Namespace, run_dir: Path) -> int:
    """Run ``args``' training as ``args.nproc`` ranks on this machine (and the rest of the job on
    others); the exit code of the job."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    min_nodes, max_nodes = _nodes(args.nnodes)
    logs = tempfile.mkdtemp(prefix="trainwise-elastic-")  # the agent's error files; removed at the end
    config = LaunchConfig(
        min_nodes=min_nodes, max_nodes=max_nodes, nproc_per_node=args.nproc, max_restarts=args.max_restarts,
        run_id=args.rdzv_id or f"trainwise-{run_dir.name}", rdzv_backend="c10d",
        rdzv_endpoint=args.rdzv_endpoint or "localhost:0",
        monitor_interval=MONITOR_SECONDS, start_method="spawn", shutdown_timeout=SHUTDOWN_SECONDS,
        logs_specs=DefaultLogsSpecs(log_dir=logs))
    _rank_environment(args.nproc)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # trainwise says what matters
    try:
        elastic_launch(config, sys.executable)(*_rank_args(args, run_dir))
    except ChildFailedError as exc:
        rank, failure = _root_cause(exc.failures)
        if failure.exitcode == EXIT_USER_ERROR:  # the rank printed the error itself
            return EXIT_USER_ERROR
        others = args.nproc * max_nodes - 1
        restarts = f" after {args.max_restarts} restart{'s' if args.max_restarts > 1 else ''}" \
            if args.max_restarts else ""
        print(f"error: {_how(rank, failure)}{restarts}; stopped the other {others} "
              f"process{'es' if others > 1 else ''}. {_resume_hint(args, run_dir)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except SignalException as exc:
        print(f"interrupted: the launcher received {exc.sigval.name} and stopped every rank. "
              f"{_resume_hint(args, run_dir)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return 0


def _nodes(nnodes: str) -> tuple[int, int]:
    """``--nnodes``: ``N`` or ``MIN:MAX`` machines."""
    low, _, high = str(nnodes).partition(":")
    try:
        counts = int(low), int(high or low)
    except ValueError:
        counts = (0, 0)
    if not 1 <= counts[0] <= counts[1]:
        raise ConfigError(f"--nnodes must be a number of machines N >= 1, or MIN:MAX, got {nnodes!r}")
    return counts


def _rank_args(args: argparse.Namespace, run_dir: Path) -> list[str]:
    command = ["-m", "trainwise", *(["--debug"] if args.debug else []), "train", args.config, *args.overrides,
               "--run-dir", str(run_dir)]
    if args.resume:
        command += ["--resume", args.resume]
    if args.resume_changed:
        command.append("--resume-changed")
    if args.quiet:
        command.append("--quiet")
    return command


def _rank_environment(nproc: int) -> None:
    """What the ranks inherit: the cores shared out (a user's OMP_NUM_THREADS wins). GLOO_SOCKET_IFNAME
    is left to the user: set to ``lo``, gloo could not reconnect the ranks of a restarted job (torch
    2.13: "connectFullMesh failed ... Connection refused" to the previous attempt's ports)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))


def _root_cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that failed first by itself: not one the agent stopped (SIGTERM) or one that only
    lost its peer (exit 1), unless there is no other."""
    def key(item: tuple[int, Any]) -> tuple[bool, bool, int]:
        code = item[1].exitcode
        return code == -signal.SIGTERM, code == EXIT_RUN_FAILED, item[1].timestamp

    return min(failures.items(), key=key)


def _how(rank: int, failure: Any) -> str:
    code = failure.exitcode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"rank {rank} (pid {failure.pid}) was killed by {name}"
    return f"rank {rank} (pid {failure.pid}) exited with code {code}"


def _resume_hint(args: argparse.Namespace, run_dir: Path) -> str:
    from trainwise import checkpoint as ckpt

    folder = run_dir / "checkpoints"
    path, _ = ckpt.find_resumable(folder)
    flags = ["--nproc", str(args.nproc)]
    if str(args.nnodes) != "1":
        flags += ["--nnodes", str(args.nnodes), "--rdzv-endpoint", args.rdzv_endpoint]
    command = " ".join(["trainwise", "train", args.config, *args.overrides, *flags, "--run-dir", str(run_dir),
                        "--resume", "auto"])
    if path is None:
        return f"No checkpoint was written yet; start it again with: {command}"
    entry = ckpt.read_manifest(folder).get(path.name, {})
    return f"The last checkpoint is {path} (step {entry.get('step', '?')}); continue with: {command}"

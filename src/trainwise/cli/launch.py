"""``trainwise train CONFIG --nproc N``: start N ranks of ``trainwise train`` on this machine and
watch them.

The launcher hosts the job's rendezvous store on a port the operating system picks (port 0), so
two jobs at once never collide, and hands it to the ranks in ``MASTER_PORT``. Each rank runs in its
own process group and dies with the launcher (``PR_SET_PDEATHSIG`` on Linux): a killed launcher
leaves no orphans. SIGINT/SIGTERM to the launcher are passed on once to every rank (they save a
checkpoint and stop together). When a rank ends badly (killed, crashed), the others are stopped
within seconds (SIGTERM, then SIGKILL after ``GRACE_SECONDS``) and the launcher says which rank,
how, and how to continue from the last checkpoint, then exits 1 (2 when a rank found a user error).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from trainwise.cli import EXIT_RUN_FAILED, EXIT_USER_ERROR

POLL_SECONDS = 0.1
OWN_END_SECONDS = 2.0
GRACE_SECONDS = 3.0
_PR_SET_PDEATHSIG = 1


def launch(args: argparse.Namespace, run_dir: Path, *, timeout: float) -> int:
    """Run ``args``' training as ``args.nproc`` ranks; the exit code of the job."""
    from torch.distributed import TCPStore

    nproc = args.nproc
    store = TCPStore("127.0.0.1", 0, nproc, is_master=True, wait_for_workers=False,
                     timeout=datetime.timedelta(seconds=timeout))
    threads = max(1, (os.cpu_count() or 1) // nproc)
    procs = [subprocess.Popen(_rank_command(args, run_dir),
                              env=_rank_env(rank, nproc, store.port, threads), preexec_fn=_own_group_dies_with_us)
             for rank in range(nproc)]
    previous = {signum: signal.signal(signum, lambda s, _f: _forward(procs, s))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = _watch(procs)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed is None:
        return 0
    rank, code = failed
    if code == EXIT_USER_ERROR:  # the rank printed the error itself
        return EXIT_USER_ERROR
    print(f"error: {_how(rank, procs[rank].pid, code)}; stopped the other {nproc - 1} "
          f"process{'es' if nproc > 2 else ''}. {_resume_hint(args, run_dir)}", file=sys.stderr)
    return EXIT_RUN_FAILED


def _rank_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "trainwise", *(["--debug"] if args.debug else []), "train", args.config,
               *args.overrides, "--run-dir", str(run_dir)]
    if args.resume:
        command += ["--resume", args.resume]
    if args.resume_changed:
        command.append("--resume-changed")
    if args.quiet:
        command.append("--quiet")
    return command


def _rank_env(rank: int, nproc: int, port: int, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TRAINWISE_LAUNCHER_STORE="1",
               GLOO_SOCKET_IFNAME=env.get("GLOO_SOCKET_IFNAME", "lo"))
    env.setdefault("OMP_NUM_THREADS", str(threads))  # the cores shared out; a user's setting wins
    return env


def _own_group_dies_with_us() -> None:
    """In the child before exec: its own process group (a Ctrl-C reaches it once, through the
    launcher) and SIGKILL when the launcher dies."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _forward(procs: list[subprocess.Popen], signum: int) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)


def _watch(procs: list[subprocess.Popen]) -> Optional[tuple[int, int]]:
    """Wait for every rank; on the first that ends badly stop the others. Returns ``(rank, exit code)``
    of the cause (a rank killed by a signal before one that only lost its peer), or None when all ended well."""
    while True:
        codes = [proc.poll() for proc in procs]
        bad = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if bad:  # the cause is among those that ended before the others were stopped
            _stop(procs)
            return min(bad, key=lambda item: (item[1] >= 0, item[1] == EXIT_RUN_FAILED))
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_SECONDS)


def _stop(procs: list[subprocess.Popen]) -> None:
    """The others first get a moment to end by themselves (a rank waiting on a dead peer fails at
    once and records its run as failed), then SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + OWN_END_SECONDS
    while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
        time.sleep(POLL_SECONDS)
    _forward(procs, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _how(rank: int, pid: int, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"rank {rank} (pid {pid}) was killed by {name}"
    return f"rank {rank} (pid {pid}) exited with code {code}"


def _resume_hint(args: argparse.Namespace, run_dir: Path) -> str:
    from trainwise import checkpoint as ckpt

    folder = run_dir / "checkpoints"
    path, _ = ckpt.find_resumable(folder)
    command = " ".join(["trainwise", "train", args.config, *args.overrides, "--nproc", str(args.nproc),
                        "--run-dir", str(run_dir), "--resume", "auto"])
    if path is None:
        return f"No checkpoint was written yet; start it again with: {command}"
    entry = ckpt.read_manifest(folder).get(path.name, {})
    return f"The last checkpoint is {path} (step {entry.get('step', '?')}); continue with: {command}"

"""run.json: who a run is, where it ran, and how it ended, written by ``Trainer.fit`` itself.

Every run folder written by ``Trainer.fit`` (CLI runs, Python runs, search trials, study variants)
gets a ``run.json`` with an id, the name, the status, the pid and host (and the pid's start time,
so a reused pid is not mistaken for the run), start/end times, a heartbeat, the command line, the
git commit with a dirty flag (and ``git.diff`` beside it when dirty), the Python/torch/CUDA
versions and the device. The file is rewritten atomically (temporary file + rename).

The heartbeat is refreshed by a daemon thread every ``HEARTBEAT_SECONDS``: nothing runs per
training step, and a killed process stops beating. Readers (``trainwise runs``) call a run whose
status is still ``running`` *crashed* when its pid is gone on this host, or when its heartbeat is
older than ``STALE_SECONDS`` for a run on another host.

Example:
    >>> record = RunRecord.start("runs/mlp-1", name="mlp")   # doctest: +SKIP
    >>> record.finish("completed", summary)                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from trainwise.runfolder import index as run_index

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
DIFF_FILE = "git.diff"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 10 * HEARTBEAT_SECONDS  # a run on another host that has not beaten for this long: crashed
_GIT_TIMEOUT = 5.0
_git_cache: dict[str, Optional[dict[str, Any]]] = {}


def new_run_id(now: Optional[float] = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sorts by start time, and 6 random hex digits keep runs that start
    in the same second apart (no max(existing)+1 race between processes)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def process_start_time(pid: int) -> Optional[int]:
    """The pid's start time in clock ticks since boot (Linux ``/proc``), or None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def read_run_json(folder: Path) -> Optional[dict[str, Any]]:
    """run.json of ``folder`` as a dict, or None when absent or unreadable."""
    try:
        data = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def git_info(cwd: Optional[Path] = None) -> Optional[dict[str, Any]]:
    """``{"commit", "branch", "dirty", "diff"}`` of the git work tree holding ``cwd`` (default the
    working directory), or None without git or outside a repository. ``dirty`` counts changes to
    tracked files (untracked files are not code the run used, usually). Cached per process."""
    where = str((cwd or Path.cwd()).resolve())
    if where not in _git_cache:
        _git_cache[where] = _read_git(where)
    return _git_cache[where]


def _git(where: str, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read_git(where: str) -> Optional[dict[str, Any]]:
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(where, "status", "--porcelain", "--untracked-files=no") or ""
    branch = (_git(where, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    dirty = bool(status.strip())
    diff = _git(where, "diff", "HEAD") if dirty else None
    return {"commit": commit.strip(), "branch": branch, "dirty": dirty, "diff": diff}


def environment(device: Any = None) -> dict[str, Any]:
    """Python, torch, CUDA and cuDNN versions, the device and its name, the OS."""
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "device": None if device is None else str(device)}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        env["cudnn"] = cudnn
        if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # a DDP job
            env["processes"], env["backend"] = torch.distributed.get_world_size(), torch.distributed.get_backend()
            if os.environ.get("TORCHELASTIC_RUN_ID"):
                env["elastic_run_id"] = os.environ["TORCHELASTIC_RUN_ID"]
    from trainwise import __version__

    env["trainwise"] = __version__
    return env


class RunRecord:
    """The run.json of one run folder, kept current while the run trains.

    ``start`` writes it with status ``running`` and adds the run to the index; a daemon thread
    refreshes ``heartbeat``; ``finish`` writes the final status (and the summary's figures into
    the index). A second ``start`` on the same folder (a resume, a second ``fit``) keeps the id.
    """

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.folder, self.data = folder, data
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def start(cls, folder: str | os.PathLike[str], *, name: str, config: Optional[dict[str, Any]] = None,
              device: Any = None, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> "RunRecord":
        folder = Path(folder)
        previous = read_run_json(folder) or {}
        now = time.time()
        git = git_info()
        data: dict[str, Any] = {
            "id": previous.get("id") or new_run_id(now), "name": name, "status": "running",
            "pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "host": socket.gethostname(),
            "started": previous.get("started", now), "ended": None, "heartbeat": now,
            "heartbeat_seconds": heartbeat_seconds, "starts": int(previous.get("starts", 0)) + 1,
            "command": [sys.executable, *sys.argv], "cwd": str(Path.cwd()),
            "git": None if git is None else {k: v for k, v in git.items() if k != "diff"},
            "environment": environment(device),
        }
        if git is not None and git.get("diff"):
            _write_text(folder / DIFF_FILE, git["diff"])
        record = cls(folder, data)
        record.write()
        run_index.record_run(folder, data, config=config, summary=None)
        record._beat_in_background(heartbeat_seconds)
        return record

    def write(self) -> None:
        """run.json, atomically; a failure to write is logged and never stops training."""
        with self._lock:
            try:
                _write_text(self.folder / RUN_FILE, json.dumps(self.data, indent=2, default=str) + "\n")
            except OSError as exc:
                log.warning("could not write %s: %s", self.folder / RUN_FILE, exc)

    def beat(self) -> None:
        self.data["heartbeat"] = time.time()
        self.write()

    def finish(self, status: str, *, config: Optional[dict[str, Any]] = None,
               summary: Optional[dict[str, Any]] = None) -> None:
        """The run's final status and end time, in run.json and the index."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _GIT_TIMEOUT)
        now = time.time()
        self.data.update(status=status, ended=now, heartbeat=now)
        self.write()
        run_index.record_run(self.folder, self.data, config=config, summary=summary)

    def _beat_in_background(self, seconds: float) -> None:
        def loop() -> None:
            while not self._stop.wait(seconds):
                self.beat()

        self._thread = threading.Thread(target=loop, name="trainwise-heartbeat", daemon=True)
        self._thread.start()


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def start_record(folder: Path, *, name: str, config: Optional[dict[str, Any]], device: Any,
                 model: Any = None) -> Optional[RunRecord]:
    """``RunRecord.start`` plus model.json (layers and parameter counts), for ``Trainer.fit``;
    a failure warns and returns None: provenance never stops training."""
    try:
        if model is not None:
            _write_text(folder / MODEL_FILE, json.dumps(describe_model(model), indent=1) + "\n")
        return RunRecord.start(folder, name=name, config=config, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("warning: could not write %s in %s (%s); training goes on", RUN_FILE, folder, exc)
        return None


MODEL_FILE = "model.json"
MAX_LAYERS = 300  # model.json lists at most this many leaf modules (a count says how many more)


def describe_model(model: Any) -> dict[str, Any]:
    """The model's class, parameter counts and its leaf modules (name, type, parameters, repr)."""
    layers: list[dict[str, Any]] = []
    total_leaves = 0
    for layer_name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        total_leaves += 1
        if len(layers) < MAX_LAYERS:
            count = sum(p.numel() for p in module.parameters(recurse=False))
            layers.append({"name": layer_name or "(model)", "type": type(module).__name__, "parameters": count,
                           "repr": repr(module)[:200]})
    parameters = list(model.parameters())
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}",
            "parameters": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
            "layers": layers, "layers_not_listed": total_leaves - len(layers)}

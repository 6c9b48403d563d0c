"""Helpers of the trainwise tune tests: a throwaway PostgreSQL server (real binaries, a cluster in
a temporary folder on a free port, run as an unprivileged user), tiny configs, and the CLI run
as a person runs it."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def pg_bindir() -> Optional[Path]:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(command: list[str], user: Optional[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole session; yields its base URL (no database name)."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; scripts/setup-system.sh installs "
                    "Debian's postgresql")
    user = None
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to an unprivileged user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        user = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="trainwise-pg-", dir="/tmp"))
    os.chmod(folder, 0o755)
    if user:
        shutil.chown(folder, user)
    data, port = folder / "data", _free_port()
    subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "trainwise",
                             "-E", "UTF8", "--no-sync"], user), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                             "-w", "start"], user), check=True, capture_output=True)
    try:
        yield f"postgresql://trainwise@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


def tiny_config(tmp_path: Path, *, epochs: int = 3, tune: Optional[dict[str, Any]] = None, batch_size: int = 64,
                **train: Any) -> Path:
    """A digits MLP config with a tune section; fast enough for many trials."""
    space = {"optimizer.lr": {"log_uniform": [1.0e-3, 3.0e-1]}, "model.hidden": {"choice": [[8], [32]]}}
    config = {
        "name": "tiny", "seed": 0,
        "data": {"dataset": "digits", "batch_size": batch_size},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "constant"},
        "train": {"epochs": epochs, "report": False, "threads": 1,
                  "early_stopping": {"enabled": False}, **train},
        "tune": {"metric": "val_accuracy", "trials": 4, "sampler": "random", "pruner": "none",
                 "heartbeat_interval": 1, "grace_period": 3, "space": space, **(tune or {})},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def tune_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainwise", "tune", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_tune(*args: str, cwd: Path, session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainwise", "tune", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=session)


def load_study(name: str, url: str) -> Any:
    import optuna

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return optuna.load_study(study_name=name, storage=url)


def wait_for(condition: Any, process: subprocess.Popen, timeout: float = 180, every: float = 0.2) -> Any:
    """Poll ``condition`` while ``process`` runs (its output is shown if it ends first)."""
    end = time.time() + timeout
    while time.time() < end:
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) first: {process.stdout.read()[-2000:]}")
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s")

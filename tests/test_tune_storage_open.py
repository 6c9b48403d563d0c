"""Opening a study storage while another process opens the same new database (a worker and `tune --status`,
optuna-dashboard or a user's script): Optuna creates its tables and version row on open, and the loser of that race
got "UNIQUE constraint failed: alembic_version" or "table studies already exists", and a worker died with exit 2
(seen in CI: the killed-workers test's study ran on one worker). The loser now opens it again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy

from trainwise.errors import StorageError
from trainwise.tune.storage import Place, connect

RACER = """
import os, sys, time
sys.path.insert(0, {src!r})
from pathlib import Path
which, db = sys.argv[1], sys.argv[2]
if which == "trainwise":
    from trainwise.tune.storage import Place, connect
else:
    import optuna
Path(db + ".ready." + str(os.getpid())).touch()
while not os.path.exists(db + ".go"):
    time.sleep(0.001)
try:
    if which == "trainwise":
        connect(Place("s", Path(db).parent, "sqlite:///" + db), heartbeat_interval=1, grace_period=3, max_retries=0)
    else:
        optuna.storages.RDBStorage("sqlite:///" + db)
    print("ok")
except Exception as exc:
    print("FAILED", type(exc).__name__, str(exc).splitlines()[0])
"""


def place(tmp_path: Path) -> Place:
    return Place("s", tmp_path, f"sqlite:///{tmp_path / 'study.db'}")


def test_a_concurrent_creation_is_retried_and_other_errors_are_not(tmp_path, monkeypatch) -> None:
    import optuna

    real = optuna.storages.RDBStorage
    calls: list[int] = []

    def collide_once(url, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # what the loser of the race sees
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {},
                                                Exception("UNIQUE constraint failed: alembic_version.version_num"))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", collide_once)
    assert connect(place(tmp_path), heartbeat_interval=1, grace_period=3, max_retries=0) is not None
    assert len(calls) == 2

    def unreachable(url, **kwargs):
        calls.append(1)
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception("unable to open database file"))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", unreachable)
    with pytest.raises(StorageError, match="cannot reach the study storage .*unable to open database file"):
        connect(place(tmp_path / "other"), heartbeat_interval=1, grace_period=3, max_retries=0)
    assert len(calls) == 1  # not a collision: no retry


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_open_it(tmp_path) -> None:
    script = tmp_path / "racer.py"
    script.write_text(RACER.format(src=str(Path(__file__).resolve().parents[1] / "src")))
    outputs = []
    for round_ in range(2):
        db = tmp_path / f"round{round_}" / "study.db"
        db.parent.mkdir()
        db.touch()
        racers = [subprocess.Popen([sys.executable, str(script), which, str(db)], stdout=subprocess.PIPE, text=True)
                  for which in ("trainwise", "optuna") * 3]
        deadline = time.time() + 120
        while len(list(db.parent.glob("study.db.ready.*"))) < len(racers) and time.time() < deadline:
            time.sleep(0.05)  # every racer has imported what it needs and waits for the start
        Path(str(db) + ".go").touch()
        outputs += [(which, racer.communicate(timeout=120)[0].strip())
                    for which, racer in zip(("trainwise", "optuna") * 3, racers)]
    assert all(out == "ok" for which, out in outputs if which == "trainwise"), outputs

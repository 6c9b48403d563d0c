"""Where a study lives, the study-wide lock, and opening (or joining) a study.

One machine: the study folder ``runs/tune/<study>/`` holds ``study.db``, an SQLite database used
through Optuna's ``RDBStorage`` with every transaction started ``BEGIN IMMEDIATE`` (writers wait
their turn instead of failing with "database is locked"); why SQLite and not Optuna's journal
file is measured in ``benchmarks/tune_storage.py``. Many machines: ``--storage URL``, any
SQLAlchemy URL of PostgreSQL (``postgresql://user:password@host/db``) or SQLite.

The study lock serializes what must not race between workers — creating the study, failing trials
whose worker died and queueing their retries, and deciding whether another trial fits the budget:
an ``flock`` on a file beside an SQLite database, a PostgreSQL advisory lock on a server. Both are
released by the operating system or the server when a worker is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from trainwise.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Place:
    """``name``: the study's name; ``folder``: this machine's study folder (trial run folders,
    best.yaml, trials.csv, plots); ``url``: the SQLAlchemy URL of the storage."""

    name: str
    folder: Path
    url: str

    @property
    def dialect(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0]

    @property
    def shown_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)


def resolve_place(name: str, storage: Optional[str], folder: Optional[Path]) -> Place:
    """The study folder defaults to ``runs/tune/<name>``; the storage to ``study.db`` inside it."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"study name must be a plain name such as 'mnist1d-a', got {name!r}")
    folder = Path(folder) if folder is not None else Path("runs") / "tune" / name
    url = storage or f"sqlite:///{(folder / STUDY_DB).absolute()}"
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    if dialect not in DIALECTS:
        raise ConfigError(f"--storage must be a PostgreSQL or SQLite URL (postgresql://user:password@host/db, "
                          f"sqlite:///path.db), got {url!r}")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, the postgres extra's driver
    return Place(name, folder, url)


def connect(place: Place, *, heartbeat_interval: int, grace_period: int, max_retries: int) -> Any:
    """Optuna's RDBStorage with heartbeats: a trial whose worker stops beating for ``grace_period``
    seconds is failed and queued again with the same parameters (at most ``max_retries`` times)."""
    import optuna
    import sqlalchemy

    if place.dialect == "sqlite":
        place.folder.mkdir(parents=True, exist_ok=True)
        _sqlite_path(place).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120.0}}
    else:
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        with _quiet_optuna():
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries,
                                                                     inherit_intermediate_values=True)
            storage = _rdb_storage(place.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                   grace_period=grace_period, heartbeat_stale_trial_callback=retry)
    except ModuleNotFoundError as exc:
        raise StorageError(f"the storage {place.shown_url} needs the {exc.name} package; install trainwise[postgres] "
                           "(pip install 'psycopg[binary]')") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, sqlalchemy.exc.InterfaceError,
            sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
        first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot reach the study storage {place.shown_url}: {first}; check the host, port, "
                           "database, user and password, or drop --storage to keep the study in its folder") from None
    if place.dialect == "sqlite":
        _serialize_sqlite_writers(storage)
    return storage


# Optuna's RDBStorage creates its tables and its alembic version row when it opens a database. Two processes opening a
# new one at once (a worker and `tune --status`, optuna-dashboard or a user's script: the workers among themselves
# take StudyLock first) collide: "table studies already exists" or "UNIQUE constraint failed: alembic_version" (SQLite),
# "duplicate key value" (PostgreSQL). The loser opens it again, and then finds the tables made.
CONCURRENT_CREATION = ("already exists", "unique constraint failed: alembic_version", "duplicate key value")
OPEN_ATTEMPTS = 8


def _rdb_storage(url: str, **kwargs: Any) -> Any:
    import optuna
    import sqlalchemy

    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError) as exc:
            concurrent = any(text in str(exc).lower() for text in CONCURRENT_CREATION)
            if not concurrent or attempt == OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _serialize_sqlite_writers(storage: Any) -> None:
    """Every SQLite transaction starts with BEGIN IMMEDIATE: a writer waits (up to the busy timeout)
    instead of two readers deadlocking on their upgrade to write, which SQLite reports at once as
    "database is locked" (optuna/optuna#820). The pool is emptied so every connection gets it."""
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver opens no transaction of its own
        # WAL: readers do not wait for the writer, and a commit is one append (synchronous=NORMAL
        # stays consistent when a process is killed; only a power cut may lose the last commits).
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", on_connect)
    event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _sqlite_path(place: Place) -> Path:
    from sqlalchemy.engine import make_url

    return Path(make_url(place.url).database or STUDY_DB)


class StudyLock:
    """A study-wide mutex for the few steps that must not race between workers (taken before the
    storage is opened too: two workers creating Optuna's tables at once would collide)."""

    def __init__(self, place: Place) -> None:
        self.place = place
        self.key = zlib.crc32(f"trainwise-tune:{place.name}".encode()) & 0x7FFFFFFF
        self._engine: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.place.dialect == "sqlite":
            path = _sqlite_path(self.place)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(str(path) + ".lock", "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        import sqlalchemy

        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.place.url, poolclass=sqlalchemy.pool.NullPool,
                                                    connect_args={"connect_timeout": 10})
        try:
            connection = self._engine.connect()
        except ModuleNotFoundError as exc:
            raise StorageError(f"the storage {self.place.shown_url} needs the {exc.name} package; install "
                               "trainwise[postgres] (pip install 'psycopg[binary]')") from None
        except sqlalchemy.exc.OperationalError as exc:
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
            raise StorageError(f"cannot reach the study storage {self.place.shown_url}: {first}; check the host, "
                               "port, database, user and password, or drop --storage to keep the study in its "
                               "folder") from None
        with connection:  # a killed worker's connection closes, and the server releases its lock
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                connection.commit()


def open_study(place: Place, storage: Any, *, direction: Any, sampler: Any, pruner: Any,
               identity: dict[str, Any]) -> Any:
    """Create the study or join it. ``identity`` (the space, the metric and direction) is stored
    with a new study; joining one whose identity differs is refused, naming the difference."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _quiet_optuna():
        study = optuna.create_study(study_name=place.name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=direction, load_if_exists=True)
    stored = study.user_attrs.get("trainwise")
    if stored is None:
        study.set_user_attr("trainwise", identity)
        return study
    for key in ("space", "metric", "direction"):
        if stored.get(key) != identity.get(key):
            old, new = stored.get(key), identity.get(key)
            if key == "space":
                old, new = _space_difference(str(old), str(new))
            raise StorageError(f"study {place.name!r} already exists in {place.shown_url} with another {key}: "
                               f"{old} (stored) vs {new} (given); use the same tune.{key}, or a new --study name")
    return study


def _space_difference(old: str, new: str) -> tuple[str, str]:
    a, b = json.loads(old), json.loads(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return (", ".join(f"{k}={_short(a.get(k))}" for k in keys), ", ".join(f"{k}={_short(b.get(k))}" for k in keys))


def _short(spec: Optional[dict[str, Any]]) -> str:
    if spec is None:
        return "absent"
    if spec["kind"] == "choice":
        return f"choice{spec['choices']}"
    return f"{spec['kind']}[{spec['low']:g}, {spec['high']:g}]"


def load_existing(place: Place, storage: Any) -> Any:
    """The study for ``--status`` (no sampler needed); a clear error when it does not exist."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if place.name not in names:
        from trainwise.checks import did_you_mean

        raise StorageError(f"no study {place.name!r} in {place.shown_url}{did_you_mean(place.name, names)}"
                           + (f" (studies there: {', '.join(names)})" if names else "; start it with trainwise tune CONFIG"))
    return optuna.load_study(study_name=place.name, storage=storage)

"""The MLflow logger's calls to its tracking server, bounded in time, and an unreachable server
told apart from other errors.

MLflow retries every HTTP request with exponential backoff: by default 7 retries and 120 s per
attempt, minutes per call while a server is down, and the training waits for each. The logger's
own calls run with ``HTTP_BOUNDS`` instead (``ATTEMPTS_PER_CALL`` attempts, a 1 s backoff
factor, a 10 s timeout per attempt): they are set in MLflow's environment variables for the
length of each call and taken away afterwards, so the process's environment is as the user left
it. A variable the user set wins (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 trainwise train ...`` waits
as long as asked). A call that fails because the server cannot be reached (refused, no answer in
time, server errors after the retries) raises ``LoggerUnavailable``: the loop switches the
logger off with one warning and training goes on.

Example:
    >>> call_server("http://127.0.0.1:9", client.log_batch, run_id, metrics=metrics)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Callable, Iterator, Optional

from trainwise.callbacks.base import LoggerUnavailable

HTTP_RETRIES = 2
ATTEMPTS_PER_CALL = 1 + HTTP_RETRIES
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(HTTP_RETRIES), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_OS_REASON = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")


@contextlib.contextmanager
def bounded_http() -> Iterator[None]:
    """MLflow's HTTP retries and timeout bounded by ``HTTP_BOUNDS`` for the block (the user's own
    settings kept), urllib3's line per retry kept off the terminal (the warning says it once)."""
    added = {name: value for name, value in HTTP_BOUNDS.items() if name not in os.environ}
    os.environ.update(added)
    retry_lines = logging.getLogger("urllib3.connectionpool")
    retry_lines.addFilter(_errors_only)
    try:
        yield
    finally:
        retry_lines.removeFilter(_errors_only)
        for name in added:
            os.environ.pop(name, None)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def call_server(uri: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``action(*args, **kwargs)``, an MLflow client call, with bounded HTTP retries; an
    unreachable server becomes ``LoggerUnavailable`` naming ``uri`` and why."""
    with bounded_http():
        try:
            return action(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - sorted: an outage is told apart, the rest re-raised
            reason = unreachable_reason(error)
            if reason is None:
                raise
            attempts = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_RETRIES))
            raise LoggerUnavailable(f"MLflow tracking server {uri} cannot be reached ({reason}; "
                                    f"{_attempts(attempts)})") from error


def unreachable_reason(error: BaseException) -> Optional[str]:
    """Why the server could not be reached, when that is what ``error`` (or an error it was raised
    from) says; None for any other error (a refused value, a bug), which the loop's containment handles."""
    try:
        from requests import exceptions as http
    except ImportError:  # pragma: no cover - MLflow depends on requests
        return None
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, http.RetryError):
            return "it kept answering with server errors"
        if isinstance(current, (http.Timeout, TimeoutError)):
            return "no answer in time"
        if isinstance(current, (http.ConnectionError, ConnectionError)):
            text = str(current)
            if "timed out" in text.lower():  # requests reports read timeouts after retries as a ConnectionError
                return "no answer in time"
            found = _OS_REASON.search(text)
            return found.group(1).strip() if found else "connection failed"
        current = current.__cause__ or current.__context__
    return None


def _attempts(retries: str) -> str:
    try:
        count = 1 + int(retries)
    except ValueError:
        return "after MLflow's retries"
    return f"{count} attempt{'s' if count != 1 else ''}"

"""Error types.

Every error a user can cause is a ``TrainwiseError`` and also the matching built-in
exception, so ``except ValueError`` keeps working for people who do not know trainwise.
The CLI prints these as one line and exits non-zero; anything else is a bug and shows a
traceback.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class TrainwiseError(Exception):
    """Base class of every error trainwise raises on purpose."""


class ConfigError(TrainwiseError, ValueError):
    """A config file, override or argument is malformed or impossible."""


class DataError(TrainwiseError, ValueError):
    """Input data is unusable: NaN/Inf, labels out of range, mismatched shapes."""


class DataNotFoundError(TrainwiseError, FileNotFoundError):
    """A data file or folder the config names does not exist."""


class CheckpointError(TrainwiseError, RuntimeError):
    """A checkpoint cannot be written, verified or loaded."""


class ResumeMismatchError(TrainwiseError, ValueError):
    """A resume was asked with a config that changes the model or data."""


class DivergedError(TrainwiseError, RuntimeError):
    """Training produced non-finite values and the policy gave up."""


class LRFinderError(TrainwiseError, RuntimeError):
    """The LR range test gave no usable suggestion."""


class ExportError(TrainwiseError, RuntimeError):
    """A model cannot be exported to a format, or the exported artifact disagrees with it."""


class StorageError(TrainwiseError, ConnectionError):
    """A search's study storage cannot be reached, or holds a study that does not fit."""


class ClusterError(TrainwiseError, ConnectionError):
    """A Ray cluster cannot be reached, or cannot give what a search asks of it."""


class BatchSizeError(TrainwiseError, RuntimeError):
    """The batch-size finder found no size that runs: the model does not fit at batch size 1."""


class LoggerError(TrainwiseError, RuntimeError):
    """A logger cannot start (a folder it cannot create, a malformed URI): the run stops before step 0."""


class StoppedWithPeerError(TrainwiseError, RuntimeError):
    """Another process of a DDP job failed in the setup every process goes through together (the run
    folder's first files, the callbacks' ``on_fit_start``): this process stopped with it."""


class RunEndedBadlyWarning(RuntimeWarning):
    """``Trainer.fit`` returned a run that diverged or failed (its ``summary.json`` says why): said
    once, so that a script or notebook does not go on as if it had trained. The CLI prints the same
    line itself and silences this."""


class UnknownArgumentError(TrainwiseError, TypeError):
    """A keyword argument the function does not take (with the name to use instead, when another
    tool's habit is recognised)."""


def user_facing(function: F) -> F:
    """A public call (``Trainer.fit``, ``evaluate``, ...): a ``TrainwiseError`` — a user's mistake, said
    in one line — is raised from the user's own line, without trainwise's frames in between (its cause,
    a torch error inside the user's model, stays). ``TRAINWISE_DEBUG=1`` keeps every frame."""
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TrainwiseError as error:
            if os.environ.get("TRAINWISE_DEBUG"):
                raise
            raise error.with_traceback(None)  # noqa: B904 - the same error, its cause kept

    return call  # type: ignore[return-value]

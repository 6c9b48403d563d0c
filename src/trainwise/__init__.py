"""trainwise: the practices every deep-learning guide preaches, as the default.

Example:
    >>> from trainwise import Trainer
    >>> result = Trainer(model, loss="cross_entropy", lr=3e-3, epochs=10).fit((x, y), (x_val, y_val))
    >>> from trainwise import doctor   # pre-flight checks and the post-run diagnosis
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time each name is imported on first use
    from trainwise.callbacks import Callback, CheckpointSaver, EarlyStopping, ProgressBar
    from trainwise.config import RunConfig, load_config
    from trainwise.data import load_data
    from trainwise.errors import CheckpointError, ConfigError, DataError, TrainwiseError
    from trainwise.fit import FitResult
    from trainwise.init import initialize
    from trainwise.lr_finder import LRFinder
    from trainwise.models import build_model
    from trainwise.optim import build_optimizer
    from trainwise.schedules import build_schedule
    from trainwise.state import RunState
    from trainwise.trainer import Trainer

__version__ = "0.1.0"

# Public names and the modules that define them; imported on first use so that
# `trainwise --help` does not pay for torch.
_EXPORTS = {
    "Trainer": "trainwise.trainer",
    "FitResult": "trainwise.fit",
    "RunState": "trainwise.state",
    "Callback": "trainwise.callbacks",
    "EarlyStopping": "trainwise.callbacks",
    "CheckpointSaver": "trainwise.callbacks",
    "ProgressBar": "trainwise.callbacks",
    "LRFinder": "trainwise.lr_finder",
    "build_schedule": "trainwise.schedules",
    "build_optimizer": "trainwise.optim",
    "build_model": "trainwise.models",
    "initialize": "trainwise.init",
    "load_data": "trainwise.data",
    "load_config": "trainwise.config",
    "RunConfig": "trainwise.config",
    "TrainwiseError": "trainwise.errors",
    "ConfigError": "trainwise.errors",
    "DataError": "trainwise.errors",
    "CheckpointError": "trainwise.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "doctor":  # the subpackage: `from trainwise import doctor` or `trainwise.doctor`
        return importlib.import_module("trainwise.doctor")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

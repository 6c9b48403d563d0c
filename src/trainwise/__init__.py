"""trainwise: the practices every deep-learning guide preaches, as the default.

Example:
    >>> from trainwise import Trainer
    >>> result = Trainer(model, loss="cross_entropy", lr=3e-3, epochs=10).fit((x, y), (x_val, y_val))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names and the modules that define them; imported on first use so that
# `trainwise --help` does not pay for torch.
_EXPORTS = {
    "Trainer": "trainwise.trainer",
    "FitResult": "trainwise.trainer",
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
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

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
    from trainwise.config.schema import RunConfig, load_config
    from trainwise.data import load_data
    from trainwise.errors import CheckpointError, ConfigError, DataError, ExportError, TrainwiseError
    from trainwise.export import ExportResult, export, load_model
    from trainwise.engine.fit import FitResult
    from trainwise.models.init import initialize
    from trainwise.lr.finder import LRFinder
    from trainwise.models import build_model
    from trainwise.optim import build_optimizer
    from trainwise.schedules import build_schedule
    from trainwise.engine.state import RunState
    from trainwise.trainer import Trainer
    from trainwise.tune import tune

__version__ = "0.1.0"

# Public names and the modules that define them; imported on first use so that
# `trainwise --help` does not pay for torch.
_EXPORTS = {
    "Trainer": "trainwise.trainer",
    "FitResult": "trainwise.engine.fit",
    "RunState": "trainwise.engine.state",
    "Callback": "trainwise.callbacks",
    "EarlyStopping": "trainwise.callbacks",
    "CheckpointSaver": "trainwise.callbacks",
    "ProgressBar": "trainwise.callbacks",
    "LRFinder": "trainwise.lr.finder",
    "build_schedule": "trainwise.schedules",
    "build_optimizer": "trainwise.optim",
    "build_model": "trainwise.models",
    "initialize": "trainwise.models.init",
    "load_data": "trainwise.data",
    "load_config": "trainwise.config.schema",
    "RunConfig": "trainwise.config.schema",
    "TrainwiseError": "trainwise.errors",
    "ConfigError": "trainwise.errors",
    "DataError": "trainwise.errors",
    "CheckpointError": "trainwise.errors",
    "ExportError": "trainwise.errors",
    "export": "trainwise.export",
    "load_model": "trainwise.export",
    "ExportResult": "trainwise.export",
}
# trainwise.tune is a package that can be called: trainwise.tune(config_or_fn, space=..., ...).
_SUBMODULES = ("tune",)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "doctor":  # the subpackage: `from trainwise import doctor` or `trainwise.doctor`
        return importlib.import_module("trainwise.doctor")
    if name in _SUBMODULES:
        return importlib.import_module(f"trainwise.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""Hyperparameter search on Optuna with the toolkit's own training loop: ``trainwise tune CONFIG``
and ``trainwise.tune(config_or_fn, space=..., ...)``.

``trainwise.tune`` is this package and the function at once: calling the package calls
``trainwise.tune.api.tune``, so ``trainwise.tune(objective, space=...)`` and
``from trainwise.tune import tune`` both work.

Parts: ``space`` (the YAML space and sampling), ``settings`` (the tune: section, samplers and
pruners), ``storage`` (the study folder or a database, the study lock), ``worker`` (the budget,
heartbeats and retries), ``trial`` (one trial), ``results``/``plots``/``study_report`` (the study
folder's files); the Ray backend: ``ray_backend`` (the driver), ``ray_trial`` (a trial in a Ray
worker), ``ray_results`` (the study folder from Ray's reports), ``pbt`` (population-based training).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from trainwise.tune.api import TuneResult, tune
from trainwise.tune.trial import TrialReporter, TrialRun

__all__ = ["TrialReporter", "TrialRun", "TuneResult", "tune"]


class _CallableModule(types.ModuleType):
    """Lets ``trainwise.tune(...)`` work although ``trainwise.tune`` is this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> TuneResult:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

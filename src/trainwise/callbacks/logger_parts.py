"""What the loggers (trainwise.callbacks.loggers, trainwise.callbacks.wandb_logger) share: the
check that a logger's package is installed, the config flattened to dotted keys, finite figures
only, and a run's final figures read from its summary.json."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from trainwise.callbacks.base import Trainer
from trainwise.errors import ConfigError


def require_package(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the {extra} logger needs the {module!r} package, which is not installed; "
                          f"pip install 'trainwise[{extra}]'")


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict) and value:
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def finite_figures(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def final_figures(trainer: Trainer) -> dict[str, float]:
    try:
        summary = json.loads((Path(trainer.run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    keys = [k for k in summary if k.startswith(("best_val", "test_")) or k in ("epochs_run", "steps")]
    return finite_figures({k: summary[k] for k in keys})

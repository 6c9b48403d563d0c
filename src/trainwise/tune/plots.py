"""The study's plots as PNG (Optuna's matplotlib plots; plotly is not needed): optimization
history, parameter importance, parallel coordinates, and intermediate values (each trial's
metric per epoch, pruned trials included, so the early stops show)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

PLOTS = ("history", "importance", "parallel", "intermediate")


def write_plots(study: Any, folder: Path) -> dict[str, Path]:
    """Write ``<name>.png`` for each plot the study's trials allow; returns the written ones."""
    import matplotlib
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm
    from optuna.trial import TrialState

    makers: dict[str, Callable[[Any], Any]] = {
        "history": ovm.plot_optimization_history,
        "importance": ovm.plot_param_importances,
        "parallel": ovm.plot_parallel_coordinate,
        "intermediate": ovm.plot_intermediate_values,
    }
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    written: dict[str, Path] = {}
    for name, make in makers.items():
        if complete < (2 if name in ("importance", "parallel") else 1):
            continue
        path = folder / f"{name}.png"
        try:
            # Optuna's plots call plt.style.use("ggplot"): keep that out of the user's (and the
            # report's) global matplotlib settings
            with matplotlib.rc_context(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental
                axes = make(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                figure.savefig(path, dpi=90)
            plt.close(figure)
            written[name] = path
        except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError) as exc:
            log.info("plot %s skipped: %s", name, exc)  # e.g. importance with a parameter that never varied
            plt.close("all")
    return written

"""One trial: what a user's objective receives (``TrialRun``), the callback that reports each
epoch's figure and lets the pruner end the run, and a config trial (the same code as
``trainwise train``: ``trainwise.config.build`` with the trial's values set in the config).

A Python objective is a function ``objective(trial: TrialRun) -> FitResult | float``::

    def objective(trial):
        model = make_model(hidden=trial.params["hidden"])
        trainer = Trainer(model, lr=trial.params["lr"], epochs=10, run_dir=trial.run_dir,
                          callbacks=[trial.callback], progress=False, report=False)
        return trainer.fit(train, val, resume=trial.resume)

Returning the ``FitResult`` lets the search read the metric (and see that a run was pruned);
returning a float reports that value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trainwise.callbacks import Callback
from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError


class TrialReporter(Callback):
    """Reports ``metric`` to the search after every epoch (resource = epochs) and ends the run as
    ``pruned`` when the pruner says so; the run folder's summary.json then has
    ``"status": "pruned"`` and ``"pruned_at_epoch"``."""

    def __init__(self, trial: Any, metric: str, pruner: str) -> None:
        self.trial, self.metric, self.pruner = trial, metric, pruner

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        if self.metric not in logs:
            raise ConfigError(f"tune.metric {self.metric!r} is not logged by this run"
                              f"{did_you_mean(self.metric, logs)}; logged: {', '.join(sorted(logs))}")
        value, epoch = float(logs[self.metric]), trainer.state.epoch
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        # The pruner is asked at every epoch (it records the trial's value at its rung), but the
        # last epoch is the top rung, never a pruning point: Li et al.'s ASHA and HyperBand complete
        # the trials that reach R, Ray's ASHA ends them at max_t as finished. Optuna's halving
        # pruners know no maximum and judge a trial there too: pruning it saves nothing and drops a
        # fully trained trial's value (HyperBand's last bracket, which prunes nothing, would
        # prune 2/3 of its trials at R).
        if self.trial.should_prune() and not last_epoch(trainer.state):
            trainer.stop(f"pruned by the {self.pruner} pruner after epoch {epoch}: {self.metric} {value:.4g} "
                         "trails the trials that reached this epoch", status="pruned")


def last_epoch(state: Any) -> bool:
    """Whether the epoch that just ended is the run's last (its epochs or its max_steps reached)."""
    return state.epoch >= state.max_epochs or (state.max_steps is not None and state.step >= state.max_steps)


@dataclass
class TrialRun:
    """What an objective gets. ``params``: the trial's values by name; ``run_dir``: its folder;
    ``callback``: a ``Callback`` to pass to the Trainer (reports each epoch, prunes); ``resume``:
    ``"auto"`` when this is a retry of a trial whose worker died (pass it to ``fit``), else None;
    ``number``: the trial's number in the study."""

    number: int
    params: dict[str, Any]
    run_dir: Path
    callback: TrialReporter
    resume: Optional[str] = None
    seed: int = 0


def objective_value(result: Any, metric: str, maximize: bool) -> Optional[float]:
    """The figure a trial is judged by: the metric at the run's best epoch (the weights it keeps and
    ``trainwise train`` reports as ``best_<metric>`` in summary.json), else its best over epochs."""
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return float(result)
    summary = getattr(result, "summary", None) or {}
    value = summary.get(f"best_{metric}")
    if value is None and metric == "val_loss":
        value = summary.get("best_val_loss")
    if value is None:
        history = [row[metric] for row in getattr(result, "history", []) if metric in row]
        finite = [v for v in history if math.isfinite(v)]
        value = (max(finite) if maximize else min(finite)) if finite else None
    return None if value is None or not math.isfinite(value) else float(value)


def trial_config(base: dict[str, Any], params: dict[str, Any], *, name: str, report: bool) -> Any:
    """The run config of a trial: ``base`` (a resolved config) with each ``section.key`` set."""
    from trainwise.config.schema import config_from_dict

    raw = json.loads(json.dumps(base))
    for key, value in params.items():
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    raw["name"] = name
    raw.setdefault("train", {})["report"] = report
    raw.pop("tune", None)
    return config_from_dict(raw)


class ConfigObjective:
    """Trains one trial of a config the way ``trainwise train`` does. The data set is loaded once
    per worker and reused while a trial's ``data`` section and seed are the same."""

    def __init__(self, base: dict[str, Any], study: str, report: bool) -> None:
        self.base, self.study, self.report = base, study, report
        self._bundle_key: Optional[str] = None
        self._bundle: Any = None

    def config_for(self, trial: TrialRun) -> Any:
        return trial_config(self.base, trial.params, name=f"{self.study}-trial-{trial.run_dir.name[6:]}",
                            report=self.report)

    def __call__(self, trial: TrialRun) -> Any:
        from trainwise.config import build

        cfg = self.config_for(trial)
        build.pin_threads(cfg)
        bundle = self._bundle_for(cfg)
        model = build.make_model(cfg, bundle)
        trainer = build.make_trainer(cfg, bundle, model, trial.run_dir, progress=False, callbacks=(trial.callback,))
        if bundle.class_names:
            trainer.summary_extra["class_names"] = bundle.class_names
        trial.run_dir.mkdir(parents=True, exist_ok=True)
        build.write_data_description(trial.run_dir, bundle)
        return trainer.fit(bundle.train, bundle.val, resume=trial.resume)

    def _bundle_for(self, cfg: Any) -> Any:
        from trainwise.config import build

        key = json.dumps({"data": cfg.data.model_dump(mode="json"), "seed": cfg.seed}, sort_keys=True)
        if key != self._bundle_key:
            self._bundle, self._bundle_key = build.load_bundle(cfg), key
        return self._bundle

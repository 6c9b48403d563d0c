"""The search's settings (the ``tune:`` section besides its space) and the Optuna sampler and
pruner they name. Every value is checked before any trial runs.

``tune:`` keys (defaults in ``TuneSettings``)::

    metric: val_accuracy     # what the search optimizes: a logged figure, val_loss by default
    direction: auto          # from the metric's words (val_iou: maximize, val_loss: minimize); else refused
    sampler: tpe             # grid | random | tpe | gp
    pruner: asha             # none | median | asha (asynchronous successive halving) | hyperband
    min_resource: 1          # epochs every trial trains before it can be pruned
    reduction_factor: 3      # asha/hyperband keep the best 1/reduction_factor at each rung
    trials: 20               # the study's total across all its workers
    timeout: null            # seconds; each worker starts no trial after it
    seed: null               # the sampler's seed (default: the config's seed)
    heartbeat_interval: 10   # seconds between a running trial's heartbeats
    grace_period: 30         # a trial without a heartbeat this long is failed and retried
    max_retries: 3           # retries of one trial whose worker died
    report: false            # report.html in each trial's folder
    backend: optuna          # optuna | ray (trials as Ray Tune trials; pip install 'trainwise[ray]')
    scheduler: null          # pbt: population-based training (ray backend; replaces the pruner)
    perturbation_interval: 2 # pbt: epochs between a trial's perturbations
    resources: {cpu: 1, gpu: 0}  # ray backend: what one trial takes of a node
    space: {...}             # see trainwise.tune.space
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from trainwise.callbacks.monitor import direction_of, undecided_message
from trainwise.checks import check_choice, check_int, check_range, closest
from trainwise.errors import ConfigError
from trainwise.tune.space import Param, parse_space

SAMPLERS = ("grid", "random", "tpe", "gp")
PRUNERS = ("none", "median", "asha", "hyperband")
DIRECTIONS = ("auto", "minimize", "maximize")
BACKENDS = ("optuna", "ray")
SCHEDULERS = ("pbt",)
RESOURCES = ("cpu", "gpu")


@dataclass
class TuneSettings:
    metric: str = "val_loss"
    direction: str = "auto"
    sampler: str = "tpe"
    pruner: str = "asha"
    min_resource: int = 1
    reduction_factor: int = 3
    trials: Optional[int] = 20
    timeout: Optional[float] = None
    seed: Optional[int] = None
    heartbeat_interval: int = 10
    grace_period: Optional[int] = None
    max_retries: int = 3
    report: bool = False
    backend: str = "optuna"
    scheduler: Optional[str] = None
    perturbation_interval: int = 2
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    space: dict[str, Param] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        if self.direction != "auto":
            return self.direction == "maximize"
        found = direction_of(self.metric)  # the monitor's rule: a name that does not say is refused
        if found is None:
            raise ConfigError(undecided_message(self.metric, "set tune.direction to maximize or minimize "
                                                             "(direction= in Python)"))
        return found == "max"

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def grace(self) -> int:
        return self.grace_period if self.grace_period is not None else 3 * self.heartbeat_interval


def parse_settings(raw: Any, **overrides: Any) -> TuneSettings:
    """``raw``: the ``tune:`` mapping; ``overrides``: values given on the command line or in Python
    (None means "not given"). Raises ConfigError naming the first bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"tune must be a mapping of settings and a space, got {raw!r}")
    names = [f.name for f in fields(TuneSettings)]
    for key in raw:
        if key not in names:
            hint = closest(key, names)
            raise ConfigError(f"unknown key 'tune.{key}' in config" + (f"; did you mean 'tune.{hint}'?" if hint else
                                                                        f"; valid keys: {', '.join(names)}"))
    values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    if "space" not in values or values["space"] in (None, {}):
        raise ConfigError("the tune section has no space: add tune.space, mapping config keys to distributions, "
                          "e.g. space: {optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}}")
    space = values["space"] if isinstance(values["space"], dict) and all(
        isinstance(p, Param) for p in values["space"].values()) else parse_space(values["space"])
    s = TuneSettings(**{**values, "space": space})
    check_choice("tune.sampler", s.sampler, SAMPLERS)
    check_choice("tune.pruner", s.pruner, PRUNERS)
    check_choice("tune.direction", s.direction, DIRECTIONS)
    check_int("tune.min_resource", s.min_resource, 1)
    check_int("tune.reduction_factor", s.reduction_factor, 2)
    check_int("tune.heartbeat_interval", s.heartbeat_interval, 1)
    check_int("tune.max_retries", s.max_retries, 0)
    if s.grace_period is not None and check_int("tune.grace_period", s.grace_period, 1) <= s.heartbeat_interval:
        raise ConfigError(f"tune.grace_period must be longer than tune.heartbeat_interval ({s.heartbeat_interval}s), "
                          f"got {s.grace_period}; a live trial would be taken for dead")
    if s.trials is not None:
        check_int("tune.trials", s.trials, 1)
    if s.timeout is not None:
        check_range("tune.timeout", s.timeout, 0, low_open=True)
    if s.trials is None and s.timeout is None:
        raise ConfigError("the search has no budget: set tune.trials (--trials N) or tune.timeout (--timeout SECONDS)")
    if s.seed is not None:
        check_int("tune.seed", s.seed, 0)
    if not isinstance(s.metric, str) or not s.metric:
        raise ConfigError(f"tune.metric must name a logged figure such as val_loss or val_accuracy, got {s.metric!r}")
    _ = s.maximize  # an auto direction that the metric's name does not say is refused here, before any trial
    _check_backend(s, values)
    if s.sampler == "grid":
        if any(p.when for p in space.values()):
            raise ConfigError("the grid sampler takes no conditional parameters ('when'); use sampler random or tpe")
        for p in space.values():
            p.grid_values()
    return s


def _check_backend(s: TuneSettings, given: dict[str, Any]) -> None:
    """The backend, the resources per trial and PBT's constraints (``given``: the keys set)."""
    check_choice("tune.backend", s.backend, BACKENDS)
    if s.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("tune.backend ray needs the 'ray' package, which is not installed; pip install "
                          "'trainwise[ray]'")
    if s.scheduler is not None:
        check_choice("tune.scheduler", s.scheduler, SCHEDULERS)
    check_int("tune.perturbation_interval", s.perturbation_interval, 1)
    if not isinstance(s.resources, dict):
        raise ConfigError(f"tune.resources must map cpu and gpu to amounts per trial, e.g. {{cpu: 1, gpu: 0.5}}, "
                          f"got {s.resources!r}")
    for key, amount in s.resources.items():
        check_choice("tune.resources key", key, RESOURCES)
        check_range(f"tune.resources.{key}", amount, 0)
    s.resources = {"cpu": 1, "gpu": 0, **s.resources}
    if s.resources["cpu"] <= 0:
        raise ConfigError(f"tune.resources.cpu must be > 0 (a trial runs on at least part of a CPU), "
                          f"got {s.resources['cpu']}")
    if s.backend != "ray":
        for key in ("scheduler", "resources"):
            if given.get(key) is not None:
                raise ConfigError(f"tune.{key} needs the Ray backend: add tune.backend: ray (--backend ray)")
    if s.scheduler == "pbt":
        if given.get("pruner") not in (None, "none"):
            raise ConfigError(f"tune.scheduler pbt replaces the pruner (PBT keeps every trial and perturbs the "
                              f"worst); remove tune.pruner, got {given['pruner']!r}")
        if given.get("sampler") not in (None, "random"):
            raise ConfigError(f"tune.scheduler pbt samples its first population at random; remove tune.sampler, "
                              f"got {given['sampler']!r}")
        s.pruner, s.sampler = "none", "random"


def grid_size(space: dict[str, Param]) -> int:
    size = 1
    for p in space.values():
        size *= len(p.grid_values())
    return size


def make_sampler(settings: TuneSettings, seed: int) -> Any:
    """The Optuna sampler. ``seed``: this worker's seed (the study's seed plus the worker's index, so
    that two workers never draw the same sequence)."""
    import optuna

    s = settings.sampler
    if s == "grid":
        from trainwise.tune.space import encode

        grid = {name: [encode(v) for v in p.grid_values()] for name, p in settings.space.items()}
        return _grid_sampler(grid, seed)
    if s == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s == "gp":
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=False)
    # constant_liar: a running trial (or one whose worker died) counts as a poor result, so that
    # parallel workers spread out instead of sampling the same point.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _grid_sampler(grid: dict[str, list[Any]], seed: int) -> Any:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid, except that finishing the last point does not call ``study.stop()``, which
        works only inside ``Study.optimize`` (raised in ``tell``, it would leave the trial RUNNING):
        the budget, capped at the grid's size, ends the search."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler(grid, seed=seed)


def make_pruner(settings: TuneSettings, max_epochs: int) -> Any:
    """Resource = epochs. ASHA is Optuna's SuccessiveHalvingPruner (asynchronous: a trial is judged
    against the trials that already reached its rung)."""
    import optuna

    p, r, eta = settings.pruner, settings.min_resource, settings.reduction_factor
    if p == "none":
        return optuna.pruners.NopPruner()
    if p == "median":
        # steps are epochs counted from 1, and Optuna's earliest pruning step is n_warmup_steps:
        # a trial trains min_resource epochs before it can be pruned (as the halving pruners' first rung)
        return optuna.pruners.MedianPruner(n_startup_trials=eta, n_warmup_steps=r)
    if p == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=r, reduction_factor=eta)
    return optuna.pruners.HyperbandPruner(min_resource=r, max_resource=max(max_epochs, r), reduction_factor=eta)

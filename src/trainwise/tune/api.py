"""``trainwise.tune``: a search over a config (the same training as ``trainwise train``) or over a
Python objective of your own, with the results in the study folder.

Example (a Python objective; ``TrialRun`` in trainwise.tune.trial says what it gets)::

    import torch
    from torch import nn
    import trainwise

    x, y = torch.randn(512, 20), torch.randint(0, 2, (512,))

    def objective(trial):
        model = nn.Sequential(nn.Linear(20, trial.params["hidden"]), nn.ReLU(),
                              nn.Linear(trial.params["hidden"], 2))
        trainer = trainwise.Trainer(model, lr=trial.params["lr"], epochs=4, run_dir=trial.run_dir,
                                    callbacks=[trial.callback], progress=False, report=False)
        return trainer.fit((x[:400], y[:400]), (x[400:], y[400:]), resume=trial.resume)

    result = trainwise.tune(objective, space={"lr": {"log_uniform": [1e-3, 1e-1]},
                                              "hidden": {"choice": [16, 64]}},
                            n_trials=6, metric="val_accuracy", max_epochs=4)
    print(result.best_value, result.best_params, result.folder)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

from trainwise.errors import ConfigError
from trainwise.tune.results import TuneResult
from trainwise.tune.settings import TuneSettings, grid_size, parse_settings
from trainwise.tune.space import Param, check_against_config
from trainwise.tune.storage import resolve_place
from trainwise.tune.worker import Job, run_worker

log = logging.getLogger("trainwise.tune")


def tune(config_or_fn: Union[str, Path, Any, Callable[..., Any]], *, space: Optional[dict[str, Any]] = None,
         sampler: Optional[str] = None, pruner: Optional[str] = None, n_trials: Optional[int] = None,
         timeout: Optional[float] = None, metric: Optional[str] = None, direction: Optional[str] = None,
         study: Optional[str] = None, storage: Optional[str] = None, study_dir: Union[str, Path, None] = None,
         seed: Optional[int] = None, min_resource: Optional[int] = None, reduction_factor: Optional[int] = None,
         max_epochs: Optional[int] = None, heartbeat_interval: Optional[int] = None,
         grace_period: Optional[int] = None, backend: Optional[str] = None, scheduler: Optional[str] = None,
         resources: Optional[dict[str, float]] = None, perturbation_interval: Optional[int] = None,
         address: Optional[str] = None, plots: bool = True) -> TuneResult:
    """Search ``space`` for the best ``metric`` of ``config_or_fn``.

    Args:
        config_or_fn: a YAML config path, a ``RunConfig`` (its ``tune:`` section gives defaults for
            every argument here), or an objective ``fn(trial: TrialRun) -> FitResult | float``.
        space: ``{name: distribution}`` (see trainwise.tune.space); for a config it replaces tune.space.
        sampler: grid, random, tpe (default) or gp. pruner: none, median, asha (default), hyperband.
        n_trials: the study's total across all its workers. timeout: seconds after which this
            process starts no trial. At least one of them.
        metric, direction: what is optimized (default val_loss; direction from the name).
        study, storage, study_dir: the study's name (default: the config's name or the function's),
            an SQLAlchemy URL to share it across machines, and this machine's study folder
            (default runs/tune/<study>).
        seed: the sampler's seed. min_resource, reduction_factor: the pruner's. max_epochs: the
            longest trial in epochs (HyperBand's maximum resource; a config's train.epochs).
        heartbeat_interval, grace_period: seconds; a trial silent for grace_period is retried.
        backend: optuna (default) or ray: each trial a Ray Tune trial (trainwise.tune.ray_backend);
            there ``storage`` is Ray's storage path (a shared folder or s3:// URI on a cluster).
        scheduler: pbt, population-based training (Ray backend). perturbation_interval: its epochs
            between perturbations. resources: one trial's share of a node, ``{"cpu": 1, "gpu": 0.5}``.
        address: the Ray cluster to join (``host:port``, ``ray://host:10001`` or ``auto``); default a
            local Ray started for the search.
    """
    given = dict(sampler=sampler, pruner=pruner, trials=n_trials, timeout=timeout, metric=metric,
                 direction=direction, seed=seed, min_resource=min_resource, reduction_factor=reduction_factor,
                 heartbeat_interval=heartbeat_interval, grace_period=grace_period, space=space, backend=backend,
                 scheduler=scheduler, resources=resources, perturbation_interval=perturbation_interval)
    if callable(config_or_fn) and not isinstance(config_or_fn, (str, Path)):
        job = function_job(config_or_fn, given, study, storage, study_dir, max_epochs)
    else:
        job = config_job(config_or_fn, given, study=study, storage=storage, study_dir=study_dir)
    if job.settings.backend == "ray":
        from trainwise.tune.ray_backend import run_ray

        return run_ray(job, address=address, plots=plots)
    if address is not None:
        raise ConfigError("--address joins a Ray cluster, which needs the Ray backend: add tune.backend: ray "
                          "(--backend ray)")
    run_worker(job)
    return collect(job, plots=plots)


def function_job(fn: Callable[..., Any], given: dict[str, Any], study: Optional[str], storage: Optional[str],
                 study_dir: Union[str, Path, None], max_epochs: Optional[int]) -> Job:
    if given.get("space") is None:
        raise ConfigError("tune(fn, ...) needs space=, e.g. space={'lr': {'log_uniform': [1e-4, 1e-1]}}")
    settings = parse_settings({}, **given)
    if settings.pruner == "hyperband" and max_epochs is None:
        raise ConfigError("pruner='hyperband' needs max_epochs=, the epochs of the longest trial")
    _cap_grid(settings)
    if settings.scheduler == "pbt":
        raise ConfigError("scheduler='pbt' needs a config search (trainwise.tune('config.yaml', ...)): PBT changes "
                          "a running trial's optimizer.lr, weight decay or dropout, which trainwise knows how to do "
                          "for config keys, not for an objective's own parameters")
    name = study or getattr(fn, "__name__", "objective").strip("<>") or "objective"
    place = resolve_place(name, _optuna_storage(settings, storage), Path(study_dir) if study_dir else None)
    return Job(place=place, settings=settings, objective=fn, max_epochs=max_epochs or 1,
               seed=settings.seed if settings.seed is not None else 0, ray_storage=_ray_storage(settings, storage))


def config_job(config: Any, given: dict[str, Any], *, study: Optional[str], storage: Optional[str],
               study_dir: Union[str, Path, None], overrides: Optional[list[str]] = None) -> Job:
    """Load and check everything a config search needs, before any trial runs."""
    from trainwise.config.schema import RunConfig, config_from_dict, load_config
    from trainwise.config.check import check_names
    from trainwise.tune.trial import ConfigObjective

    if isinstance(config, RunConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = config_from_dict(config)
    else:
        cfg = load_config(config, overrides)
    check_names(cfg)
    if cfg.tune is None and given.get("space") is None:
        raise ConfigError("the config has no tune section; add tune: {space: {optimizer.lr: {log_uniform: "
                          "[1.0e-4, 1.0e-1]}}} (see examples/mnist1d.yaml), or pass space=")
    settings = parse_settings(cfg.tune, **given)
    base = cfg.to_dict()
    check_against_config(settings.space, base)
    check_values(settings.space, base)
    _cap_grid(settings)
    if settings.scheduler == "pbt":
        from trainwise.tune.pbt import check_mutable

        check_mutable(settings.space, base)
    place = resolve_place(study or cfg.name, _optuna_storage(settings, storage), Path(study_dir) if study_dir else None)
    objective = ConfigObjective(base, place.name, settings.report)
    return Job(place=place, settings=settings, objective=objective, max_epochs=cfg.train.epochs,
               seed=settings.seed if settings.seed is not None else cfg.seed, config_of=objective.config_for,
               ray_storage=_ray_storage(settings, storage))


def _optuna_storage(settings: TuneSettings, storage: Optional[str]) -> Optional[str]:
    return None if settings.backend == "ray" else storage


def _ray_storage(settings: TuneSettings, storage: Optional[str]) -> Optional[str]:
    """On the Ray backend ``--storage`` is Ray's storage path: a folder every node sees, or a URI."""
    return storage if settings.backend == "ray" else None


def check_values(space: dict[str, Param], base: dict[str, Any]) -> None:
    """Every bound and every choice, set alone in the config, must give a valid config whose names
    exist: a dropout range up to 1.5 or a choice 'sgdd' fails here, not in trial 7."""
    from trainwise.config.check import check_names
    from trainwise.tune.trial import trial_config

    for p in space.values():
        values = list(p.choices) if p.kind == "choice" else [
            int(p.low) if p.kind == "int" else p.low, int(p.high) if p.kind == "int" else p.high]
        for value in values:
            try:
                cfg = trial_config(base, {p.name: value}, name="check", report=False)
                check_names(cfg)
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{p.name}: the value {value!r} does not fit the config: {exc}") from None


def _cap_grid(settings: TuneSettings) -> None:
    if settings.sampler != "grid":
        return
    size = grid_size(settings.space)
    if settings.trials is None or settings.trials > size:
        log.info("grid: %d points, so %d trials", size, size)
        settings.trials = size


def collect(job: Job, *, plots: bool = True) -> TuneResult:
    """Read the study back and write the study folder's results: trials.csv, best.yaml, the PNG
    plots and report.html."""
    from trainwise.tune.plots import write_plots
    from trainwise.tune.results import ranked, trial_rows, write_best_config, write_trials_csv
    from trainwise.tune.storage import connect, load_existing
    from trainwise.tune.study_report import write_study_report

    s, folder = job.settings, job.place.folder
    storage = connect(job.place, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace,
                      max_retries=s.max_retries)
    study = load_existing(job.place, storage)
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    write_trials_csv(rows, folder / "trials.csv")
    write_best_config(rows, s.maximize, study.study_name, folder / "best.yaml")
    if plots:
        images = write_plots(study, folder)
        write_study_report(study.study_name, rows, images, folder / "report.html", maximize=s.maximize,
                           metric=s.metric)
    best = ranked(rows, s.maximize)
    top = best[0] if best else None
    best_yaml = job.place.folder / "best.yaml"
    return TuneResult(study=job.place.name, folder=job.place.folder, best_trial=top["number"] if top else None,
                      best_value=top["value"] if top else None, best_params=top["params"] if top else {},
                      best_config=best_yaml if best_yaml.is_file() and job.config_of else None, rows=rows)

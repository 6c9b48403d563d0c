"""The Ray backend of ``trainwise tune`` (``tune.backend: ray``, ``--backend ray``): the same
``tune:`` section run as Ray Tune trials, on a local Ray or a cluster (``--address``).

- Sampling: Optuna's samplers (grid, random, tpe, gp) through Ray's ``OptunaSearch``, with the
  same space (conditional parameters included).
- Early stopping: ``asha`` is Ray's ``ASHAScheduler``; ``hyperband`` its asynchronous HyperBand
  (``AsyncHyperBandScheduler`` with one bracket per SH bracket, as Optuna's HyperbandPruner; it
  stops trials and never parks them, so a trial's run folder ends cleanly as ``pruned``); ``median``
  its ``MedianStoppingRule``. Resource = epochs, as on Optuna.
- ``scheduler: pbt``: Ray's ``PopulationBasedTraining`` over the space (trainwise.tune.pbt).
- Each trial is a trainwise run folder ``<study folder>/trial-<n>`` reporting every epoch with its
  checkpoint (trainwise.tune.ray_trial); a trial whose worker dies is restarted by Ray from its
  last checkpoint, up to ``tune.max_retries`` times, and stays one trial.
- The study folder gets trials.csv, best.yaml, the plots and report.html as with Optuna, Ray's own
  experiment in ``ray/`` (or ``--storage``: a folder every node sees, or a URI such as s3://), and
  under PBT ``lineage.json`` and ``lineage.png``.

On a cluster the study folder must be on storage every node sees (as Ray's storage must be).
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Any, Optional

from trainwise.errors import ClusterError
from trainwise.tune.ray_trial import TrialSpec, make_trainable, numbered_folder, start_numbering
from trainwise.tune.space import suggest
from trainwise.tune.worker import Job

log = logging.getLogger("trainwise.tune")


def run_ray(job: Job, *, address: Optional[str], plots: bool = True) -> Any:
    """Run the search on Ray and write the study folder; returns a ``TuneResult``."""
    import ray

    from trainwise.tune.ray_results import StudyLog, write_results

    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a diverged trial's last report has no value
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: trainwise prints the table, not Ray
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # a save per epoch is the design
    s = job.settings
    owns = connect(address)
    try:
        check_resources(s.resources, address)
        study_log = StudyLog(s.metric, tuple(s.space))
        tuner = make_tuner(job, study_log)
        log.info("study %s on Ray (%s): %s trials, %s", job.place.name, address or "local",
                 s.trials if s.trials is not None else "timed", s.scheduler or f"{s.sampler}/{s.pruner}")
        grid = tuner.fit()
    finally:
        if owns:
            ray.shutdown()
    return write_results(job, study_log, grid, plots=plots)


def connect(address: Optional[str]) -> bool:
    """Join the cluster at ``address``, or start a local Ray; returns whether this call started the
    session (a session the caller already started, as a test's or a notebook's, is used as it is)."""
    import ray

    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        start_local_ray()
        return True
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"could not join the Ray cluster at {address!r}: {first}; start one with `ray start "
                           "--head`, or leave --address out for a local Ray") from None
    return True


# Ray starts one idle worker process per CPU for the first driver. Tune never uses them (its trial
# actors carry their own runtime env, so Ray starts a new process for each), so on a local Ray they
# only compete with the trial's worker for the CPUs while it starts (docs/notes/issue-23.md, round 3).
_NO_PRESTART = {"RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0"}


def start_local_ray(**init: Any) -> None:
    """Start a local Ray as the backend does (no dashboard, no worker logs on the console, no idle
    workers started in advance); ``init``: more ``ray.init`` arguments (``num_cpus=2``)."""
    import ray

    added = {k: v for k, v in _NO_PRESTART.items() if k not in os.environ}  # a user's own setting wins
    os.environ.update(added)  # read by the raylet that ray.init starts, which inherits this environment
    try:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **init)
    finally:
        for key in added:
            os.environ.pop(key, None)


def _reachable(address: str) -> None:
    """A quick TCP check, so an unreachable address fails in seconds instead of Ray's minute."""
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address must be host:port (the head node's GCS, e.g. 10.0.0.5:6379), "
                           f"ray://host:10001 or auto, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {reason}; start one there with `ray start "
                           "--head`, check the host and port, or leave --address out for a local Ray") from None


def check_resources(resources: dict[str, float], address: Optional[str]) -> None:
    """One trial's resources must fit on one node of the cluster, else Ray would wait forever."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cpu, gpu = float(resources["cpu"]), float(resources["gpu"])
    if any(node.get("CPU", 0) >= cpu and node.get("GPU", 0) >= gpu for node in nodes):
        return
    largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
    where = f"the Ray cluster at {address}" if address else "the local Ray"
    raise ClusterError(f"tune.resources asks {cpu:g} CPU and {gpu:g} GPU per trial, but no node of {where} has that "
                       f"much (the largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs); lower "
                       "tune.resources, or join a cluster with such a node (--address)")


def make_tuner(job: Job, study_log: Any) -> Any:
    """Ray's ``Tuner`` for the job: the trainable with its resources, the searcher and scheduler,
    failure handling and the experiment folder (restored when an earlier run of it was cut off)."""
    from ray import tune

    s = job.settings
    spec = TrialSpec(objective=job.objective, folder=job.place.folder.absolute(), metric=s.metric,
                     maximize=s.maximize, on_stop="interrupted" if s.scheduler == "pbt" else "pruned", seed=job.seed,
                     keys=tuple(s.space))
    trainable = tune.with_resources(make_trainable(spec), {"cpu": s.resources["cpu"], "gpu": s.resources["gpu"]})
    storage, experiment = experiment_path(job)
    if tune.Tuner.can_restore(experiment):
        log.info("continuing the Ray experiment in %s", experiment)
        start_numbering(Path(experiment))
        return tune.Tuner.restore(experiment, trainable, resume_errored=True, param_space=_param_space(job))
    job.place.folder.mkdir(parents=True, exist_ok=True)
    start_numbering(Path(experiment))
    search, scheduler = searcher(job), make_scheduler(job)
    tune_config = tune.TuneConfig(metric=s.metric, mode="max" if s.maximize else "min", search_alg=search,
                                  scheduler=scheduler, num_samples=s.trials if s.trials is not None else -1,
                                  time_budget_s=s.timeout, reuse_actors=True,  # one worker runs trial after trial
                                  trial_dirname_creator=numbered_folder)
    run_config = tune.RunConfig(
        name=job.place.name, storage_path=storage, verbose=0, callbacks=[study_log],
        failure_config=tune.FailureConfig(max_failures=s.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None if s.scheduler == "pbt" else 2))
    return tune.Tuner(trainable, param_space=_param_space(job), tune_config=tune_config, run_config=run_config)


def experiment_path(job: Job) -> tuple[str, str]:
    """Ray's storage path and the experiment's folder (or URI) in it."""
    storage = job.ray_storage or str((job.place.folder / "ray").absolute())
    return storage, f"{storage.rstrip('/')}/{job.place.name}"


def _param_space(job: Job) -> Optional[dict[str, Any]]:
    """PBT draws its first population from Ray's distributions; the others sample through Optuna."""
    if job.settings.scheduler != "pbt":
        return None
    from ray import tune

    from trainwise.tune.pbt import mutations

    return {name: tune.choice(d) if isinstance(d, list) else d for name, d in mutations(job.settings.space).items()}


class _DefineByRun:
    """Ray's OptunaSearch calls this with an Optuna trial: the space is sampled exactly as the
    Optuna backend samples it, conditions included."""

    def __init__(self, space: dict[str, Any]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        suggest(trial, self.space)


def searcher(job: Job) -> Any:
    s = job.settings
    if s.scheduler == "pbt":
        import random

        from ray.tune.search.basic_variant import BasicVariantGenerator

        random.seed(job.seed)  # PBT's perturbations draw from Python's random module
        return BasicVariantGenerator(random_state=job.seed)
    from ray.tune.search.optuna import OptunaSearch

    from trainwise.tune.settings import make_sampler

    return OptunaSearch(space=_DefineByRun(s.space), metric=s.metric, mode="max" if s.maximize else "min",
                        sampler=make_sampler(s, job.seed))


def make_scheduler(job: Job) -> Any:
    from ray.tune import schedulers

    s, r, eta = job.settings, job.settings.min_resource, job.settings.reduction_factor
    # A function objective's length is unknown unless given: ASHA must not stop its trials at an
    # assumed last epoch (HyperBand needs max_epochs given, as on Optuna).
    epochs = job.max_epochs if job.config_of is not None or s.pruner == "hyperband" else 10 ** 6
    if s.scheduler == "pbt":
        from trainwise.tune.pbt import KeepInRange, mutations

        return schedulers.PopulationBasedTraining(
            time_attr="epoch", perturbation_interval=s.perturbation_interval,
            hyperparam_mutations=mutations(s.space), custom_explore_fn=KeepInRange(s.space),
            quantile_fraction=0.25, resample_probability=0.25, require_attrs=False, synch=True)
    if s.pruner == "asha":
        return schedulers.ASHAScheduler(time_attr="epoch", max_t=max(epochs, r), grace_period=r,
                                        reduction_factor=eta)
    if s.pruner == "hyperband":
        brackets = int(math.floor(math.log(max(epochs, r) / r, eta) + 1e-9)) + 1
        return schedulers.AsyncHyperBandScheduler(time_attr="epoch", max_t=max(epochs, r), grace_period=r,
                                                  reduction_factor=eta, brackets=brackets)
    if s.pruner == "median":
        return schedulers.MedianStoppingRule(time_attr="epoch", grace_period=r, min_samples_required=eta)
    return schedulers.FIFOScheduler()


"""Loggers people already use, as callbacks: TensorBoard event files and an MLflow run.

``Trainer(loggers=["tensorboard", "mlflow"])`` or ``train.loggers: [tensorboard, mlflow]`` in a
config. Each package is imported only when its logger is asked for; a missing one is one clear
error at construction, before any training, naming the pip extra. Per epoch each logger records
the epoch's figures (train and val loss, metrics, lr) at the optimizer step; the lr is also
recorded every ``log_every_n_steps`` steps; at the end the run's config as hyperparameters with
its final figures.

- TensorBoard: event files in ``<run>/tensorboard/`` (``tensorboard --logdir runs``), the
  hparams in the same folder as the scalars (not a timestamped subfolder per call).
- MLflow: a run in a SQL store, ``sqlite:///<runs root>/mlflow.db`` unless ``tracking_uri`` or
  ``$MLFLOW_TRACKING_URI`` says otherwise; a file store (a plain folder, ``file:``) is refused
  with the fix (recent MLflow refuses it too). The MLflow run ends FINISHED, FAILED or KILLED as
  the trainwise run ended (a killed process leaves it RUNNING there; ``trainwise runs`` knows).
  Its calls to a tracking server are bounded (``callbacks.mlflow_calls``: 3 attempts, 10 s each,
  not MLflow's minutes of retries); a server that cannot be reached, at the start or later,
  switches the logger off at once with one warning, and training goes on.

Example:
    >>> Trainer(model, loggers=["tensorboard", MLflowLogger(experiment="digits")])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from trainwise.callbacks.base import Callback, Logger, Trainer
from trainwise.callbacks.logger_parts import final_figures as _final_figures
from trainwise.callbacks.logger_parts import finite_figures as _finite
from trainwise.callbacks.logger_parts import flat_config as _flat
from trainwise.callbacks.logger_parts import require_package as _require
from trainwise.callbacks.mlflow_calls import call_server, unreachable_reason
from trainwise.checks import check_choice
from trainwise.errors import ConfigError

LOGGER_NAMES = ("tensorboard", "mlflow", "wandb")
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
# How each trainwise ending is recorded in MLflow.
MLFLOW_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
                 "interrupted": "KILLED", "pruned": "KILLED"}


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``log_dir`` (default ``<run folder>/tensorboard``)."""


    def __init__(self, log_dir: Union[str, Path, None] = None) -> None:
        _require("tensorboard", "tensorboard")
        self.log_dir, self.writer = log_dir, None  # type: Optional[Union[str, Path]], Any

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir or Path(trainer.run_dir) / "tensorboard"))
        self.every = max(int(getattr(trainer, "log_every_n_steps", 50)), 1)

    def on_step_end(self, trainer: Trainer) -> None:
        if self.writer is not None and trainer.state.step % self.every == 0:
            self.writer.add_scalar("lr", trainer.state.lr, trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.writer is None:
            return
        step = trainer.state.step
        for key, value in _finite({**logs, "lr": trainer.state.lr, "epoch": trainer.state.epoch}).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                  for k, v in _flat(getattr(trainer, "config", None)).items()}
        figures = {f"final/{k}": v for k, v in _final_figures(trainer).items()}
        if params and figures:
            experiment, start, end = hparams(params, figures)
            for summary in (experiment, start, end):
                self.writer.file_writer.add_summary(summary)
            for key, value in figures.items():
                self.writer.add_scalar(key, value, trainer.state.step)
        self._close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def check_tracking_uri(uri: str) -> str:
    """A database or server URI; a file store (a folder or ``file:``) is refused with the fix."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in _SQL_SCHEMES:
        raise ConfigError(f"MLflow tracking URI {uri!r} is a file store, which recent MLflow refuses; use a "
                          "database such as sqlite:///runs/mlflow.db (or a server: http://host:5000)")
    return uri


class MLflowLogger(Logger):
    """One MLflow run per trainwise run, in ``experiment`` (default ``trainwise``)."""


    def __init__(self, tracking_uri: Optional[str] = None, experiment: Optional[str] = None) -> None:
        _require("mlflow", "mlflow")
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.tracking_uri = None if uri is None else check_tracking_uri(uri)
        self.experiment = experiment or "trainwise"
        self.client: Any = None
        self.run_id: Optional[str] = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.tracking_uri is None:
            from trainwise.runfolder.index import writer_root

            self.tracking_uri = f"sqlite:///{writer_root(Path(trainer.run_dir)).resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment_id = self._call(self._experiment_id)
        record = getattr(getattr(trainer, "run_record", None), "data", None) or {}
        tags = {"trainwise.run_dir": str(Path(trainer.run_dir).resolve())}
        if record.get("id"):
            tags["trainwise.run_id"] = record["id"]
        if (record.get("git") or {}).get("commit"):
            tags["mlflow.source.git.commit"] = record["git"]["commit"]
            tags["trainwise.git_dirty"] = str(record["git"]["dirty"])
        run = self._call(self.client.create_run, experiment_id, run_name=getattr(trainer, "name", None), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in _flat(getattr(trainer, "config", None)).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self._call(self.client.log_batch, self.run_id, params=params[start:start + 100])

    def _call(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        """A call to the tracking store, bounded in time; an unreachable server is ``LoggerUnavailable``."""
        return call_server(str(self.tracking_uri), action, *args, **kwargs)

    def _experiment_id(self) -> str:
        """The experiment's id, created when missing. Another process (a parallel trial, a second
        job) may create it between the look-up and the creation: then its experiment is used."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(self.experiment))
        except MlflowException as error:
            if unreachable_reason(error) is not None:  # the server is gone: no second look
                raise
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:  # not the race: a real error
                raise
            return str(found.experiment_id)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        self._metrics({**logs, "lr": trainer.state.lr}, trainer.state.step)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.run_id is None:
            return
        self._metrics({f"final_{k}": v for k, v in _final_figures(trainer).items()}, trainer.state.step)
        run_id, self.run_id = self.run_id, None
        self._call(self.client.set_terminated, run_id, status=MLFLOW_STATUS.get(trainer.state.status, "FINISHED"))

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self._call(self.client.set_terminated, run_id, status="KILLED" if isinstance(exc, KeyboardInterrupt)
                       else "FAILED")

    def _metrics(self, values: dict[str, Any], step: int) -> None:
        if self.run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _finite(values).items()]
        if metrics:
            self._call(self.client.log_batch, self.run_id, metrics=metrics)


def build_loggers(loggers: Sequence[Union[str, Callback]]) -> list[Callback]:
    """Logger names (``tensorboard``, ``mlflow``, ``wandb``) or logger callbacks, as callbacks."""
    built: list[Callback] = []
    for logger in loggers:
        if isinstance(logger, Callback):
            built.append(logger)
            continue
        name = check_choice("logger", logger, LOGGER_NAMES)
        if name == "wandb":
            from trainwise.callbacks.wandb_logger import WandbLogger

            built.append(WandbLogger())
        else:
            built.append(TensorBoardLogger() if name == "tensorboard" else MLflowLogger())
    return built

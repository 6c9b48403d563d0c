"""``doctor.check``: the pre-flight checklist on a user's model and data, in one call."""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import DataLoader

from trainwise.data.categorical import encode_tables, encoded_names
from trainwise.doctor import data_checks, model_checks
from trainwise.doctor.baselines import baseline_checks
from trainwise.doctor.report import Check, DoctorReport
from trainwise.doctor.sample import Sample, read_split
from trainwise.doctor.thresholds import Thresholds, thresholds_of
from trainwise.doctor.training import Setup, guarded, lr_check, one_step_check, overfit_check
from trainwise.errors import ConfigError, DataError
from trainwise.models.layers import has_batchnorm

PROBE_SAMPLES = 64  # samples of the forward/backward pass the model checks read


def check(model: nn.Module, train: Any, val: Any = None, *, test: Any = None, loss: Any = "cross_entropy",
          optimizer: Union[str, torch.optim.Optimizer] = "adamw", lr: Union[float, str, None] = None,
          batch_size: int = 64, thresholds: Union[Thresholds, Mapping[str, Any], None] = None,
          only: Optional[Sequence[str]] = None, baselines: bool = True, out_dir: Union[str, Path, None] = None,
          seed: int = 0, device: str = "cpu", feature_names: Optional[Sequence[str]] = None,
          **trainer_kwargs: Any) -> DoctorReport:
    """Run the pre-flight checks on ``model`` and the data, and return a ``DoctorReport``.

    The user's model and optimizer are never touched: the checks that train (``train.*``,
    ``baseline.*``) do so through ``Trainer.fit`` on deep copies with fresh optimizer state.

    Args:
        model, train, val, test: what you would hand to ``Trainer(model).fit(train, val, test=test)``:
            tuples, dicts, Datasets or DataLoaders.
        loss, optimizer, lr, batch_size: as for ``Trainer``; a built optimizer is rebuilt (its class,
            groups and hyperparameters) on the copy's parameters.
        thresholds: changes to the rules' limits, e.g. ``{"imbalance_ratio": 5}`` (see ``Thresholds``).
        only: run only the checks whose id starts with one of these (``["data.", "train.overfit_batch"]``).
        baselines: train the baselines (a few seconds); False leaves ``baseline.*`` out.
        out_dir: where the samples-per-class PNG goes for image data (none when None).
        feature_names: a name per column of tabular inputs, for the messages (default: a pandas
            DataFrame's columns).
        **trainer_kwargs: other ``Trainer`` settings the fits use (``class_weights``, ``grad_clip``,
            ``weight_decay``, ``sampler``, ``focal_gamma``, ``init`` ...).

    Example:
        >>> report = doctor.check(model, (x, y), (x_val, y_val), loss="cross_entropy", lr=1e-3)
        >>> report.verdict, [c.id for c in report.failed()]
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    th = thresholds_of(thresholds)
    wanted = _selector(only)
    train, val, test, encoding = encode_tables(train, val, test, None)  # a DataFrame's text columns, as fit does
    if encoding is not None and feature_names is None:
        feature_names = encoded_names(encoding.columns, encoding.categorical)
    from trainwise.engine.batch_rule import decide_call_rule

    split = lambda batch: decide_call_rule(batch, model, model_loss=False).split(batch)  # noqa: E731
    train_s = read_split(train, split)
    if train_s is None or len(train_s) == 0:
        raise DataError("the training data is empty; give at least one sample")
    val_s, test_s = read_split(val, split), read_split(test, split)
    setup = Setup(model, loss, optimizer, lr, batch_size, seed, {"device": device, **trainer_kwargs})
    report = DoctorReport()
    with _quiet():
        probe = _probe(setup, train_s, th)
        task, classes = probe["task"], probe["num_classes"]
        if any(wanted(p) for p in ("data.",)):
            loader = train if isinstance(train, DataLoader) else None
            report.add(data_checks.data_checks(
                train_s, val_s, test_s, task=task, num_classes=classes,
                batch_size=(loader.batch_size or batch_size) if loader else batch_size,
                has_batchnorm=has_batchnorm(model), drop_last=bool(loader and loader.drop_last), th=th,
                own_loader=loader is not None, feature_names=feature_names or _columns_of(train)))
        report.add(model_checks.static_checks(model, batch_size, th))
        report.add(probe["checks"])
        # the range test's reading means nothing on a model that fails its own checks (asked for or not)
        broken = [c.id for c in report.checks if c.id.startswith("model.") and c.status == "FAIL"]
        report.checks = [c for c in report.checks if wanted(c.id)]
        failed = {c.id for c in report.checks if c.status == "FAIL"}
        data_failed = bool(failed & {"data.nonfinite", "data.label_range"})
        # the training checks cannot run on bad data, nor a BatchNorm model on batches of one sample
        if not data_failed and "model.batchnorm_batch_size" not in failed:
            report.add(_training(setup, train, train_s, probe, th, wanted, broken))
        if baselines and wanted("baseline.") and train_s.x is not None and not data_failed:
            report.add(baseline_checks(train_s.x, train_s.y, val_s.x if val_s else None, val_s.y if val_s else None,
                                       task=task, num_classes=classes, th=th, seed=seed))
    if out_dir is not None and train_s.x is not None and train_s.x.dim() == 4 and task == "classification":
        from trainwise.doctor.images import write_samples_grid

        path = write_samples_grid(train_s.x, train_s.y, Path(out_dir) / "doctor_samples.png")
        if path is not None:
            report.artifacts["samples_per_class"] = path.name
    return report


def _training(setup: Setup, train: Any, train_s: Sample, probe: dict, th: Thresholds, wanted: Any,
              broken: Sequence[str] = ()) -> list[Check]:
    checks: list[Check] = []
    lr = None
    if wanted("train."):
        lr_result = guarded("train.lr", lambda: lr_check(setup, train, th, broken)[0])
        checks.append(lr_result)
        lr = _lr_to_use(setup, lr_result)
        if lr_result.status == "FAIL" and isinstance(lr_result.value, (int, float)) and lr_result.value <= 0:
            return [c for c in checks if wanted(c.id)]  # nothing trains at a non-positive lr
    g = torch.Generator().manual_seed(setup.seed)
    order = torch.randperm(len(train_s), generator=g)
    batch = train_s.subset(order[:min(setup.batch_size, len(train_s))])
    few = train_s.subset(order[:min(th.overfit_samples, len(train_s))])
    if wanted("train.one_step"):
        checks.append(guarded("train.one_step", lambda: one_step_check(setup, batch, lr, th)))
    if wanted("train.overfit_batch"):
        checks.append(guarded("train.overfit_batch", lambda: overfit_check(
            setup, few, lr, task=probe["task"], num_classes=probe["num_classes"],
            reference=_reference_on(setup, few, probe["task"]), th=th)))
    return [c for c in checks if wanted(c.id)]


def _lr_to_use(setup: Setup, lr_result: Check) -> Optional[float]:
    """The lr the training checks use: the configured one, or lr='auto''s suggestion."""
    if setup.lr not in (None, "auto"):
        return float(setup.lr)
    if isinstance(setup.optimizer, torch.optim.Optimizer) and setup.lr is None:
        return None  # the optimizer's own group lrs
    value = lr_result.value
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    from trainwise.engine.plan import fallback_lr

    return fallback_lr(setup.optimizer)


def _probe(setup: Setup, train_s: Sample, th: Thresholds) -> dict[str, Any]:
    """One forward and backward pass of a copy of the model on a training batch: the task, the
    number of classes, and the checks that read that pass."""
    from trainwise.engine.plan import infer_task
    from trainwise.data.loader import main_output

    work, optimizer, _ = setup.copy_with_optimizer()
    with tempfile.TemporaryDirectory(prefix="trainwise-doctor-") as tmp:
        t = setup.trainer(work, optimizer if optimizer is not None else "sgd", None if optimizer is not None
                          else 0.01, Path(tmp))
    g = torch.Generator().manual_seed(setup.seed)
    index = torch.randperm(len(train_s), generator=g)[:PROBE_SAMPLES]
    batch = _to(train_s.subset(index), t.device)
    x, y, w = t.split_batch(batch)
    t.model.train()
    outputs = main_output(t.model(x))
    task = infer_task(t.task, y, outputs)
    if task == "classification" and y.is_floating_point():
        y = y.round().long()
    classes = int(outputs.shape[1]) if task == "classification" and outputs.dim() == 2 else None
    if task == "classification" and classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        return {"task": task, "num_classes": classes, "checks": []}  # data.label_range reports it
    if task in ("regression", "binary") and outputs.shape != y.shape and outputs.numel() == y.numel():
        y = y.float().reshape(outputs.shape)
    loss = t.loss_of(outputs, y, w) if t.loss_spec is not None else t.compute_loss(t.model, batch)
    reference = model_checks.reference_loss(t.loss_of, outputs, y, w, task)
    checks = model_checks.batch_checks(outputs, loss, reference=reference, task=task, num_classes=classes,
                                       targets=y, loss_kind=model_checks.loss_kind_of(setup.loss), model=t.model,
                                       th=th)
    return {"task": task, "num_classes": classes, "checks": checks}


def _reference_on(setup: Setup, subset: Any, task: str) -> float:
    """The constant predictor's loss on the overfit samples (the goal is a share of it)."""
    from trainwise.data.loader import main_output

    work = copy.deepcopy(setup.model)
    with tempfile.TemporaryDirectory(prefix="trainwise-doctor-") as tmp:
        t = setup.trainer(work, "sgd", 0.01, Path(tmp))
    x, y, w = t.split_batch(_to(subset, t.device))
    with torch.no_grad():
        outputs = main_output(t.model(x))
    if task == "classification":
        y = y.long()
    elif outputs.shape != y.shape and outputs.numel() == y.numel():
        y = y.float().reshape(outputs.shape)
    return model_checks.reference_loss(t.loss_of, outputs, y, w, task)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return tuple(v.to(device) for v in batch)


def _selector(only: Optional[Sequence[str]]) -> Any:
    if not only:
        return lambda check_id: True
    prefixes = tuple(only)
    return lambda check_id: any(check_id.startswith(p) or p.startswith(check_id) for p in prefixes)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The doctor's short fits keep their events out of the terminal."""
    logger = logging.getLogger("trainwise")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _columns_of(train: Any) -> Optional[list[str]]:
    """A pandas DataFrame's column names when the inputs are one (``(frame, y)``), else None."""
    inputs = train[0] if isinstance(train, (tuple, list)) and train else None
    columns = getattr(inputs, "columns", None)
    return [str(name) for name in columns] if columns is not None and hasattr(inputs, "iloc") else None

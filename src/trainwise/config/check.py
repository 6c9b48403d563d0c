"""Every name in a config checked before anything is built: the data set, the model and its
norm, pool and activation, the initialization, the optimizer, the schedule and its parameters,
augmentations, the LR finder's rule. Precision, loss and device are checked by the config
itself. Nothing here loads data or builds a model, so ``train --dry-run`` stays fast.

Example:
    >>> check_names(load_config("examples/digits.yaml", ["schedule.name=cosin"]))
    Traceback (most recent call last):
    trainwise.errors.ConfigError: unknown schedule 'cosin'; did you mean 'cosine'? (valid: ...)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from trainwise.checks import check_choice
from trainwise.config.schema import RunConfig
from trainwise.errors import ConfigError, DataNotFoundError

# Samples in each built-in data set (before the test split), for the dry run's step estimate.
BUILTIN_SIZES = {"digits": 1797, "mnist": 60000, "fashion-mnist": 60000, "mnist1d": 4000, "synthetic": 2000}
OFFICIAL_TEST_SPLIT = ("mnist", "fashion-mnist", "mnist1d")
NOMINAL_STEPS_PER_EPOCH = 1000  # when the size is unknown without loading (npz)


def check_names(cfg: RunConfig) -> None:
    """Raise a ConfigError (with a did-you-mean) for the first unknown name in ``cfg``.

    Raises:
        ConfigError: an unknown name or a schedule parameter that does not fit.
        DataNotFoundError: ``data.path`` or ``data.root`` names something that is not there.
    """
    _check_data(cfg)
    _check_model(cfg)
    from trainwise.optim import OPTIMIZER_NAMES

    check_choice("optimizer", cfg.optimizer.name, OPTIMIZER_NAMES)
    _check_schedule(cfg)
    from trainwise.lr.suggest import SUGGESTION_RULES

    check_choice("train.lr_find.rule", cfg.train.lr_find.rule, SUGGESTION_RULES)
    from trainwise.callbacks.monitor import resolve_mode

    es = cfg.train.early_stopping  # a monitor whose name does not say its direction needs a mode
    resolve_mode(es.monitor, es.mode, setting="train.early_stopping.mode")


def estimated_steps(cfg: RunConfig) -> tuple[int, int, bool]:
    """Optimizer steps of the whole run and per epoch, and whether they are exact (known data size)."""
    samples = _train_samples(cfg)
    if samples is None or cfg.data.batch_size == "auto":  # the finder picks the size at the start of the run
        steps_per_epoch, exact = NOMINAL_STEPS_PER_EPOCH, False
    else:
        batches = math.ceil(samples / cfg.data.batch_size)
        steps_per_epoch, exact = max(1, math.ceil(batches / cfg.train.accumulate)), True
    total = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    return total, steps_per_epoch, exact


def _check_data(cfg: RunConfig) -> None:
    from trainwise.data import DATASETS
    from trainwise.data.augment import AUGMENTATIONS

    d = cfg.data
    check_choice("dataset", d.dataset, DATASETS)
    if d.dataset in ("csv", "npz"):
        if d.path is None:
            raise ConfigError(f"dataset {d.dataset!r} needs data.path, the file to read, got None")
        if Path(d.path).is_dir():  # the same line as data/tabular.py's, which loading would give
            raise ConfigError(f"{d.dataset} file {d.path} is a folder, not a file; give the .{d.dataset} file inside "
                              "it (or data.dataset: imagefolder for a folder of images)")
        if not Path(d.path).is_file():
            raise DataNotFoundError(f"{d.dataset} file {d.path} does not exist; check data.path")
    if d.dataset == "text" and d.path is None:
        raise ConfigError("dataset 'text' needs data.path: a .txt file, a folder of .txt files, or builtin:pydoc")
    if d.dataset == "text" and not d.path.startswith("builtin:") and not Path(d.path).exists():
        raise DataNotFoundError(f"text file {d.path} does not exist; check data.path")
    if d.dataset == "imagefolder" and (d.root is None or not Path(d.root).is_dir()):
        raise DataNotFoundError(f"data.root {d.root} is not a folder; dataset 'imagefolder' needs a folder holding "
                                "one folder of images per class")
    if d.root is not None and d.dataset in ("mnist", "fashion-mnist") and not Path(d.root).is_dir():
        raise DataNotFoundError(f"data.root {d.root} is not a folder; point it at the folder of the IDX files")
    for name in _augment_names(d.augment):
        check_choice("augmentation", name, AUGMENTATIONS)


def _augment_names(spec: Any) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [name.strip() for name in spec.split(",") if name.strip()]
    return [str(name) for name in spec]


def _check_model(cfg: RunConfig) -> None:
    from trainwise.models.init import INIT_SCHEMES
    from trainwise.models import ACTIVATIONS, CONV_NORMS, MODEL_NAMES, POOLS

    m = cfg.model
    if ":" in m.name:
        module, _, factory = m.name.partition(":")
        if not module or not factory.isidentifier() or module == "__main__":
            raise ConfigError(f"model {m.name!r} must be a built-in model ({', '.join(MODEL_NAMES)}) or "
                              "'package.module:factory' naming an importable module")
    else:
        check_choice("model", m.name, MODEL_NAMES)
        check_choice("model.norm", m.norm, CONV_NORMS)
        check_choice("model.pool", m.pool, POOLS)
        check_choice("model.activation", m.activation, ACTIVATIONS)
    check_choice("model.init", m.init, INIT_SCHEMES)


def _check_schedule(cfg: RunConfig) -> None:
    """Build the schedule over the estimated run length: checks its name and every parameter."""
    from trainwise.schedules import build_schedule_or_hold

    s = cfg.schedule
    total, steps_per_epoch, exact = estimated_steps(cfg)
    warmup = s.warmup if exact or s.warmup < 1 else min(s.warmup, total)  # unknown length: no false alarm
    lr = 1e-3 if cfg.optimizer.lr == "auto" else float(cfg.optimizer.lr)
    # a run too short for its schedule trains at a constant lr (the fit says so); a wrong parameter is an error
    build_schedule_or_hold(s.name, lr=lr, total_steps=max(total, 1), steps_per_epoch=steps_per_epoch, warmup=warmup,
                           warmup_mode=s.warmup_mode, warmup_start_factor=s.warmup_start_factor, **s.params())


def _train_samples(cfg: RunConfig) -> Optional[int]:
    """Training samples after the splits, from known sizes or a CSV's line count; None if unknown."""
    d = cfg.data
    if d.dataset in BUILTIN_SIZES:
        total = BUILTIN_SIZES[d.dataset]
    elif d.dataset == "csv" and d.path and Path(d.path).is_file():
        with open(d.path, encoding="utf-8-sig") as handle:
            total = sum(1 for line in handle if line.strip()) - 1
    else:
        return None
    pool = total if d.dataset in OFFICIAL_TEST_SPLIT else total - round(total * d.test_fraction)
    return max(1, pool - round(pool * d.val_fraction))

"""What ``Trainer.fit`` does before the loop: check the data, settle the task, the lr and the
schedule, and describe a Python run in its folder the way a CLI run is described."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.data import check_arrays
from trainwise.data.checks import check_labels
from trainwise.engine.batch_rule import cannot_take
from trainwise.engine.loss_rule import decide_task
from trainwise.errors import ConfigError, DataError, TrainwiseError
from trainwise.data.loader import as_tensors, as_tensor_dict, main_output, to_device
from trainwise.data.arrays import describe_types, samples_dataset
from trainwise.schedules import Schedule, build_schedule_or_hold

log = logging.getLogger(__name__)

# lr used when lr="auto" and the range test gives no suggestion (a warning says so).
FALLBACK_LR = {"sgd": 1e-2}
DEFAULT_FALLBACK_LR = 1e-3


def probe(model: nn.Module, inputs: Any, device: torch.device) -> torch.Tensor:
    """The model's outputs for a couple of samples, or one clear error when it cannot take them."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outputs = model(to_device(inputs, device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shape = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise cannot_take(exc, shape) from exc
    finally:
        model.train(was_training)
    return main_output(outputs)


def infer_task(task: Optional[str], targets: torch.Tensor, outputs: torch.Tensor) -> str:
    """The task by the shapes (``loss_rule.decide_task``); the doctor's quick probe."""
    return decide_task(task, outputs, targets, None)[0] or "regression"


def split_data(source: Any, split: str) -> tuple[Any, Optional[torch.Tensor]]:
    """In-memory data as tensors (a tuple, or a dict of equally long tensors), anything else as
    given; and a sample input (two rows) for init, or None."""
    if source is None:
        return None, None
    named = as_tensor_dict(source)
    if named is not None:
        return named, None
    tensors = as_tensors(source)
    if tensors is None:
        samples = samples_dataset(source)  # a list of (input, target) samples: a map-style Dataset
        if samples is not None:
            return samples, None
        if isinstance(source, (tuple, list)):
            raise DataError(f"{split} data must be (inputs, targets) or (inputs, targets, weights) of tensors or "
                            f"arrays, or a list of (input, target) samples, got a {type(source).__name__} of "
                            f"{describe_types(source)}")
        return source, None
    if len(tensors[0]) == 0:
        raise DataError(f"the {split} data is empty; give at least one sample")
    if len(tensors[0]) != len(tensors[1]):
        raise DataError(f"{split}: x has {len(tensors[0])} samples but y has {len(tensors[1])}; they must have one "
                        "target per input row")
    return tensors, tensors[0][:2]


def check_targets(data: Any, split: str, *, task: Optional[str], positions: bool, soft: bool,
                  num_classes: Optional[int], ignore_index: int) -> Any:
    """Check in-memory targets against the decided task (finite values, labels in range, 0/1 for
    binary) before training; integer-valued float labels become class indices. Other data as given."""
    if not isinstance(data, tuple) or task is None:
        return data
    x, y, *rest = data
    if task == "classification" and not soft:
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise DataError(f"{split} targets are fractional but the loss is a classification loss; "
                                "use integer class labels, or a regression loss (mse, mae, huber)")
            y = y.long()
        elif y.dtype not in (torch.long, torch.uint8):  # int32/int16 labels (numpy, pandas): torch's losses take int64
            y = y.long()
        counted = y != ignore_index
        if positions or not bool(counted.all()):  # per-position labels, or ignored ones: the counted labels
            check_labels(y[counted].flatten(), num_classes=num_classes, where=split)
        else:
            check_arrays(x, y, task="classification", num_classes=num_classes, where=split)
    elif task == "binary" and not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"{split} targets must be 0 or 1 for BCEWithLogitsLoss, got values such as "
                        f"{sorted(set(y.flatten()[:1000].tolist()))[:5]}")
    elif task == "regression":
        check_arrays(x, y, task="regression", num_classes=None, where=split)
    if rest and isinstance(rest[0], torch.Tensor):
        _check_weights(rest[0], len(x), split)
    return (x, y, *rest)


def _check_weights(weights: torch.Tensor, n: int, split: str) -> None:
    """Sample weights: one finite, non-negative number per sample (a NaN weight makes the loss NaN, which
    would otherwise read as an unstable lr and be rolled back)."""
    if weights.numel() != n:
        raise DataError(f"{split}: {n} samples but {weights.numel()} sample weights; give one weight per sample")
    values = weights.reshape(-1).double()
    bad = ~torch.isfinite(values) | (values < 0)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise DataError(f"{split}: sample weight {values[row].item()} in row {row}; weights must be finite and >= 0 "
                        "(fill in or drop that row)")


def prepare_split(source: Any, split: str, *, model: nn.Module, device: torch.device,
                  task: Optional[str]) -> tuple[Any, Optional[str], Optional[torch.Tensor]]:
    """The doctor's entry: ``split_data``, the task from a probe of two samples, ``check_targets``."""
    data, sample = split_data(source, split)
    if sample is None:
        return data, task, None
    outputs = probe(model, sample, device)
    found, axis, soft, _ = decide_task(task, outputs, data[1][:2], None)
    classes = outputs.shape[axis] if found == "classification" else None
    data = check_targets(data, split, task=found, positions=data[1].dim() > 1 and found == "classification",
                         soft=soft, num_classes=classes, ignore_index=-100)
    return data, found, sample


def build_run_schedule(spec: Any, *, lr: float, total_steps: int, steps_per_epoch: int, warmup: float,
                       params: dict[str, Any], record: Callable[[str, str], None]) -> Schedule:
    """The schedule over this fit's steps. A run too short for the named schedule (1cycle needs a
    few steps to rise and fall) trains at a constant lr instead, and says so."""
    if isinstance(spec, Schedule):
        return spec
    schedule, held = build_schedule_or_hold(spec, lr=lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                            warmup=warmup, **params)
    if held is not None:
        record("schedule", held)
    return schedule


def find_lr(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Any, *, compute_loss: Callable,
            device: torch.device, precision: str, run_dir: Optional[Path], record: Callable[[str, str], None],
            png: bool = False, settings: Optional[dict[str, Any]] = None) -> tuple[Optional[float], dict]:
    """Run the LR range test on the training batches (the model, optimizer and RNG are put back).
    Returns the suggested lr (None when the curve gives none) and what summary.json records.
    Writes lr_find.json (the report draws it); lr_find.png too with ``png`` (it costs matplotlib);
    nothing with ``run_dir`` None (the ranks of a DDP job other than rank 0)."""
    from trainwise.lr.finder import LRFinder, save_lr_find
    from trainwise.lr.suggest import DIVERGENCE_DECADES

    finder = LRFinder(model, optimizer, None, device=device,
                      # fp16 needs a grad scaler the range test does not have; bf16 behaves alike without one
                      precision="bf16" if precision == "bf16" else "fp32",
                      # the loss training will minimize: (x, y, w) and dict batches, a user override
                      batch_loss=lambda batch: compute_loss(model, batch), **(settings or {}))
    result = finder.run(batches)
    try:
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
        if run_dir is not None and png:
            save_lr_find(result, run_dir)
        elif run_dir is not None:
            (run_dir / "lr_find.json").write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    except (OSError, TrainwiseError) as exc:  # the plot is a convenience; the lr is what matters
        log.warning("could not save the lr range test plot: %s", exc)
    summary = {"suggestion": result.suggestion, "rule": result.rule, "suggestions": result.suggestions}
    if result.repeats:  # a retried curve, read off the mean of several tests (issue 22, round 4)
        summary["tests_averaged"] = len(result.repeats)
    if result.calm_edge:  # a slow learner with no cliff near its floor: the edge read without backoff (rounds 5-6)
        summary["calm_edge"] = True
    if result.unread_curve:  # no reading from the curve: read under where the retried test diverged (round 7)
        summary["unread_curve"] = result.unread_curve
        summary["diverged_at"], summary["decades_under_divergence"] = result.lrs[-1], DIVERGENCE_DECADES
    if result.suggestion is None:
        summary["reason"] = result.reason
        return None, summary
    calm = ", read at its floor's edge: a slow learner whose loss did not diverge near it" if result.calm_edge else ""
    if result.unread_curve:
        calm = (f": the curve gave no reading ({result.unread_curve}), so {DIVERGENCE_DECADES:g} decades of lr under "
                f"where the test diverged, {result.lrs[-1]:.3g}")
    record("lr_find", f"the lr range test suggests lr {result.suggestion:.3g} (rule {result.rule}{calm})")
    return float(result.suggestion), summary


def fallback_lr(optimizer_name: Any) -> float:
    return FALLBACK_LR.get(str(optimizer_name), DEFAULT_FALLBACK_LR)


def hold_out_val(train: Any, val: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """``(train, val)`` with ``fraction`` of train held out as val, seeded: stratified for in-memory
    ``(inputs, targets)``; a map-style ``Dataset`` (or a list of samples) is split by index into two
    ``Subset``s without reading its samples (not stratified)."""
    import numpy as np
    from torch.utils.data import DataLoader, IterableDataset, Subset

    from trainwise.data.splits import check_fraction, split_indices

    check_fraction("val_fraction", fraction)
    if val is not None:
        raise ConfigError("val_fraction holds out part of the training data when no val is given, and val was given "
                          "too; pass either val or val_fraction")
    tensors = as_tensors(train)
    if tensors is None:
        if isinstance(train, (DataLoader, IterableDataset)) or not hasattr(train, "__getitem__") or \
                not hasattr(train, "__len__"):
            raise ConfigError(f"val_fraction cannot split a {type(train).__name__} (a DataLoader's batches are made, "
                              "a stream has no index); pass the map-style Dataset itself, or val= data")
        keep, held = split_indices(len(train), fraction=fraction, rng=np.random.default_rng(seed), labels=None)
        return Subset(train, keep.tolist()), Subset(train, held.tolist())
    labels = tensors[1].numpy() if not tensors[1].is_floating_point() and tensors[1].dim() == 1 else None
    keep, held = split_indices(len(tensors[0]), fraction=fraction, rng=np.random.default_rng(seed), labels=labels)
    keep_t, held_t = torch.as_tensor(keep), torch.as_tensor(held)
    return tuple(t[keep_t] for t in tensors), tuple(t[held_t] for t in tensors)

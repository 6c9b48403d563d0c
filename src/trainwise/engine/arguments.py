"""The Trainer's arguments checked when it is built, before any training: the device, the lr
against a built optimizer, a user's torch scheduler, the targets' settings."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, Union

import torch

from trainwise.checks import check_choice, check_range, unknown_arguments
from trainwise.engine.label_shift import ShiftLabels, check_shift_labels
from trainwise.errors import ConfigError, DataError


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if str(device) != "auto":
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use device=auto or cpu")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def torch_scheduler_of(schedule: Any, optimizer: Any, interval: Optional[str], lr: Any) -> tuple[Any, str]:
    """A user's ``torch.optim.lr_scheduler`` scheduler and when to step it, checked."""
    from torch.optim import lr_scheduler

    if not isinstance(schedule, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
        if interval is not None:
            raise ConfigError(f"schedule_interval applies to a torch.optim.lr_scheduler scheduler, got schedule "
                              f"{schedule!r}; drop schedule_interval")
        return None, "step"
    if schedule.optimizer is not optimizer:
        raise ConfigError(f"schedule is a {type(schedule).__name__} built on another optimizer; pass the optimizer "
                          "it was built for as optimizer=")
    if lr is not None:
        raise ConfigError(f"lr={lr!r} was given with a {type(schedule).__name__}, which sets the lrs itself; drop lr")
    default = "step" if isinstance(schedule, (lr_scheduler.OneCycleLR, lr_scheduler.CyclicLR)) else "epoch"
    return schedule, check_choice("schedule_interval", interval or default, ("step", "epoch"))


def check_lr(lr: Any, optimizer: Any) -> Union[float, str, None]:
    if lr is None or lr == "auto":
        return lr
    if isinstance(lr, str):
        try:
            lr = float(lr)  # "1e-3": what YAML 1.1 and environment variables hand over
        except ValueError:
            raise ConfigError(f"lr must be a number or 'auto', got {lr!r}") from None
    if isinstance(optimizer, torch.optim.Optimizer) and not all("lr_scale" in g for g in optimizer.param_groups):
        lrs = ", ".join(f"{g['lr']:g}" for g in optimizer.param_groups)
        raise ConfigError(f"lr={lr} was given with a built optimizer whose groups already have lrs ({lrs}); "
                          "drop lr to keep them, pass lr='auto' to rescale them, or pass an optimizer name")
    return check_range("lr", lr, 0, low_open=True)




def check_targets_args(class_axis: Any, ignore_index: Any, shift_labels: Any) -> tuple[Optional[int], int, ShiftLabels]:
    """``class_axis`` (1, -1 or None), ``ignore_index`` (an integer) and ``shift_labels``, checked."""
    if class_axis not in (None, 1, -1) or isinstance(class_axis, bool):
        raise ConfigError(f"class_axis must be 1 (PyTorch's (N, C, ...)), -1 (the last axis, (N, T, C)) or None "
                          f"(decided from the shapes), got {class_axis!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ConfigError(f"ignore_index must be an integer (the target value that counts nowhere), "
                          f"got {ignore_index!r}")
    return class_axis, ignore_index, check_shift_labels(shift_labels)


def check_optimizer(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a user's built optimizer (used as given); else it must be a name."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return True
    from trainwise.optim import OPTIMIZER_NAMES

    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer={optimizer.__name__} is a class; pass it built on the model's parameters, "
                          f"optimizer={optimizer.__name__}(model.parameters(), lr=...), or a name "
                          f"({', '.join(OPTIMIZER_NAMES)})")
    check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
    return False


def unknown_fit_arguments(unknown: Mapping[str, Any], init: Callable[..., Any], fit: Callable[..., Any]) -> str:
    """``fit``'s unknown keywords: Keras passes epochs and batch size to fit, trainwise to Trainer
    (``init`` and ``fit``: the Trainer's methods, whose parameters say which is which)."""
    settings = [name for name in unknown if name in inspect.signature(init).parameters]
    rest = [name for name in unknown if name not in settings]
    known = [name for name in inspect.signature(fit).parameters if name not in ("self", "unknown")]
    lines = [f"Trainer.fit got {name}=, which is set in Trainer(...) here: Trainer(model, {name}=...).fit(...)"
             for name in settings]
    return "; ".join(lines + ([unknown_arguments("Trainer.fit", rest, known)] if rest else []))


def keras_fit_data(train: Any, val: Any) -> tuple[Any, Any]:
    """Keras' ``fit(x, y)``: two arrays of one length are the training inputs and targets."""
    from trainwise.data.arrays import is_array_like

    def is_array(value: Any) -> bool:
        return is_array_like(value) or (hasattr(value, "__array__") and hasattr(value, "shape"))

    if is_array(train) and is_array(val) and len(train) == len(val):
        return (train, val), None
    if is_array(train):
        raise DataError("fit() got a single tensor as training data; pass (inputs, targets): "
                        "fit((x, y), (x_val, y_val)), or fit(x, y) with as many targets as inputs")
    return train, val

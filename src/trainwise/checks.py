"""The one set of argument checks and the one did-you-mean: one message template (what is wrong,
the value given, what would be right), raised when an object is built, before any training."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any, Callable, Optional

from trainwise.errors import ConfigError


def closest(value: Any, choices: Iterable[str]) -> str | None:
    """The choice closest to ``value`` when one is close enough to be a typo of it, else None."""
    options = [str(c) for c in choices]
    same_case = [c for c in options if c.lower() == str(value).lower()]  # 'adamW' is 'adamw', not 'adam'
    if same_case:
        return same_case[0]
    matches = difflib.get_close_matches(str(value), options, n=1)
    return matches[0] if matches else None


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    match = closest(value, choices)
    return f"; did you mean {match!r}?" if match else ""


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ConfigError naming them (and, for
    another tool's name of a value, Keras' ``sparse_categorical_crossentropy``, the trainwise one)."""
    options = tuple(choices)
    if value not in options:
        ours = OTHER_TOOLS_VALUES.get(name, {}).get(str(value))
        hint = f"; that is {ours} here" if ours else did_you_mean(value, options)
        raise ConfigError(f"unknown {name} {value!r}{hint} (valid: {', '.join(options)})")
    return str(value)


def check_number(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise a ConfigError.

    Example: ``check_range("gamma", 1.5, 0, 1, low_open=True)`` raises
    ``gamma must be in (0, 1], got 1.5``.
    """
    number = check_number(name, value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        interval = _interval(low, high, low_open, high_open)
        raise ConfigError(f"{name} must be {interval}, got {value!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (a string such as ``"no"`` is not), else raise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_list(name: str, values: Any) -> tuple[Any, ...]:
    """Return ``values`` as a tuple if it is a list-like of items (a string is not)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a list, got {values!r}")
    return tuple(values)


def check_increasing(name: str, values: Any, minimum: int = 1) -> tuple[int, ...]:
    """Return ``values`` as a tuple of strictly increasing integers >= ``minimum``."""
    items = check_list(name, values)
    for item in items:
        check_int(f"every entry of {name}", item, minimum)
    if any(later <= earlier for earlier, later in zip(items, items[1:])):
        raise ConfigError(f"{name} must be strictly increasing, got {list(items)}")
    return items


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


# What other tools call a Trainer argument (Lightning, Keras, the Hugging Face Trainer): a user's
# habit gets the trainwise name, not a bare TypeError.
OTHER_TOOLS_NAMES = {
    "max_epochs": ("epochs", "Lightning's max_epochs"), "num_train_epochs": ("epochs", "the HF Trainer's"),
    "nb_epoch": ("epochs", "Keras'"), "n_epochs": ("epochs", None),
    "learning_rate": ("lr", "Keras' and the HF Trainer's learning_rate"),
    "gradient_clip_val": ("grad_clip", "Lightning's gradient_clip_val"),
    "max_grad_norm": ("grad_clip", "the HF Trainer's max_grad_norm"),
    "gradient_clip_algorithm": ("grad_clip_mode", "Lightning's"),
    "accumulate_grad_batches": ("accumulate", "Lightning's accumulate_grad_batches"),
    "gradient_accumulation_steps": ("accumulate", "the HF Trainer's gradient_accumulation_steps"),
    "per_device_train_batch_size": ("batch_size", "the HF Trainer's"),
    "per_device_eval_batch_size": ("eval_batch_size", "the HF Trainer's"),
    "default_root_dir": ("run_dir", "Lightning's default_root_dir"), "output_dir": ("run_dir", "the HF Trainer's"),
    "accelerator": ("device", "Lightning's accelerator"), "devices": ("device", "Lightning's devices; "
                                                                      "several GPUs: run under torchrun"),
    "enable_progress_bar": ("progress", "Lightning's"), "verbose": ("progress", "Keras'"),
    "check_val_every_n_epoch": ("val_every_n_steps", "Lightning's check_val_every_n_epoch: validation runs every "
                                                      "epoch; val_every_n_steps adds more"),
    "val_check_interval": ("val_every_n_steps", "Lightning's"), "eval_steps": ("val_every_n_steps", "the HF Trainer's"),
    "lr_scheduler": ("schedule", None), "lr_scheduler_type": ("schedule", "the HF Trainer's"),
    "scheduler": ("schedule", None), "warmup_ratio": ("warmup", "the HF Trainer's warmup_ratio (a share of the steps)"),
    "warmup_steps": ("warmup", "a share of the steps, e.g. 0.05, not a count"),
    "logging_steps": ("log_every_n_steps", "the HF Trainer's"), "seed_everything": ("seed", None),
    "fp16": ("precision", "precision='fp16'"), "bf16": ("precision", "precision='bf16'"),
    "loss_fn": ("loss", None), "criterion": ("loss", None), "optim": ("optimizer", None),
    "max_iters": ("max_steps", None), "steps": ("max_steps", None),
    "validation_data": ("val", "Keras' validation_data"), "validation_split": ("val_fraction", "Keras'"),
    "eval_dataset": ("val", "the HF Trainer's"), "train_dataset": ("train", "the HF Trainer's"),
    "val_dataloaders": ("val", "Lightning's"), "train_dataloaders": ("train", "Lightning's"),
    "ckpt_path": ("resume", "Lightning's ckpt_path"), "resume_from_checkpoint": ("resume", "the HF Trainer's"),
}


# What other tools call a Trainer method: ``trainer.test(...)`` gets the trainwise call, not a bare AttributeError.
OTHER_TOOLS_METHODS = {
    "test": "evaluate(data) scores any split with the model as it is (Lightning's trainer.test); fit(train, val, "
            "test=data) scores the best model on it at the end, into summary.json",
    "validate": "evaluate(val) (Lightning's trainer.validate)",
    "train": "fit(train, val) (the HF Trainer's train(); Trainer.train is not torch's train mode)",
    "fit_generator": "fit(data) takes a DataLoader or any Dataset (Keras' fit_generator)",
    "evaluate_generator": "evaluate(data) (Keras' evaluate_generator)",
    "predict_generator": "predict(data) (Keras' predict_generator)",
    "predict_on_batch": "predict(inputs) (Keras' predict_on_batch)",
    "lr_find": "lr='auto' (the default with an optimizer name) runs the LR range test first; trainwise.lr "
               "has the finder for a direct call (Lightning's Tuner.lr_find)",
    "tune": "lr='auto' runs the LR range test, batch_size='auto' finds the batch size (Lightning 1.x trainer.tune)",
    "save_model": "the run folder's checkpoints/best.pt holds the best model; trainwise export RUN writes "
                  "deployable files (the HF Trainer's save_model)",
}


def unknown_method(owner: str, name: str, public: Iterable[str] = ()) -> str:
    """The AttributeError message for ``owner.name``: what to call instead when another tool has that
    method, else the closest of ``public`` (a typo)."""
    ours = OTHER_TOOLS_METHODS.get(name)
    if ours is None:
        return f"{owner!r} object has no attribute {name!r}" + ("" if name.startswith("_") else did_you_mean(name, public))
    return f"{owner} has no {name}(): {ours}"


# What Lightning's and Keras' ModelCheckpoint and EarlyStopping call an argument (None: trainwise has no
# such setting, and the note says what it does instead).
OTHER_CALLBACK_NAMES: dict[str, tuple[Optional[str], Optional[str]]] = {
    "every_n_train_steps": ("every_n_steps", "Lightning's"), "save_freq": ("every_n_steps", "Keras' (in steps)"),
    "every_n_epochs": ("every_epoch", "Lightning's; the cost of a save sets the epoch cadence"),
    "save_top_k": ("keep_last", "the newest step checkpoints kept; best.pt always holds the best"),
    "save_last": (None, "last.pt is always written"), "save_best_only": (None, "best.pt is always written"),
    "dirpath": (None, "checkpoints go to RUN_DIR/checkpoints: Trainer(run_dir=...)"),
    "filepath": (None, "checkpoints go to RUN_DIR/checkpoints: Trainer(run_dir=...)"),
    "filename": (None, "step-NNNNNNNN.pt, last.pt and best.pt, listed in manifest.json"),
    "save_weights_only": (None, "a checkpoint holds the whole state for an exact resume; `trainwise export` "
                                "writes the weights alone"),
    "verbose": (None, "the events and the progress line say what happened"),
    "baseline": (None, "the doctor's baselines say what a model must beat"),
    "check_finite": (None, "the non-finite guard: Trainer(on_nonfinite=...)"),
    "stopping_threshold": (None, "stop from a callback of your own with trainer.stop(reason)"),
    "divergence_threshold": (None, "the non-finite guard: Trainer(on_nonfinite=...)"),
}


def unknown_arguments(owner: str, given: Iterable[str], known: Iterable[str],
                      aliases: Optional[dict[str, tuple[Optional[str], Optional[str]]]] = None) -> str:
    """One line naming each unknown keyword argument of ``owner`` with what to pass instead (``aliases``:
    other tools' names, default the Trainer's)."""
    known = tuple(known)
    aliases = OTHER_TOOLS_NAMES if aliases is None else aliases
    hints = []
    for name in given:
        if name in aliases:
            ours, note = aliases[name]
            hints.append(f"{name}= is {ours}= here" + (f" ({note})" if note else "") if ours else f"{name}=: {note}")
        else:
            match = closest(name, known)
            other = closest(name, aliases) if match is None else None  # learning_rat: learning_rate
            if other is not None and aliases[other][0] is None:
                other = None
            if other is not None:
                match = f"{aliases[other][0]}= ({other}= elsewhere)"
            hints.append(f"{name}=" + (f": did you mean {match if other else match + '='}?" if match else " is not one"))
    noun = "argument" if len(hints) == 1 else "arguments"
    return f"{owner} got unknown {noun}: {'; '.join(hints)} (help({owner}) lists them)"

# Other tools' names of a value (Keras' losses, torch's loss classes, Lightning's precision strings).
_CROSS_ENTROPY, _BINARY = "'cross_entropy'", "task='binary' (its default loss is BCE on logits)"
OTHER_TOOLS_VALUES = {
    "loss": {"sparse_categorical_crossentropy": _CROSS_ENTROPY, "categorical_crossentropy": _CROSS_ENTROPY,
             "CrossEntropyLoss": _CROSS_ENTROPY, "nll": _CROSS_ENTROPY, "crossentropy": _CROSS_ENTROPY,
             "mean_squared_error": "'mse'", "MSELoss": "'mse'", "l2": "'mse'",
             "mean_absolute_error": "'mae'", "L1Loss": "'mae'", "l1": "'mae'",
             "huber_loss": "'huber'", "SmoothL1Loss": "'huber'", "HuberLoss": "'huber'",
             "binary_crossentropy": _BINARY, "BCEWithLogitsLoss": _BINARY, "bce": _BINARY, "BCELoss": _BINARY},
    "precision": {"16-mixed": "'fp16'", "16": "'fp16'", "bf16-mixed": "'bf16'", "bf16-true": "'bf16'",
                  "32": "'fp32'", "32-true": "'fp32'", "float16": "'fp16'", "bfloat16": "'bf16'",
                  "float32": "'fp32'"},
}


def arguments_of(function: Callable[..., Any]) -> list[str]:
    """The keyword arguments ``function`` takes by name (for a did-you-mean)."""
    import inspect

    return [name for name, parameter in inspect.signature(function).parameters.items()
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)]

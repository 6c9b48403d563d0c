"""The plan of one fit: every decision the loop follows, made once in setup and never re-guessed.

``FitPlan`` holds how the model is called (``CallRule``), where the loss comes from and along which
class axis (``LossRule``), the task, the world (rank, world size), the length of training and when
validation runs. Setup (``engine/fit.py``) builds it; the loop (``engine/loop.py``) reads it.

Example:
    >>> plan.loss.task, plan.loss.class_axis, plan.call.kind, plan.world.is_main
    ('classification', -1, 'tuple', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from trainwise.distributed.ops import world
from trainwise.engine.batch_rule import CallRule, call_model, cannot_take, head, sample_shape
from trainwise.engine.loss_rule import LossRule
from trainwise.errors import ConfigError, DataError
from trainwise.data.loader import to_device


@dataclass(frozen=True)
class World:
    """This process in its job: ``rank`` of ``size`` processes (``0`` of ``1`` alone)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "World":
        rank, size = world()
        return cls(rank, size)


@dataclass(frozen=True)
class StepSettings:
    """How the loop takes an optimizer step and logs it: micro-batches per step, clipping, the log
    cadence, the device, and what a plateau schedule or a user's torch scheduler listens to."""

    accumulate: int = 1
    grad_clip: Optional[float] = None
    grad_clip_mode: str = "norm"
    log_every_n_steps: int = 50
    device: torch.device = torch.device("cpu")
    schedule_monitor: str = "val_loss"
    schedule_interval: str = "step"  # a user's torch scheduler: stepped per "step" or per "epoch"


@dataclass(frozen=True)
class FitPlan:
    """What the loop executes. ``steps_per_epoch`` is None for a stream of unknown length (an epoch
    is then one pass); ``total_steps`` is what the schedule spans. ``val_every_n_steps``: validate
    after every that many optimizer steps (None: at the end of each epoch). ``step``: how each
    optimizer step is taken. The trainer keeps the objects (model, optimizer, scaler, guard,
    callbacks) and the verbs (``stop``, ``record_event``, ``save_checkpoint``)."""

    call: Optional[CallRule]
    loss: Optional[LossRule]
    output_shape: Optional[tuple[int, ...]]
    world: World
    steps_per_epoch: Optional[int]
    total_steps: int
    val_every_n_steps: Optional[int] = None
    step: StepSettings = StepSettings()
    source: Optional[dict[str, Any]] = None  # how the training data is read (a stream: its sharding, its resume)

    def describe(self) -> dict[str, Any]:
        """What data.json records: the decisions, so a reader knows how the run used its data."""
        return {"batch_rule": self.call.describe() if self.call is not None else None,
                "loss_rule": self.loss.describe() if self.loss is not None else None,
                "output_shape": list(self.output_shape) if self.output_shape is not None else None,
                "steps_per_epoch": self.steps_per_epoch, "val_every_n_steps": self.val_every_n_steps,
                "source": self.source}


SETTING_NAMES = ("name", "seed", "device", "batch_size", "num_workers", "sampler", "augment", "epochs", "max_steps",
                 "accumulate", "grad_clip", "grad_clip_mode", "log_every_n_steps", "val_every_n_steps", "precision",
                 "lr", "lr_find", "optimizer_spec", "optimizer_args", "user_optimizer", "schedule_spec",
                 "schedule_params", "warmup", "schedule_monitor", "schedule_interval", "torch_scheduler",
                 "cycle_momentum", "init", "keep_last", "class_names")


@dataclass(frozen=True)
class FitSettings:
    """The Trainer's arguments that one fit reads, as they are when it starts (``of``): setup
    (``engine/fit.py``) reads these typed values, never the Trainer's attributes."""

    name: str
    seed: int
    device: torch.device
    batch_size: int
    num_workers: int
    sampler: Optional[str]
    augment: Optional[Callable[..., Any]]
    epochs: int
    max_steps: Optional[int]
    accumulate: int
    grad_clip: Optional[float]
    grad_clip_mode: str
    log_every_n_steps: int
    val_every_n_steps: Optional[int]
    precision: str
    lr: Union[float, str, None]
    lr_find: dict[str, Any]
    optimizer_spec: Any  # a name, or the user's torch.optim.Optimizer
    optimizer_args: dict[str, Any]
    user_optimizer: bool
    schedule_spec: Any  # a name or a Schedule
    schedule_params: dict[str, Any]
    warmup: float
    schedule_monitor: str
    schedule_interval: str
    torch_scheduler: Any  # a user's torch.optim.lr_scheduler scheduler, or None
    cycle_momentum: bool
    init: Optional[str]
    keep_last: int
    class_names: Optional[tuple[str, ...]]

    @classmethod
    def of(cls, trainer: Any) -> "FitSettings":
        values: dict[str, Any] = {name: getattr(trainer, name, None) for name in SETTING_NAMES}
        if values["class_names"] is not None:
            values["class_names"] = tuple(values["class_names"])
        return cls(**values)


@dataclass(frozen=True)
class FitObjects:
    """The objects one fit trains, steps and saves, handed over by the Trainer once its optimizer
    exists (``Trainer.fit_objects``): the loop's checkpoints (``engine/resume.py``) save, restore and
    roll them back without reaching into the Trainer. ``config`` and ``reference_lr``: what this fit
    runs with (a checkpoint records them; a resume compares its config with them)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler (disabled unless fp16)
    guard: Any  # engine.nonfinite.NonFiniteGuard: rollbacks, lr scale, batches to skip
    spikes: Any  # engine.nonfinite.SpikeCounter
    callbacks: tuple[Any, ...]
    device: torch.device
    config: Optional[dict[str, Any]]
    reference_lr: Optional[float]
    record_event: Callable[[str, str], None]


def first_batch(batches: Any) -> Any:
    """The first batch of a pass (the batches are put back to the start of epoch 0)."""
    batches.set_epoch(0)
    try:
        batch = next(iter(batches))
    except StopIteration:
        raise DataError("the training data is empty; give at least one sample") from None
    batches.set_epoch(0)
    return batch


def _call_on_sample(trainer: Any, sample: Any, what: str) -> Any:
    """The model on a few samples; a failure is the one line of a model that cannot take ``what``."""
    try:
        return call_model(trainer.model, sample)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, (DataError, ConfigError, torch.OutOfMemoryError)):
            raise
        shape = sample_shape(sample)
        dtype = sample.dtype if isinstance(sample, torch.Tensor) else None
        raise cannot_take(exc, shape, getattr(trainer, "table_encoding", None), what, dtype) from exc


def probe_inputs(trainer: Any, batches: Any, what: str) -> None:
    """After a failed evaluation or prediction: when the model cannot take two samples of the first
    batch either, the data is at fault (another number of features than in training), said in one
    line naming ``what`` ("the validation inputs"); otherwise the caller re-raises its own error."""
    if trainer._overrides_loss():  # a compute_loss override alone knows what its batches feed the model
        return
    try:
        sample = to_device(head(trainer.split_batch(first_batch(batches))[0], 2), trainer.device)
    except Exception:  # noqa: BLE001 - the batch itself is unreadable: the caller's error says more
        return
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            _call_on_sample(trainer, sample, what)
    except (DataError, ConfigError):
        raise
    except Exception:  # noqa: BLE001 - not the inputs' size: the caller's error says more
        return
    finally:
        model.train(was_training)


def decide_rules(trainer: Any, batch: Any, *, user_loss: bool, values: Optional[torch.Tensor] = None
                 ) -> tuple[Optional[LossRule], Optional[tuple]]:
    """The loss rule and the outputs' shape, from one forward pass of two samples of ``batch`` in eval
    mode (``trainer``'s rules are then set: they are decided once). ``user_loss``: a
    ``compute_loss`` override trains, so a batch it alone understands is no error."""
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        inputs, targets, _ = trainer.split_batch(batch)
        sample = to_device(head(inputs, 2), trainer.device)
        with torch.inference_mode():
            raw = _call_on_sample(trainer, sample, "inputs")
            values = values if values is not None else targets if isinstance(targets, torch.Tensor) else None
            rule = trainer.batch_loss.rule_for(raw, head(targets, 2), sample, values=values)
            trainer.task = rule.task
            refuse_unused_training_step(model, rule, trainer.loss_spec)
            warn_unused_configure_optimizers(trainer)
    except (DataError, ConfigError):
        if user_loss:
            return None, None
        raise
    finally:
        model.train(was_training)
    outputs = raw if isinstance(raw, torch.Tensor) else getattr(raw, "logits", None) \
        if not isinstance(raw, dict) else raw.get("logits")
    if isinstance(raw, (tuple, list)) and raw:
        outputs = raw[0]
    return rule, tuple(outputs.shape[1:]) if isinstance(outputs, torch.Tensor) else None


def check_val_every(value: Any) -> Optional[int]:
    """``val_every_n_steps``: None (each epoch) or a whole number of optimizer steps >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"val_every_n_steps must be a whole number of optimizer steps >= 1, or None to validate "
                          f"at the end of each epoch, got {value!r}")
    return value


def refuse_unused_training_step(model: Any, rule: Any, loss: Any) -> None:
    """A model with a LightningModule's ``training_step`` keeps its loss there: training ``forward()``'s
    outputs with trainwise's default loss instead would silently train another objective."""
    if rule.source == "model" or loss is not None or not callable(getattr(model, "training_step", None)):
        return
    raise ConfigError(
        f"{type(model).__name__} defines training_step(), which trainwise does not call: it trains forward()'s "
        "outputs against the batch's targets with its own loss. Pass loss= (e.g. loss='cross_entropy') to train "
        "that way, return {'loss': ...} from forward(), or subclass Trainer with compute_loss(model, batch) "
        "returning training_step's loss"
        + ("; configure_optimizers() is not called either: pass optimizer=model.configure_optimizers()"
           if callable(getattr(model, "configure_optimizers", None)) else ""))


def warn_unused_configure_optimizers(trainer: Any) -> None:
    """A LightningModule's ``configure_optimizers`` is not called: say which optimizer trains instead."""
    model = trainer.model
    if trainer.user_optimizer or not callable(getattr(model, "configure_optimizers", None)):
        return
    message = (f"{type(model).__name__} defines configure_optimizers(), which trainwise does not call: it trains "
               f"with optimizer={trainer.optimizer_spec!r}; pass optimizer=model.configure_optimizers() (an "
               "optimizer) to train with yours")
    if message not in trainer.state.warnings:
        trainer.warn(message)

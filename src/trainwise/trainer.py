"""The training loop: fit / evaluate / predict.

The loop reads like a hand-written PyTorch loop; everything optional hangs off events fired to
callbacks. Per optimizer step it does: forward (under autocast when asked), loss, a finiteness
check, backward scaled for accumulation, clipping, ``optimizer.step()``, the schedule's lr for the
next step. On the CPU the loss is read every step (free there); on accelerators running sums stay
on the device and are read only at log time.

Example:
    >>> result = Trainer(model, loss="cross_entropy", lr=3e-3, epochs=10).fit((x, y), (x_val, y_val))
    >>> result.best_val_loss, result.run_dir
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.callbacks import Callback, CheckpointSaver, EarlyStopping, ProgressBar
from trainwise.callbacks.base import EVENTS, overrides
from trainwise.errors import ConfigError, DataError, TrainwiseError
from trainwise.loader import as_tensors, make_batches
from trainwise.metrics import ClassificationMeter, RegressionMeter, build_loss, task_of_loss
from trainwise.optim import build_optimizer, set_lr, set_momentum
from trainwise.run_folder import MetricsLog, default_run_dir, write_config, write_json
from trainwise.schedules import Schedule, build_schedule
from trainwise.trainer_state import Checkpointer, check_resume_config
from trainwise.training_guards import NonFiniteGuard, SpikeCounter

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns. ``history`` has one dict per epoch."""

    status: str
    history: list[dict[str, float]]
    best_val_loss: Optional[float]
    best_epoch: Optional[int]
    run_dir: Optional[Path]
    summary: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Trains an ``nn.Module`` with the practices every guide preaches switched on.

    Args:
        model: the network; moved to ``device``.
        loss: ``cross_entropy`` (classification) or ``mse`` / ``mae`` / ``huber`` (regression).
        optimizer: a name (sgd, adam, adamw, rmsprop, adagrad) or a built ``torch.optim.Optimizer``.
        lr, weight_decay, momentum, nesterov: optimizer settings (weight decay skips biases and norms).
        schedule: a name (onecycle, cosine, step, ...) or a ``Schedule``; ``schedule_params`` its
            parameters; ``warmup`` steps (or a fraction of all steps when < 1).
        epochs, max_steps: length of training; ``max_steps`` (optimizer steps) wins when smaller.
        batch_size, eval_batch_size: samples per micro-batch in training / evaluation.
        accumulate: micro-batches per optimizer step (the effective batch is ``batch_size * accumulate``).
        grad_clip, grad_clip_mode: clip the global gradient norm (``norm``) or each value (``value``).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; a GradScaler for fp16).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        early_stopping: True (``EarlyStopping(monitor, patience=patience, min_delta=min_delta)``), False,
            or an ``EarlyStopping`` instance.
        callbacks: your own callbacks, run after the built-in early stopping and before the checkpointer.
        run_dir: where the run folder goes; default ``runs/<name>-<timestamp>``.
        checkpoint_every_n_steps, checkpoint_every_epoch, keep_last: checkpoint cadence and retention
            (best.pt is written whenever the monitored metric improves, whatever the cadence).
        on_nonfinite: ``rollback`` (default), ``skip`` or ``stop`` when a loss or gradient is NaN/Inf.
        progress: show a progress bar (plain epoch lines when not a terminal).
        report: write curves.png, lr.png and report.html when the run ends.
        config: the resolved config to write to ``config.yaml`` (the CLI passes it).
    """

    def __init__(
        self, model: nn.Module, *, loss: str = "cross_entropy", optimizer: Union[str, torch.optim.Optimizer] = "adamw",
        lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9, nesterov: bool = False,
        schedule: Union[str, Schedule] = "onecycle", schedule_params: Optional[dict[str, Any]] = None,
        warmup: float = 0, schedule_monitor: str = "val_loss", epochs: int = 10, max_steps: Optional[int] = None, batch_size: int = 64,
        eval_batch_size: Optional[int] = None, accumulate: int = 1, grad_clip: Optional[float] = None,
        grad_clip_mode: str = "norm", precision: str = "fp32", device: Union[str, torch.device] = "auto",
        early_stopping: Union[bool, EarlyStopping] = True, monitor: str = "val_loss", patience: int = 5,
        min_delta: float = 0.0, callbacks: Sequence[Callback] = (), run_dir: Union[str, Path, None] = None,
        name: str = "run", seed: int = 0, label_smoothing: float = 0.0,
        class_weights: Optional[torch.Tensor] = None, augment: Optional[Callable] = None,
        checkpoint_every_n_steps: Optional[int] = None, checkpoint_every_epoch: bool = True, keep_last: int = 3, on_nonfinite: str = "rollback",
        max_rollbacks: int = 3, rollback_lr_factor: float = 0.5, spike_factor: float = 10.0,
        log_every_n_steps: int = 50, progress: bool = True, report: bool = True, config: Optional[dict[str, Any]] = None,
        num_workers: int = 0,
    ) -> None:
        _check_positive(epochs=epochs, batch_size=batch_size, accumulate=accumulate,
                        log_every_n_steps=log_every_n_steps)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if grad_clip_mode not in ("norm", "value"):
            raise ConfigError(f"grad_clip_mode must be 'norm' or 'value', got {grad_clip_mode!r}")
        if grad_clip is not None and grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {grad_clip}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.task = task_of_loss(loss)
        self.loss_name = loss
        self.loss_fn = build_loss(loss, label_smoothing=label_smoothing,
                                  class_weights=None if class_weights is None else class_weights.to(self.device))
        self.optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else build_optimizer(
            self.model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
        self.lr = lr
        self.schedule_spec = schedule
        self.schedule_params = dict(schedule_params or {})
        self.warmup = warmup
        self.schedule_monitor = schedule_monitor  # what reduce-on-plateau listens to
        self.epochs, self.max_steps = epochs, max_steps
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.accumulate = accumulate
        self.grad_clip, self.grad_clip_mode = grad_clip, grad_clip_mode
        self.precision = precision
        self.autocast_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.name, self.seed = name, seed
        self.augment = augment
        self.num_workers = num_workers
        self.log_every_n_steps = log_every_n_steps
        self.config = config
        self.write_report = report
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(name)
        self.guard = NonFiniteGuard(on_nonfinite, max_rollbacks=max_rollbacks, lr_factor=rollback_lr_factor)
        self.spikes = SpikeCounter(spike_factor)
        self.callbacks = self._assemble_callbacks(early_stopping, monitor, patience, min_delta, callbacks,
                                                  checkpoint_every_n_steps, checkpoint_every_epoch, progress)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", keep_last)
        self._dispatch = {event: [cb for cb in self.callbacks if overrides(cb, event)] for event in EVENTS}
        # Loop state, public for callbacks.
        self.epoch = 0
        self.step = 0
        self.should_stop = False
        self.status = "completed"
        self.stop_reason: Optional[str] = None
        self.current_lr = lr
        self.history: list[dict[str, float]] = []
        self.events: list[dict[str, Any]] = []
        self.samples_seen_this_epoch = 0
        self.batches_per_epoch = 0
        self.schedule: Optional[Schedule] = None
        self.summary_extra: dict[str, Any] = {}  # extra summary.json keys (lr finder result, class names)

    # ----------------------------------------------------------------------------- setup
    def _assemble_callbacks(self, early_stopping, monitor, patience, min_delta, user_callbacks,
                            every_n_steps, every_epoch, progress) -> list[Callback]:
        callbacks: list[Callback] = []
        if isinstance(early_stopping, EarlyStopping):
            callbacks.append(early_stopping)
        elif early_stopping:
            callbacks.append(EarlyStopping(monitor, patience=patience, min_delta=min_delta))
        for callback in user_callbacks:
            if not isinstance(callback, Callback):
                raise ConfigError(f"callbacks must be trainwise.Callback instances, got {type(callback).__name__}")
            callbacks.append(callback)
        # best.pt follows the same rule as early stopping, so it holds the weights that get restored.
        stopper = next((cb for cb in callbacks if isinstance(cb, EarlyStopping)), None)
        if stopper is not None:
            saver = CheckpointSaver(every_n_steps=every_n_steps, every_epoch=every_epoch, monitor=stopper.monitor,
                                    mode=stopper.tracker.mode, min_delta=stopper.tracker.min_delta)
        else:
            saver = CheckpointSaver(every_n_steps=every_n_steps, every_epoch=every_epoch, monitor=monitor)
        callbacks.append(saver)
        if progress:
            callbacks.append(ProgressBar())
        return callbacks

    def _fire(self, event: str, *args: Any) -> None:
        for callback in self._dispatch[event]:
            getattr(callback, event)(self, *args)

    def request_stop(self, reason: str, status: str = "stopped_early") -> None:
        """Ask the loop to stop after the current step; ``reason`` goes into the summary."""
        self.should_stop = True
        self.status = status
        self.stop_reason = reason
        self.record_event(status, reason)

    def record_event(self, kind: str, message: str) -> None:
        event = {"step": self.step, "epoch": self.epoch, "kind": kind, "message": message}
        self.events.append(event)
        log.info("%s: %s", kind, message)
        if hasattr(self, "metrics_log"):
            self.metrics_log.log(self.step, self.epoch, "event", {kind: float(self.current_lr)})

    # ----------------------------------------------------------------------------- fit
    def fit(self, train: Any, val: Any = None, *, test: Any = None,
            resume: Union[str, Path, None] = None, allow_config_changes: bool = False) -> FitResult:
        """Train on ``train``, validate on ``val`` each epoch, test on ``test`` at the end.

        Each of ``train``, ``val``, ``test`` may be an ``(inputs, targets)`` pair of tensors or
        arrays, a ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader``. ``resume`` is a
        checkpoint path or ``"auto"`` (the newest verified checkpoint in ``run_dir``).
        """
        from trainwise.loop import FitLoop  # the loop itself, with its per-run state

        return FitLoop(self, train, val, test).run(resume=resume, allow_config_changes=allow_config_changes)

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return self._run.state_dict() if getattr(self, "_run", None) is not None else {}

    def save_checkpoint(self, *, best: bool = False) -> Optional[Path]:
        """Write a checkpoint of the whole run (model, optimizer, schedule, callbacks, data position, RNG)."""
        run = getattr(self, "_run", None)
        if run is None:
            return None
        return run.save_checkpoint(best=best)

    # ----------------------------------------------------------------------------- eval / predict
    @torch.inference_mode()
    def evaluate(self, data: Any, *, num_classes: Optional[int] = None) -> dict[str, float]:
        """Loss and metrics on ``data`` (eval mode, no gradients). Classification: loss, accuracy,
        macro_f1, top5_accuracy (more than 5 classes); regression: loss, rmse, mae, r2."""
        meter = self.evaluate_meter(data, num_classes=num_classes)
        return meter.compute()

    @torch.inference_mode()
    def evaluate_meter(self, data: Any, *, num_classes: Optional[int] = None):
        was_training = self.model.training
        self.model.eval()
        batches = make_batches(data, batch_size=self.eval_batch_size, shuffle=False, seed=0, device=self.device)
        batches.set_epoch(0)
        meter = None
        for xb, yb in batches:
            outputs, loss = self._eval_forward(xb, yb)
            if meter is None:
                meter = (ClassificationMeter(num_classes or outputs.shape[1], self.device)
                         if self.task == "classification" else RegressionMeter(self.device))
            meter.update(outputs.float(), yb, loss)
        self.model.train(was_training)
        if meter is None:
            raise DataError("cannot evaluate on an empty data set")
        return meter

    def _eval_forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.autocast_dtype is None:
            outputs = self.model(xb)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                outputs = self.model(xb)
        outputs = outputs.float()
        if self.task == "regression" and outputs.shape != yb.shape:
            yb = yb.reshape(outputs.shape)
        return outputs, self.loss_fn(outputs, yb)

    @torch.inference_mode()
    def predict(self, data: Any) -> torch.Tensor:
        """Model outputs (logits for classification) for inputs ``data`` (a tensor, an array, or
        anything ``fit`` accepts, whose targets are ignored), on the CPU."""
        was_training = self.model.training
        self.model.eval()
        if isinstance(data, torch.Tensor) or hasattr(data, "__array__") and as_tensors(data) is None:
            x = data if isinstance(data, torch.Tensor) else torch.as_tensor(data, dtype=torch.float32)
            data = (x, torch.zeros(len(x)))
        batches = make_batches(data, batch_size=self.eval_batch_size, shuffle=False, seed=0, device=self.device)
        batches.set_epoch(0)
        outputs = []
        for xb, _ in batches:
            if self.autocast_dtype is None:
                outputs.append(self.model(xb).float().cpu())
            else:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    outputs.append(self.model(xb).float().cpu())
        self.model.train(was_training)
        return torch.cat(outputs)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")

"""The public ``Trainer``: a user's model, loss, optimizer and data, trained with the practices
every guide preaches — and with whatever the user hands over used as given.

Example:
    >>> trainer = Trainer(model, loss=nn.CrossEntropyLoss(), optimizer="adamw", lr="auto", epochs=10)
    >>> result = trainer.fit((x, y), (x_val, y_val))
    >>> result.best_val_loss, result.best_epoch, result.run_dir

Batches are ``(x, y)``, ``(x, y, weight)`` or dicts fed to ``forward`` by its signature
(``engine/batch_rule.py``); override ``split_batch`` or ``compute_loss`` for anything else.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from trainwise.callbacks import Callback, CheckpointSaver, EarlyStopping, ProgressBar
from trainwise.callbacks.assembly import assemble_callbacks
from trainwise.callbacks.dispatch import dispatch_table
from trainwise.callbacks.loggers import build_loggers
from trainwise.checks import check_choice, check_int, check_range, unknown_arguments, unknown_method
from trainwise.distributed.ops import world
from trainwise.distributed.launch import check_sync_batchnorm
from trainwise.distributed.world import World, env_world_size, join_world, rank_device
from trainwise.errors import (ConfigError, RunEndedBadlyWarning, TrainwiseError, UnknownArgumentError,
                              user_facing)
from trainwise.engine.evaluation import EvalStep, evaluate_batches
from trainwise.engine.fit import FitResult, evaluation_data, run_fit, run_lr_find
from trainwise.engine.arguments import (check_lr, check_optimizer, check_targets_args, resolve_device,
                                        keras_fit_data, torch_scheduler_of, unknown_fit_arguments)
from trainwise.engine.fitplan import FitPlan, check_val_every, probe_inputs
from trainwise.engine.plan import hold_out_val
from trainwise.engine.predict import predict_outputs
from trainwise.data.categorical import TableEncoding, encode_inputs, encode_tables
from trainwise.data.loader import batch_length, make_batches
from trainwise.engine.batch_loss import BatchLoss
from trainwise.engine.loss_rule import TASKS, LossRule
from trainwise.losses import IGNORE_INDEX
from trainwise.metrics import Loss, build_loss, class_weights_of, named_metrics, task_of_loss
from trainwise.engine.nonfinite import NONFINITE_POLICIES, NonFiniteGuard, SpikeCounter
from trainwise.runfolder.files import default_run_dir
from trainwise.schedules import Schedule
from trainwise.engine.speed import speed_options
from trainwise.engine.state import STATUSES, RunState

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
__all__ = ["FitResult", "Trainer", "resolve_device"]


class Trainer:
    """Trains an ``nn.Module`` with the practices every guide preaches switched on.

    Args:
        model: the network; moved to ``device``.
        loss: a name (``cross_entropy``, ``focal``; ``mse``, ``mae``, ``huber`` for regression) or a callable
            ``(outputs, targets) -> tensor`` (an ``nn.Module`` loss included), given outputs and targets
            exactly as the model and the data gave them. None (default): the model's own ``outputs.loss`` /
            ``outputs["loss"]`` when it returns one, else ``cross_entropy``. Cross-entropy takes integer
            targets ``(N, *S)`` with outputs of one more axis of classes, last (``(N, T, V)``) or at 1
            (``(N, C, H, W)``), or float class probabilities of the outputs' shape (soft labels).
        task: ``classification``, ``regression`` or ``binary`` where the shapes cannot tell (say, a loss
            callable with integer targets of the outputs' shape); None: decided from the first batch.
        class_axis: 1 or -1 to say which outputs axis holds the classes (default: decided from the shapes,
            the last one when both fit). ignore_index: targets equal to it count nowhere (default -100).
        shift_labels: score the output at position t against the target at t + 1 (a causal LM whose labels
            are its input_ids, HF's way) in metrics, trainwise's loss and token counts; the model gets the labels
            as given. "auto" (default): when the targets repeat the inputs; True/False: always/never.
        optimizer: a name (sgd, adam, adamw, rmsprop, adagrad; weight decay skips biases and norms)
            or your built ``torch.optim.Optimizer``, whose parameter groups and lrs are kept.
        lr: a number, or ``"auto"`` (an LR range test before training). Default: ``"auto"`` with an
            optimizer name; your own optimizer's lrs as given (``lr="auto"`` rescales its groups
            together, keeping their ratios; a number with a built optimizer is refused). ``lr_find``:
            the range test's settings (``start_lr``, ``end_lr``, ``num_steps``, ``rule``).
        weight_decay, momentum, nesterov: settings of a named optimizer (decay 1e-2 by default, never on
            biases and norms).
        schedule: a name (onecycle, cosine, step, constant, ...) or a ``Schedule``; it multiplies
            each group's own lr. Default: ``onecycle``, or ``constant`` with your own optimizer.
            ``schedule_params``: its parameters; ``warmup``: steps, or a fraction of all steps when < 1.
            A ``torch.optim.lr_scheduler`` scheduler built on your optimizer works too: it is stepped
            every ``schedule_interval`` (``"epoch"``, or ``"step"``; default ``"step"`` for OneCycleLR
            and CyclicLR, ``"epoch"`` otherwise; ReduceLROnPlateau gets ``schedule_monitor``'s value).
        cycle_momentum: follow the schedule's momentum cycle (1cycle); default only with a named optimizer.
        epochs, max_steps: length of training; ``max_steps`` (optimizer steps) wins when smaller.
        val_every_n_steps: validate every this many optimizer steps instead of at each epoch's end; the
            best checkpoint, early stopping (``patience`` then counts validations) and history rows follow.
        batch_size, eval_batch_size: samples per micro-batch in training / evaluation.
        accumulate: micro-batches per optimizer step (the effective batch is ``batch_size * accumulate``).
        grad_clip, grad_clip_mode: clip the global gradient norm (``norm``) or each value (``value``) at
            ``grad_clip``; ``"auto"``: 1.0 with a named optimizer, off with your own; None: off.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; a GradScaler for fp16).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        early_stopping: None (on when there is validation data), True, False, or an ``EarlyStopping``.
            ``monitor``, ``mode``, ``patience``, ``min_delta`` configure the built-in one.
        metrics: extra metrics, ``{name: fn(outputs, targets)}`` or a list of functions (named by
            ``__name__``), computed over each validation/test split as ``val_<name>``.
        callbacks: your callbacks; an ``EarlyStopping``, ``CheckpointSaver`` or ``ProgressBar`` among
            them replaces the built-in one.
        init: None (the model's own initialization) or a scheme (auto, he, xavier, lecun, orthogonal, lsuv).
        class_weights: per-class loss weights (a list, array or tensor), or ``"balanced"``.
        sampler: ``"balanced"`` draws each epoch's samples with replacement so that every class is
            drawn equally often (in-memory classification data); None: each sample once per epoch.
        focal_gamma: the focal loss's gamma for ``loss="focal"`` (0 is cross-entropy).
        target_normalization: ``{"mean": [...], "std": [...]}`` when the regression targets you pass
            were standardized: metrics and ``predict`` are then in the original units.
        class_names: names of the classes, for the report and ``trainwise predict``.
        run_dir: the run folder; default ``runs/<name>-<timestamp>``.
        checkpoint: a ``CheckpointSaver(every_n_steps=, every_epoch=, keep_last=)``: cadence and retention.
        on_nonfinite: ``rollback`` (default), ``skip`` or ``stop`` when a loss or gradient is NaN/Inf, or a
            ``NonFiniteGuard(policy, max_rollbacks=, lr_factor=)``.
        progress: a progress bar (plain epoch lines when not a terminal). report: write the plots and
            report.html at the end (search trials turn it off).
        config: the resolved config for ``config.yaml`` (the CLI passes it; a Python run writes its own).
        compile: ``torch.compile`` the model in place (``nn.Module.compile``: same parameter names). On a
            CPU it needs a C++ compiler; the first steps pay the compilation. channels_last: convert a
            convolutional model's weights to the channels-last memory format (NHWC). Both are measured in
            ``benchmarks/speed_options.py`` and off by default.
        sync_batchnorm: in a DistributedDataParallel job, turn BatchNorm layers into SyncBatchNorm
            (statistics over the global batch). A job is a script run by ``torchrun`` (``fit`` joins
            its process group itself: gloo on CPU, nccl on ``cuda:LOCAL_RANK``) or a process group
            you initialized. There ``batch_size`` is the global batch, each rank trains on its share of
            every batch (tensors, a ``Dataset``, or a plain ``DataLoader``, rebuilt per rank), rank 0
            alone writes the run folder, and ``fit``/``evaluate``/``predict`` must be called on every rank.
        loggers: ``"tensorboard"``, ``"mlflow"`` or logger callbacks (``TensorBoardLogger(log_dir=)``,
            ``MLflowLogger(tracking_uri=, experiment=)``): the run also logged where people look already.
    """

    @user_facing
    def __init__(
        self, model: nn.Module, *, loss: Optional[Loss] = None, optimizer: Union[str, torch.optim.Optimizer] = "adamw",
        lr: Union[float, str, None] = None, weight_decay: float = 1e-2, momentum: float = 0.9, nesterov: bool = False,
        schedule: Union[str, Schedule, Any, None] = None, schedule_params: Optional[dict[str, Any]] = None,
        schedule_interval: Optional[str] = None, lr_find: Optional[dict[str, Any]] = None,
        warmup: float = 0, schedule_monitor: str = "val_loss", cycle_momentum: Optional[bool] = None,
        epochs: int = 10, max_steps: Optional[int] = None, batch_size: int = 64, eval_batch_size: Optional[int] = None,
        accumulate: int = 1, grad_clip: Union[float, str, None] = "auto", grad_clip_mode: str = "norm", precision: str = "fp32",
        device: Union[str, torch.device] = "auto", early_stopping: Union[bool, EarlyStopping, None] = None,
        monitor: Optional[str] = None, mode: str = "auto", patience: int = 5, min_delta: float = 0.0,
        metrics: Union[Mapping[str, Callable], Sequence[Callable], None] = None, callbacks: Sequence[Callback] = (),
        init: Optional[str] = None, run_dir: Union[str, Path, None] = None, name: str = "run", seed: int = 0,
        label_smoothing: float = 0.0, class_weights: Any = None, augment: Optional[Callable] = None,
        target_normalization: Optional[dict[str, Any]] = None, class_names: Optional[Sequence[str]] = None,
        checkpoint: Optional[CheckpointSaver] = None, on_nonfinite: Union[str, NonFiniteGuard] = "rollback",
        spike_factor: float = 10.0, log_every_n_steps: int = 50, progress: bool = True, report: bool = True,
        config: Optional[dict[str, Any]] = None, num_workers: int = 0, sampler: Optional[str] = None,
        focal_gamma: float = 2.0, sync_batchnorm: bool = False, loggers: Sequence[Union[str, Callback]] = (),
        compile: bool = False, channels_last: bool = False, task: Optional[str] = None,
        class_axis: Optional[int] = None, ignore_index: int = IGNORE_INDEX, val_every_n_steps: Optional[int] = None,
        shift_labels: Union[bool, str] = "auto", **unknown: Any,
    ) -> None:
        if unknown:  # Lightning's max_epochs, Keras' learning_rate...: the trainwise name, not a bare TypeError
            known = [name for name in inspect.signature(Trainer.__init__).parameters if name not in ("self", "unknown")]
            raise UnknownArgumentError(unknown_arguments("Trainer", unknown, known))
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate),
                           ("log_every_n_steps", log_every_n_steps)):
            check_int(key, value, 1)
        if max_steps is not None:
            check_int("max_steps", max_steps, 1)
        check_choice("precision", precision, PRECISIONS)
        check_choice("grad_clip_mode", grad_clip_mode, ("norm", "value"))
        if grad_clip == "auto":  # measured on the examples (benchmarks/defaults.py); a user's optimizer runs as given
            grad_clip = None if isinstance(optimizer, torch.optim.Optimizer) else 1.0
        if grad_clip is not None:
            check_range("grad_clip", grad_clip, 0, low_open=True)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.device = rank_device(resolve_device(device))  # under torchrun on GPUs: cuda:LOCAL_RANK
        self.model = speed_options(model.to(self.device), self.device, compile=compile, channels_last=channels_last)
        self.user_optimizer = check_optimizer(optimizer)
        self.lr = check_lr(lr, optimizer)
        self.lr_find = dict(lr_find or {})  # LRFinder settings for lr="auto": start_lr, end_lr, num_steps, rule
        self.optimizer_spec = optimizer
        self.optimizer: Optional[torch.optim.Optimizer] = optimizer if self.user_optimizer else None
        self.optimizer_args = {"weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov}
        if loss is not None:  # a typo fails now; the rule itself is decided on the first batch
            build_loss(loss, label_smoothing=label_smoothing, focal_gamma=focal_gamma)
        if task is not None:
            check_choice("task", task, TASKS)
        self.loss_spec, self.task_hint = loss, task
        self.task = task or (task_of_loss(loss) if loss is not None else None)
        self.class_axis, self.ignore_index, self.shift_labels = check_targets_args(class_axis, ignore_index,
                                                                                   shift_labels)
        self.class_weights = class_weights_of(class_weights)
        self.focal_gamma, self.label_smoothing = focal_gamma, label_smoothing
        # how batches feed the model and where the loss comes from: decided on the first batch
        self.batch_loss = BatchLoss(loss=loss, task=task, class_axis=class_axis, ignore_index=ignore_index,
                                    label_smoothing=label_smoothing, focal_gamma=focal_gamma, warn=self.warn,
                                    note=lambda message: self.record_event("shift_labels", message),
                                    shift_labels=self.shift_labels)
        self.batch_loss.class_weights = self._weights_on_device()
        self.sampler = None if sampler is None else check_choice("sampler", sampler, ("balanced",))
        self.metrics = named_metrics(metrics)
        self.torch_scheduler, self.schedule_interval = torch_scheduler_of(schedule, optimizer, schedule_interval, lr)
        if self.torch_scheduler is not None:
            schedule = "constant"  # the scheduler sets the lrs; the loop only steps it
        if isinstance(schedule, str):  # a typo fails now, not after the range test
            from trainwise.schedules import SCHEDULE_NAMES

            check_choice("schedule", schedule, (*SCHEDULE_NAMES, "sgdr"))
        self.schedule_spec = schedule if schedule is not None else ("constant" if self.user_optimizer else "onecycle")
        self.schedule_params, self.warmup = dict(schedule_params or {}), warmup
        self.schedule_monitor = schedule_monitor  # what reduce-on-plateau listens to
        self.cycle_momentum = (not self.user_optimizer) if cycle_momentum is None else cycle_momentum
        self.epochs, self.max_steps, self.val_every_n_steps = epochs, max_steps, check_val_every(val_every_n_steps)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or max(batch_size, 256)
        self.accumulate, self.grad_clip, self.grad_clip_mode = accumulate, grad_clip, grad_clip_mode
        self.precision, self.autocast_dtype = precision, PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.init, self.name, self.seed = init, name, seed
        self.augment, self.num_workers = augment, num_workers
        self.target_normalization, self.class_names = target_normalization, class_names
        self.table_encoding: Optional[TableEncoding] = None  # a DataFrame's text columns, one-hot (data/categorical.py)
        self.log_every_n_steps, self.config, self.write_report = log_every_n_steps, config, report
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(name)  # claimed now
        saver = checkpoint if checkpoint is not None else CheckpointSaver()
        self.keep_last = saver.keep_last
        if not isinstance(on_nonfinite, NonFiniteGuard):
            on_nonfinite = NonFiniteGuard(check_choice("on_nonfinite", on_nonfinite, NONFINITE_POLICIES))
        self.guard = on_nonfinite
        self.spikes = SpikeCounter(spike_factor)
        self._callback_args: dict[str, Any] = dict(
            early_stopping=early_stopping, monitor=monitor, mode=mode, patience=patience, min_delta=min_delta,
            user_callbacks=[*callbacks, *build_loggers(loggers)], progress=ProgressBar() if progress else None,
            saver=saver)
        self.use_callbacks(has_val=True)
        self.state = RunState()
        self.plan: Optional[FitPlan] = None  # the last fit's decisions (engine/fitplan.py)
        self.summary_extra: dict[str, Any] = {}  # extra summary.json keys (the CLI adds class names)
        self.reference_lr: Optional[float] = None  # the lr the schedule scales (set by fit)
        self._loop: Any = None  # the running FitLoop, for the verbs
        self._fits = 0
        check_sync_batchnorm(sync_batchnorm, self.device, max(world()[1], env_world_size()))
        self.sync_batchnorm = sync_batchnorm
        self.train_model: nn.Module = self.model  # what training calls: the DDP wrapper in a DDP job
        self.step_sync: Any = None  # DDP: the per-micro-batch agreement of the ranks (dist_ops.StepSync)
        self.world = World(device=self.device)  # this process's place in its job; fit() finds it (join_world)

    # ----------------------------------------------------------------------------- verbs for callbacks
    def stop(self, reason: str, status: str = "stopped_early") -> None:
        """Ask the loop to stop after the current step; ``reason`` goes into the summary. ``status``:
        how the run ends (``stopped_early``; ``pruned`` when a search's pruner ended a trial)."""
        check_choice("status", status, [s for s in STATUSES if s != "running"])
        self.state.should_stop, self.state.status, self.state.stop_reason = True, status, reason
        self.record_event(status, reason)

    def log(self, name: str, value: float) -> None:
        """Log a figure of your own: a row in metrics.csv, and in this epoch's logs and history (from
        ``on_epoch_end``, the epoch that just ended; to monitor it for best and early stopping, log it
        in ``on_validation_end``, which runs before them)."""
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        loop = self._loop
        if loop is None:
            return
        if loop.ended_logs is not None and self.state.history:  # in on_epoch_end: the epoch that just ended
            loop.ended_logs[name] = value
            row = self.state.history[-1]
            row[name] = value
            loop.metrics_log.log(row["step"], row["epoch"], "user", {name: value})
            return
        loop.pending_logs[name] = value
        loop.metrics_log.log(self.state.step, self.state.current_epoch, "user", {name: value})

    def record_event(self, kind: str, message: str) -> None:
        """Note something that happened (shown in summary.json, the report and metrics.csv)."""
        s = self.state
        s.events.append({"step": s.step, "epoch": s.current_epoch, "kind": kind, "message": message})
        log.info("%s: %s", kind, message)
        if self._loop is not None:
            self._loop.metrics_log.log(s.step, s.current_epoch, "event", {kind: float(s.lr)})

    def warn(self, message: str) -> None:
        """A warning for the terminal, summary.json and the report."""
        self.state.warnings.append(message)
        log.warning("warning: %s", message)

    def save_checkpoint(self, *, best: bool = False) -> Optional[Path]:
        """Write a checkpoint of the whole run (model, optimizer, schedule, callbacks, data position, RNG)."""
        if self._loop is None:
            return None
        previous = self._loop.clock.switch("checkpoint")
        try:
            return self._loop.checkpoints.save(best=best)
        finally:
            self._loop.clock.switch(previous)

    # ----------------------------------------------------------------------------- fit
    @user_facing
    def fit(self, train: Any, val: Any = None, *, test: Any = None, val_fraction: Optional[float] = None,
            resume: Union[str, Path, None] = None, allow_config_changes: bool = False, **unknown: Any) -> FitResult:
        """Train on ``train``, validate on ``val`` after each epoch, test on ``test`` at the end.

        Each may be an ``(inputs, targets)`` or ``(inputs, targets, weights)`` pair of tensors,
        arrays or pandas tables, a dict of them, a list of ``(input, target)`` samples, a
        ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader``.
        ``val_fraction`` holds out that share of in-memory training data as validation (seeded by
        ``seed``, stratified by class; Keras' ``validation_split``) when no ``val`` is given.
        ``resume`` is a checkpoint path or ``"auto"`` (the newest verified checkpoint in ``run_dir``).
        Calling ``fit`` again continues training the same model in the same run folder for
        ``epochs`` more epochs, with a fresh schedule over them.
        """
        if unknown:  # Keras' fit(x, y, epochs=10, validation_data=...): the trainwise way in one line
            raise UnknownArgumentError(unknown_fit_arguments(unknown, Trainer.__init__, Trainer.fit))
        train, val = keras_fit_data(train, val)  # fit(x, y) as in Keras
        train, val, test, self.table_encoding = encode_tables(train, val, test, self.table_encoding)  # text columns
        if val_fraction is not None:
            train, val = hold_out_val(train, val, val_fraction, self.seed)
        self.world = join_world(self.device)  # under torchrun: joins the job (DDP, data sharded, rank 0 writes)
        if self._fits == 0:  # the first fit settles the callbacks
            self.use_callbacks(has_val=val is not None)
        result = run_fit(self, train, val, test, resume=resume, allow_config_changes=allow_config_changes)
        if result.summary.get("status") in ("diverged", "failed"):
            reason = result.summary.get("stop_reason") or f"the run {result.summary['status']}"
            warnings.warn(f"trainwise: {reason} (run folder {result.run_dir})", RunEndedBadlyWarning, stacklevel=2)
        return result

    @user_facing
    def find_lr(self, train: Any) -> dict[str, Any]:
        """Run the LR range test on ``train`` without training (the model, optimizer and RNG are
        put back); writes lr_find.json and lr_find.png into the run folder. Returns the suggestion
        (None when the curve gives none, with a ``reason``), its rule and every rule's value."""
        return run_lr_find(self, train)

    def use_callbacks(self, *, has_val: bool) -> None:
        """Assemble the callbacks and the run's "best" for data with or without a validation split."""
        self.callbacks, self.best = assemble_callbacks(has_val=has_val, **self._callback_args)
        self._dispatch = dispatch_table(self.callbacks)  # rank-0-only and error-containing callbacks honoured

    def _fire(self, event: str, *args: Any) -> None:
        for callback in self._dispatch[event]:
            getattr(callback, event)(self, *args)

    # ----------------------------------------------------------------------------- batches and loss
    def split_batch(self, batch: Any) -> tuple[Any, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(inputs, targets, weights)`` of a batch by the run's one rule (``engine/batch_rule.py``):
        ``(x, y)``, ``(x, y, w)``, or a dict whose keys the model's ``forward`` names. Override for others."""
        return self.batch_loss.call_rule_for(batch, self.model).split(batch)

    @property
    def loss_rule(self) -> Optional[LossRule]:
        """Where the loss comes from, the task and the class axis: decided on the first batch."""
        return self.batch_loss.rule

    def loss_of(self, outputs: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
        """The mean loss of a batch's predictions (per counted position for token targets)."""
        return self.batch_loss.mean_loss(outputs, targets, weights)

    def loss_terms(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any, Any, Optional[torch.Tensor]]:
        """``(loss_sum, count, predictions, targets)`` of one batch (``engine/batch_loss.py``)."""
        terms = self.batch_loss.terms(model, self.split_batch, batch)
        self.task = self.batch_loss.rule.task if self.batch_loss.rule is not None else self.task
        return terms

    def compute_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The mean training loss of one batch. Override it for batches or losses the defaults do not
        cover (the loop handles autocast, accumulation and the non-finite guard around it; an
        override's mean counts once per sample when micro-batches are combined)."""
        total, count = self.loss_terms(model, batch)[:2]
        return total / count

    def _training_terms(self, batch: Any, whole_step: bool) -> tuple[torch.Tensor, Any, bool]:
        """``(loss, count, is_mean)`` of a training micro-batch, under autocast when asked: its mean where
        the batch is a whole step (``whole_step``: no accumulation, one process) and the mean comes
        without extra ops, else its sum over the counted positions."""
        if self.autocast_dtype is None:  # fp32: no autocast context to enter and leave every step
            return self._micro_batch_terms(batch, whole_step)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            return self._micro_batch_terms(batch, whole_step)

    def _micro_batch_terms(self, batch: Any, whole_step: bool) -> tuple[torch.Tensor, Any, bool]:
        if _overrides_compute_loss(self):
            n = batch_length(batch)
            mean = self.compute_loss(self.train_model, batch)
            return (mean, n, True) if whole_step else (mean * n, n, False)
        if whole_step and self.batch_loss.rule is not None and _plain_terms(self):
            return self.batch_loss.step_terms(self.train_model, self.split_batch, batch)
        return (*self.loss_terms(self.train_model, batch)[:2], False)

    def _overrides_loss(self) -> bool:
        """A ``compute_loss`` override trains: batches only it understands are no error."""
        return _overrides_compute_loss(self)

    def _eval_step(self) -> EvalStep:
        return EvalStep(model=self.model, terms=self.loss_terms, rule=lambda: self.batch_loss.rule,
                        compute_loss=self.compute_loss if _overrides_compute_loss(self) else None,
                        autocast_dtype=self.autocast_dtype, device=self.device)

    def _weights_on_device(self) -> Optional[torch.Tensor]:
        return None if not isinstance(self.class_weights, torch.Tensor) else self.class_weights.to(self.device)

    # ----------------------------------------------------------------------------- evaluate / predict
    def __getattr__(self, name: str) -> Any:  # only for names not found: another tool's method gets ours
        raise AttributeError(unknown_method("Trainer", name, [n for n in dir(type(self)) if not n.startswith("_")]))

    @user_facing
    def evaluate(self, data: Any, targets: Any = None) -> dict[str, float]:
        """Loss and metrics on ``data`` (eval mode, no gradients); ``evaluate(x, y)`` as in Keras.
        Classification: loss, accuracy, macro_f1, top5_accuracy (more than 5 classes); regression:
        loss, rmse, mae, r2 (in the original units when ``target_normalization`` is set); plus your ``metrics``."""
        data = evaluation_data(self, encode_inputs(data if targets is None else (data, targets), self.table_encoding))
        return self.evaluate_split(data, split="evaluate")[0]

    def evaluate_split(self, data: Any, limit: Optional[int] = None, split: str = "evaluation"
                       ) -> tuple[dict[str, float], Any]:
        """``(metrics, meter)``; the meter has the confusion matrix of a classification split. In a DDP
        job each rank evaluates its share and the sums are added up: every rank gets the whole split's figures.
        ``split`` names the data in an error (``validation``, ``test``)."""
        rank, world_size = world()
        batches = make_batches(data, batch_size=self.eval_batch_size, shuffle=False, seed=0, device=self.device,
                               rank=rank, world_size=world_size)
        std = (self.target_normalization or {}).get("std")
        try:
            return evaluate_batches(self._eval_step(), batches, metrics=self.metrics, target_std=std, limit=limit)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            if not isinstance(exc, TrainwiseError):
                probe_inputs(self, batches, f"the {split} inputs")  # one line when the inputs are the cause
            raise

    @user_facing
    def predict(self, data: Any) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
        """Outputs for ``data`` (inputs alone, or labelled data whose targets are ignored) in input order,
        on the CPU; regression in original units; a dict of tensors when the model returns a dict."""
        split = self.split_batch if type(self).split_batch is not Trainer.split_batch else None
        result = predict_outputs(self.model, encode_inputs(data, self.table_encoding), batch_size=self.eval_batch_size, device=self.device,
                                 autocast_dtype=self.autocast_dtype, split=split)
        if self.target_normalization and isinstance(result, torch.Tensor):
            norm = self.target_normalization
            result = result * torch.tensor(norm["std"]) + torch.tensor(norm["mean"])
        return result


def _overrides_compute_loss(trainer: Trainer) -> bool:
    return type(trainer).compute_loss is not Trainer.compute_loss


def _plain_terms(trainer: Trainer) -> bool:
    """Neither ``loss_terms`` nor ``split_batch`` overridden: the batch loss's own step terms apply."""
    kind = type(trainer)
    return kind.loss_terms is Trainer.loss_terms and kind.split_batch is Trainer.split_batch


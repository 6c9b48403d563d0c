"""One ``fit``: the epoch/step loop and the state a checkpoint must hold to continue it exactly."""

from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from trainwise import checkpoint as ckpt
from trainwise.data import check_arrays
from trainwise.errors import CheckpointError, ConfigError, DataError, TrainwiseError
from trainwise.loader import as_tensors, make_batches
from trainwise.optim import set_lr, set_momentum
from trainwise.run_folder import MetricsLog, write_config, write_json
from trainwise.schedules import Schedule, build_schedule
from trainwise.trainer_state import check_resume_config
from trainwise.training_guards import DIVERGED_ADVICE
from trainwise.run_summary import build_summary, finish_run_folder

if TYPE_CHECKING:
    from trainwise.trainer import FitResult, Trainer

log = logging.getLogger(__name__)


class FitLoop:
    """Runs one ``Trainer.fit``; the trainer keeps configuration, this keeps the run's state."""

    def __init__(self, trainer: "Trainer", train: Any, val: Any, test: Any) -> None:
        self.t = trainer
        trainer._run = self
        self.val, self.test = self._prepare(val, "val"), self._prepare(test, "test")
        train = self._prepare(train, "train")
        self.batches = make_batches(train, batch_size=trainer.batch_size, shuffle=True, seed=trainer.seed,
                                    device=trainer.device, augment=trainer.augment, num_workers=trainer.num_workers)
        if len(self.batches) == 0:
            raise DataError("the training data is empty; give at least one sample")
        trainer.batches_per_epoch = len(self.batches)
        self.steps_per_epoch = math.ceil(len(self.batches) / trainer.accumulate)
        self.total_steps = trainer.epochs * self.steps_per_epoch
        if trainer.max_steps is not None:
            self.total_steps = min(self.total_steps, trainer.max_steps)
        self.schedule = self._build_schedule()
        trainer.schedule = self.schedule
        self.micro_weights = self._micro_batch_weights()
        self.cycle_momentum = self._can_cycle_momentum()
        self.sync_each_step = trainer.device.type == "cpu"
        self._reset_epoch_stats()
        self.window_loss, self.window_count = 0.0, 0
        self.train_seconds = 0.0
        self.train_samples = 0
        self.last_grad_norm: Optional[float] = None
        self.signal_received: Optional[int] = None
        self.restart_epoch = False
        self.mid_epoch = False
        self.epoch_done = False  # the current epoch's end (validation, on_epoch_end) has run
        self.group_size = 0  # micro-batches backpropagated since the last optimizer step

    # ------------------------------------------------------------------ setup
    def _prepare(self, source: Any, split: str) -> Any:
        """Check in-memory data (finite values, label range, model accepts the inputs) and shape
        regression targets like the model's outputs."""
        if source is None:
            return None
        tensors = as_tensors(source)
        if tensors is None:
            return source
        x, y = tensors
        if len(x) == 0:
            raise DataError(f"the {split} data is empty; give at least one sample")
        outputs = self._probe(x[:2])
        num_classes = outputs.shape[1] if self.t.task == "classification" and outputs.dim() == 2 else None
        if self.t.task == "classification" and y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise DataError(f"{split} targets are fractional but loss is cross_entropy; "
                                "use integer class labels, or a regression loss (mse, mae, huber)")
            y = y.long()
        check_arrays(x, y, task=self.t.task, num_classes=num_classes, where=split)
        if self.t.task == "regression":
            y = y.float().reshape(len(y), *outputs.shape[1:])
        return x, y

    def _probe(self, x: torch.Tensor) -> torch.Tensor:
        model = self.t.model
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return model(x.to(self.t.device))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise DataError(f"the model cannot take inputs of shape {tuple(x.shape[1:])}: {exc}; "
                            "check that the model's input size matches the data") from exc
        finally:
            model.train(was_training)

    def _build_schedule(self) -> Schedule:
        t = self.t
        if isinstance(t.schedule_spec, Schedule):
            return t.schedule_spec
        return build_schedule(t.schedule_spec, lr=t.lr, total_steps=self.total_steps,
                              steps_per_epoch=self.steps_per_epoch, warmup=t.warmup, **t.schedule_params)

    def _can_cycle_momentum(self) -> bool:
        """Momentum follows the schedule (1cycle, cyclic) when the optimizer has one to set."""
        if self.schedule.momentum_at(0) is None:
            return False
        if all("betas" in g or "momentum" in g for g in self.t.optimizer.param_groups):
            return True
        log.warning("%s has no momentum or beta1; the schedule's momentum cycle is ignored",
                    type(self.t.optimizer).__name__)
        return False

    def _micro_batch_weights(self) -> list[float]:
        """Each micro-batch's share of its accumulation group, by samples, so that accumulating
        k batches of b gives the gradient of one batch of k·b (the last, partial group included)."""
        sizes = self.batches.batch_sizes()
        k = self.t.accumulate
        weights = []
        for start in range(0, len(sizes), k):
            group = sizes[start:start + k]
            weights.extend(size / sum(group) for size in group)
        return weights

    def _reset_epoch_stats(self) -> None:
        self.loss_sum, self.loss_count = 0.0, 0
        self.loss_sum_device = torch.zeros((), dtype=torch.float64, device=self.t.device)
        self.clipped_steps, self.epoch_steps = 0, 0
        self.t.samples_seen_this_epoch = 0

    # ------------------------------------------------------------------ run
    def run(self, *, resume: Any, allow_config_changes: bool) -> "FitResult":
        t = self.t
        start = time.perf_counter()
        t.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(t.seed)
        if resume is None:
            _refuse_used_run_dir(t.run_dir)
        resume_path = t.checkpointer.resolve_resume(resume) if resume is not None else None
        metrics_path = t.run_dir / "metrics.csv"
        t.metrics_log = MetricsLog(metrics_path) if resume_path is None else MetricsLog.reopen(metrics_path)
        if resume_path is not None:
            self._resume(resume_path, allow_config_changes)
        if t.config is not None:  # after the resume's config check: a refused config must not replace the run's
            write_config(t.run_dir / "config.yaml", t.config)
        t.current_lr = math.nan  # force the schedule's lr (and momentum) for the first step
        self._apply_schedule()
        self.initial_state = copy.deepcopy(self.state_dict())
        previous_handlers = self._install_signal_handlers()
        try:
            t._fire("on_fit_start")
            self._epochs()
            if self.signal_received is not None and not t.should_stop:  # a run that had ended stays ended
                t.status = "interrupted"
                t.stop_reason = f"received {signal.Signals(self.signal_received).name}; saved a checkpoint to resume from"
                t.record_event("interrupted", t.stop_reason)
                t.save_checkpoint()
            t._fire("on_fit_end")
        except BaseException as exc:
            t.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            t.stop_reason = str(exc) or type(exc).__name__
            t._fire("on_exception", exc)
            self._finish(start, test_metrics={})
            self._restore_signal_handlers(previous_handlers)
            raise
        # The handlers stay through the test pass and the report: a SIGTERM now is noted and the
        # run still ends with its summary (its checkpoints are already written).
        try:
            test_metrics = self._test()
            return self._finish(start, test_metrics)
        finally:
            self._restore_signal_handlers(previous_handlers)

    def _epochs(self) -> None:
        t = self.t
        while t.epoch < t.epochs and not t.should_stop and self.signal_received is None:
            if t.max_steps is not None and t.step >= t.max_steps:
                break
            t._fire("on_epoch_start")
            epoch_start = time.perf_counter()
            completed = self._train_epoch()
            self.train_seconds += time.perf_counter() - epoch_start
            if self.restart_epoch:
                self.restart_epoch = False
                continue
            if t.status == "diverged" or (self.signal_received is not None and not completed):
                break
            self._end_epoch()
            t.epoch += 1

    def _train_epoch(self) -> bool:
        """One pass over the training batches; False when it ended early (signal, stop, max_steps)."""
        t, batches, model = self.t, self.batches, self.t.model
        model.train()
        if self.mid_epoch:
            self.mid_epoch = False
        else:
            batches.set_epoch(t.epoch)
            self._reset_epoch_stats()
            self.epoch_done = False
        accumulate, weights, sync = t.accumulate, self.micro_weights, self.sync_each_step
        last_index = len(batches) - 1
        fire_start, fire_end = t._dispatch["on_batch_start"], t._dispatch["on_batch_end"]
        skip = t.guard.skip_batches
        scaler_on = t.scaler.is_enabled()
        for xb, yb in batches:
            index = batches.position - 1
            boundary = (index + 1) % accumulate == 0 or index == last_index
            loss = None
            if not (skip and (t.epoch, index) in skip):
                for callback in fire_start:
                    callback.on_batch_start(t, (xb, yb))
                loss = self._forward_loss(xb, yb)
                n = yb.shape[0]
                if sync:
                    value = loss.item()
                    if not math.isfinite(value):
                        if self._on_nonfinite(f"loss is {value}", index, gradients_touched=False):
                            return False
                        loss = None  # skipped: this batch adds nothing to the step
                    else:
                        self.loss_sum += value * n
                        self.window_loss += value
                        if t.spikes.observe(value):
                            t.record_event("loss_spike", f"loss {value:.4g} at step {t.step} is over "
                                           f"{t.spikes.factor}x the recent median")
                else:
                    self.loss_sum_device += loss.detach() * n
            if loss is not None:
                self.loss_count += n
                self.window_count += 1
                t.samples_seen_this_epoch += n
                scaled = loss if accumulate == 1 else loss * weights[index]
                t.scaler.scale(scaled).backward() if scaler_on else scaled.backward()
                self.group_size += 1
            if boundary and self.group_size:
                self.group_size = 0
                if self._optimizer_step(index) or self.restart_epoch:
                    return False
            if loss is not None and fire_end:
                detached = loss.detach()  # one for all callbacks: a detach per callback costs a tensor each
                for callback in fire_end:
                    callback.on_batch_end(t, detached)
            if boundary and (t.should_stop or self.signal_received is not None or
                             (t.max_steps is not None and t.step >= t.max_steps)):
                return index == last_index
        return True

    def _forward_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        t = self.t
        if t.autocast_dtype is None:
            return t.loss_fn(t.model(xb), yb)
        with torch.autocast(t.device.type, dtype=t.autocast_dtype):
            return t.loss_fn(t.model(xb), yb)

    def _optimizer_step(self, index: int) -> bool:
        """Clip, step, zero the gradients, set the next step's lr. True when the epoch must end."""
        t, optimizer = self.t, self.t.optimizer
        scaler_on = t.scaler.is_enabled()
        if scaler_on:
            t.scaler.unscale_(optimizer)
        if t.grad_clip is not None:
            if t.grad_clip_mode == "norm":
                norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
                norm_value = norm.item()
                self.last_grad_norm = norm_value
                if not math.isfinite(norm_value) and not scaler_on:
                    optimizer.zero_grad(set_to_none=True)
                    return self._on_nonfinite(f"gradient norm is {norm_value}", index)
                self.clipped_steps += norm_value > t.grad_clip
            else:
                torch.nn.utils.clip_grad_value_(t.model.parameters(), t.grad_clip)
        for callback in t._dispatch["on_before_optimizer_step"]:
            callback.on_before_optimizer_step(t, optimizer)
        if scaler_on:
            scale = t.scaler.get_scale()
            t.scaler.step(optimizer)
            t.scaler.update()
            stepped = t.scaler.get_scale() >= scale  # a lowered scale means fp16 overflowed and the step was skipped
        else:
            optimizer.step()
            stepped = True
        optimizer.zero_grad(set_to_none=True)
        if stepped:
            t.step += 1
            self.epoch_steps += 1
            self._apply_schedule()
            if t.step % t.log_every_n_steps == 0:
                if not self.sync_each_step and not math.isfinite(self.loss_sum_device.item()):
                    return self._on_late_nonfinite(index)
                self._log_step()
        return False

    def _apply_schedule(self) -> None:
        t = self.t
        step = min(t.step, self.total_steps - 1)
        lr = self.schedule.lr_at(step) * t.guard.lr_scale
        if lr != t.current_lr:
            set_lr(t.optimizer, lr)
            t.current_lr = lr
        if self.cycle_momentum:
            set_momentum(t.optimizer, self.schedule.momentum_at(step))

    def _log_step(self) -> None:
        t = self.t
        values = {"lr": t.current_lr}
        if self.window_count:
            window = self.window_loss if self.sync_each_step else float("nan")
            if self.sync_each_step:
                values["loss"] = window / self.window_count
        if self.last_grad_norm is not None:
            values["grad_norm"] = self.last_grad_norm
        t.metrics_log.log(t.step, t.epoch, "train", values)
        self.window_loss, self.window_count = 0.0, 0

    # ------------------------------------------------------------------ non-finite values
    def _on_nonfinite(self, what: str, index: int, *, gradients_touched: bool = True) -> bool:
        """Apply the policy. True when the current epoch must end (rolled back or diverged).

        ``gradients_touched``: the bad value reached the gradients (a non-finite gradient norm), so
        the whole accumulation group is dropped; a bad loss is caught before backward."""
        t, guard = self.t, self.t.guard
        if gradients_touched or guard.policy != "skip":
            t.optimizer.zero_grad(set_to_none=True)
            self.group_size = 0
        where = f"{what} at step {t.step} (epoch {t.epoch}, batch {index})"
        if guard.policy == "skip":
            guard.skipped += 1
            t.record_event("nonfinite_skip", f"{where}; skipped that batch")
            return False
        if guard.policy == "rollback" and guard.can_roll_back():
            self._roll_back(where, index)
            return True
        gave_up = f" after {guard.rollbacks} rollbacks" if guard.policy == "rollback" else ""
        t.request_stop(f"training diverged: {where}{gave_up}; {DIVERGED_ADVICE}", status="diverged")
        return True

    def _on_late_nonfinite(self, index: int) -> bool:
        """On accelerators the loss is read only at log steps (no sync per step), so a bad update
        is found after it was applied: it cannot be skipped, only rolled back (or the run stopped)."""
        t, guard = self.t, self.t.guard
        where = (f"the loss became non-finite in the {t.log_every_n_steps} steps before step {t.step} "
                 f"(epoch {t.epoch}; on {t.device.type} the loss is read every train.log_every_n_steps steps)")
        t.optimizer.zero_grad(set_to_none=True)
        self.group_size = 0
        if guard.policy != "stop" and guard.can_roll_back():
            self._roll_back(where, index, skip_batch=False)
            return True
        t.request_stop(f"training diverged: {where}; {DIVERGED_ADVICE}", status="diverged")
        return True

    def _roll_back(self, where: str, index: int, *, skip_batch: bool = True) -> None:
        t, guard = self.t, self.t.guard
        bad_batch = (t.epoch, index)
        path = t.checkpointer.latest
        state = ckpt.load_checkpoint(path) if path is not None else copy.deepcopy(self.initial_state)
        rollbacks, lr_scale = guard.rollbacks + 1, guard.lr_scale * guard.lr_factor
        skip = guard.skip_batches | {bad_batch} if skip_batch else set(guard.skip_batches)
        # Rewinding the run must not erase its record: earlier rollbacks since that checkpoint stay.
        kept_events = [e for e in t.events[len(state["events"]):] if e["kind"] == "nonfinite_rollback"]
        kept_rows = [row for row in t.metrics_log.rows[state["metrics_rows"]:] if row[3] == "nonfinite_rollback"]
        self.load_state_dict(state)
        t.events.extend(kept_events)
        for step, epoch, split, metric, value in kept_rows:
            t.metrics_log.log(step, epoch, split, {metric: value})
        guard.rollbacks, guard.lr_scale, guard.skip_batches = rollbacks, lr_scale, skip
        t.current_lr = math.nan
        self._apply_schedule()
        source = path.name if path is not None else "the start of the run"
        t.record_event("nonfinite_rollback", f"{where}; rolled back to {source} (step {t.step}), "
                       f"lr scaled by {lr_scale:.3g}" + (", that batch will be skipped" if skip_batch else ""))
        self.restart_epoch = True

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self) -> None:
        t = self.t
        if not self.sync_each_step:
            self.loss_sum = self.loss_sum_device.item()
        train_loss = self.loss_sum / max(self.loss_count, 1)
        train_values = {"loss": train_loss}
        if t.grad_clip is not None and t.grad_clip_mode == "norm":
            train_values["clip_fraction"] = self.clipped_steps / max(self.epoch_steps, 1)
        t.metrics_log.log(t.step, t.epoch, "train", train_values)
        self.train_samples += self.loss_count
        logs = {f"train_{k}": v for k, v in train_values.items()}
        if self.val is not None:
            val_metrics = t.evaluate(self.val)
            t.metrics_log.log(t.step, t.epoch, "val", val_metrics)
            val_logs = {f"val_{k}": v for k, v in val_metrics.items()}
            t._fire("on_validation_end", val_logs)
            logs.update(val_logs)
        monitored = logs.get(t.schedule_monitor)
        if monitored is not None:
            self.schedule.observe(monitored)
        t.history.append({"epoch": t.epoch, **logs, "lr": t.current_lr})
        self.epoch_done = True  # before on_epoch_end, whose checkpoint must not replay this end
        t._fire("on_epoch_end", logs)

    def _test(self) -> dict[str, float]:
        t = self.t
        if self.test is None or t.status in ("failed", "diverged"):
            return {}
        meter = t.evaluate_meter(self.test)
        metrics = meter.compute()
        t.metrics_log.log(t.step, t.epoch, "test", metrics)
        if hasattr(meter, "confusion_matrix"):
            self.confusion = meter.confusion_matrix().tolist()
        return metrics

    def _finish(self, start: float, test_metrics: dict[str, float]) -> "FitResult":
        t = self.t
        summary = build_summary(t, self, test_metrics, wall_seconds=time.perf_counter() - start)
        t.metrics_log.close()
        return finish_run_folder(t, summary, test_metrics)

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self.signal_received is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self.signal_received = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        t = self.t
        return {
            "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "scaler": t.scaler.state_dict(),
            "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(t.callbacks)},
            "epoch": t.epoch, "step": t.step, "epoch_done": self.epoch_done, "loader": self.batches.state_dict(),
            "rng": ckpt.capture_rng_state(),
            "epoch_stats": {"loss_sum": self.loss_sum, "loss_count": self.loss_count,
                            "loss_sum_device": self.loss_sum_device.cpu(), "clipped_steps": self.clipped_steps,
                            "epoch_steps": self.epoch_steps, "samples": t.samples_seen_this_epoch,
                            "window_loss": self.window_loss, "window_count": self.window_count,
                            "train_samples": self.train_samples, "train_seconds": self.train_seconds},
            "metrics_rows": t.metrics_log.rows_written, "history": t.history, "events": t.events,
            "guard": t.guard.state_dict(), "spikes": t.spikes.state_dict(), "lr": t.current_lr,
            "status": t.status, "config": t.config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t = self.t
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state["scaler"]:
            t.scaler.load_state_dict(state["scaler"])
        for (key, cb_state), callback in zip(state["callbacks"].items(), t.callbacks):
            if key.split(":", 1)[1] != type(callback).__name__:
                raise CheckpointError(f"checkpoint callback {key} does not match {type(callback).__name__}; "
                                      "resume with the same callbacks the run started with")
            callback.load_state_dict(cb_state)
        t.epoch, t.step = state["epoch"], state["step"]
        self.batches.load_state_dict(state["loader"])
        stats = state["epoch_stats"]
        # A checkpoint taken after the last batch but before the epoch's end (validation, callbacks) must
        # still run that end; one taken after it starts the next epoch, whatever t.epoch said then.
        if state["epoch_done"]:
            t.epoch = self.batches.epoch + 1
            self.batches.set_epoch(t.epoch)
            self._reset_epoch_stats()
        else:
            self.loss_sum, self.loss_count = stats["loss_sum"], stats["loss_count"]
            self.loss_sum_device = stats["loss_sum_device"].to(t.device)
            self.clipped_steps, self.epoch_steps = stats["clipped_steps"], stats["epoch_steps"]
            t.samples_seen_this_epoch = stats["samples"]
        self.mid_epoch = not state["epoch_done"]
        self.epoch_done = False
        self.window_loss, self.window_count = stats["window_loss"], stats["window_count"]
        self.train_samples, self.train_seconds = stats["train_samples"], stats["train_seconds"]
        t.history = list(state["history"])
        t.events = list(state["events"])
        t.guard.load_state_dict(state["guard"])
        t.spikes.load_state_dict(state["spikes"])
        t.current_lr = state["lr"]
        ckpt.restore_rng_state(state["rng"])
        t.metrics_log.truncate(state["metrics_rows"])

    def _resume(self, path: Path, allow_config_changes: bool) -> None:
        t = self.t
        state = ckpt.load_checkpoint(path, map_location=t.device)
        changes = check_resume_config(state.get("config"), t.config, allow_config_changes)
        self.load_state_dict(state)
        t.checkpointer.adopt(Path(path))
        # Early stopping had ended the run: it stays ended (resuming only finishes it); any other
        # saved status (interrupted) continues.
        t.should_stop = state["status"] == "stopped_early"
        t.status = state["status"] if t.should_stop else "completed"
        if t.should_stop:
            t.stop_reason = next((e["message"] for e in reversed(t.events) if e["kind"] == "stopped_early"), None)
        t.record_event("resumed", f"resumed from {path} at step {t.step}, epoch {t.epoch}"
                       + (f"; changed: {'; '.join(changes)}" if changes else ""))
        if changes:  # a new lr or length: the schedule is rebuilt from the new config, at the same step
            self.schedule = self._build_schedule()
            t.schedule = self.schedule
            t.current_lr = math.nan
            self._apply_schedule()

    def save_checkpoint(self, *, best: bool = False) -> Path:
        t = self.t
        try:
            return t.checkpointer.save(self.state_dict(), step=t.step, epoch=t.epoch, best=best)
        except CheckpointError:
            t.status = "failed"
            raise


def _refuse_used_run_dir(run_dir: Path) -> None:
    """A new run never writes into another run's folder: its checkpoints and metrics would mix."""
    used = [name for name in ("summary.json", "metrics.csv", "checkpoints/manifest.json") if (run_dir / name).exists()]
    if used:
        raise ConfigError(f"run folder {run_dir} already holds a run ({', '.join(used)}); continue it with "
                          "--resume auto (Python: fit(..., resume='auto')) or choose a new --run-dir")

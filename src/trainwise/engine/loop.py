"""One ``fit``: the epoch/step loop. It owns the run's ``RunState`` and writes nothing else.

Per optimizer step: forward (under autocast when asked), loss, a finiteness check, backward scaled
for accumulation, clipping, ``optimizer.step()``, the schedule's lr for the next step. On the CPU
the loss is read every step (free there); on accelerators running sums stay on the device and are
read only at log time. What a checkpoint must hold to continue exactly is in ``resume.py``; what
happens on a NaN is in ``nonfinite.py``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Optional

import torch

from trainwise.checks import did_you_mean
from trainwise.distributed.ops import run_together, while_every_rank_has_a_batch
from trainwise.errors import ConfigError
from trainwise.data.loader import batch_length
from trainwise.engine.nonfinite import (DIVERGED_ADVICE, bad_data, cpu_copy, initial_weights_advice, no_gradient,
                                       refuse_nonfinite_validation)
from trainwise.optim import set_lr, set_momentum
from trainwise.engine.resume import LoopCheckpoint
from trainwise.schedules import Schedule
from trainwise.engine.fitplan import FitObjects, FitPlan
from trainwise.engine.signals import Interrupted, StopSignals
from trainwise.engine.step_mean import normalize_gradients, read_loss, whole_step_loss
from trainwise.engine.state import RunState
from trainwise.engine.timing import PhaseClock

log = logging.getLogger(__name__)


class FitLoop:
    """Trains ``objects.model`` on ``batches`` for ``state.max_epochs`` epochs (or ``max_steps``).

    ``plan`` holds the fit's decisions; ``objects`` the model, optimizer, scaler, guard and spike
    counter it steps; the trainer gives the callbacks and its verbs (``stop``, ``save_checkpoint``);
    the loop keeps the run's state in ``state`` and the epoch's running sums in itself.
    """

    def __init__(self, trainer: Any, batches: Any, val: Any, *, plan: FitPlan, objects: FitObjects, state: RunState,
                 schedule: Schedule, schedule_start: int, metrics_log: Any, checkpoints: Any, cycle_momentum: bool,
                 evaluate: Callable[[Any], dict[str, float]], clock: Optional[PhaseClock] = None) -> None:
        self.t, self.objects, self.batches, self.val = trainer, objects, batches, val
        self.state, self.plan, self.settings = state, plan, plan.step  # settings: accumulation, clipping, ...
        self.schedule, self.schedule_start, self.total_steps = schedule, schedule_start, plan.total_steps
        self.metrics_log, self.cycle_momentum, self.evaluate = metrics_log, cycle_momentum, evaluate
        self.step_sync = trainer.step_sync  # DDP: the ranks agree on each micro-batch's loss and on signals
        self.sync_each_step = self.settings.device.type == "cpu" or self.step_sync is not None
        self.sync_now = self.sync_each_step  # this epoch's mode: a checked replay reads each step's loss
        self.checked_until: float = 0  # a replay after a late non-finite reads each step before this one
        self.world_size = plan.world.size
        self.val_every = plan.val_every_n_steps  # validate every N optimizer steps (None: at each epoch's end)
        self.step_count: Any = 0.0  # counted positions of the optimizer step being accumulated
        self.reset_epoch_stats()
        self.window_loss, self.window_count = 0.0, 0
        self.last_grad_norm: Optional[Any] = None  # a float, or on accelerators a tensor read at log time
        self.signals = StopSignals(distributed=self.step_sync is not None)
        self.restart_epoch = False
        self.group_size = 0  # micro-batches backpropagated since the last optimizer step
        self.pending_logs: dict[str, float] = {}  # trainer.log() values for this epoch's logs
        self.ended_logs: Optional[dict[str, float]] = None  # during on_epoch_end: the logs of what just ended
        self.best_weights: Optional[dict[str, torch.Tensor]] = None
        self.torch_scheduler = trainer.torch_scheduler  # a user's torch scheduler sets the lrs itself
        self.checkpoints = LoopCheckpoint(self, checkpoints, objects)
        self.clock = clock if clock is not None else PhaseClock(self.settings.device)  # where the time goes

    def reset_epoch_stats(self) -> None:
        self.loss_sum, self.loss_count = 0.0, 0.0  # over counted positions (samples, or tokens)
        self.loss_sum_device = torch.zeros((), dtype=torch.float64, device=self.settings.device)
        self.loss_count_device = torch.zeros((), dtype=torch.float64, device=self.settings.device)
        self.clipped_steps, self.epoch_steps = 0, 0
        self.state.epoch_samples = 0

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        """Train until the epochs or steps are done, the run is stopped, or a signal arrives.
        Raises what the training raised, after marking the state failed or interrupted."""
        s, t = self.state, self.t
        self.apply_schedule(force=True)
        self.checkpoints.remember_initial()
        self.signals.install()  # restored by restore_signal_handlers(), after the run's files: a late SIGTERM is noted
        try:
            # loggers start on rank 0 alone: every rank learns at once when one of them fails
            run_together(lambda: t._fire("on_fit_start"), "starting its callbacks")
            try:
                self._epochs()
                if self.val_every is not None and s.last_val_step != s.step and s.status == "running" \
                        and self.signals.received is None:
                    self._validate_at_step()  # the last steps since a validation: the final model is measured
            except Interrupted as stop:  # no checkpoint of a half-ended epoch: the last one is resumed from
                latest = self.checkpoints.checkpointer.latest
                s.status, s.should_stop = "interrupted", True
                s.stop_reason = (f"received {stop.signal_name} during a validation (epoch {s.current_epoch}); "
                                 f"--resume auto continues from {latest.name if latest else 'the start'}")
                self.objects.record_event("interrupted", s.stop_reason)
            if self.signals.received is not None and not s.should_stop:  # a run that had ended stays ended
                s.status = "interrupted"
                s.stop_reason = f"received {self.signals.name()}; saved a checkpoint to resume from"
                self.objects.record_event("interrupted", s.stop_reason)
                t.save_checkpoint()
        except BaseException as exc:
            error = no_gradient(exc)  # a loss with no gradient: torch's words name no cause, ours do
            s.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            s.stop_reason = str(error) or type(error).__name__
            raise error  # the same exception when it is not that case
        if s.status == "running":
            s.status = "completed"
        self._restore_best()

    def restore_signal_handlers(self) -> None:
        self.signals.restore()

    def _epochs(self) -> None:
        s, t = self.state, self.t
        while s.epoch < s.max_epochs and not s.should_stop and self.signals.received is None:
            if s.max_steps is not None and s.step >= s.max_steps:
                break
            t._fire("on_epoch_start")
            self.clock.start_epoch()
            epoch_start = time.perf_counter()
            completed = self._train_epoch()
            s.train_seconds += time.perf_counter() - epoch_start
            self.clock.switch("other")
            if completed and not self.sync_now and not self.checkpoints.training_is_finite():
                self._on_late_nonfinite(len(self.batches) - 1)  # never an epoch's end (and its saves) on NaN
            if self.restart_epoch:
                self.restart_epoch = False
                continue
            if s.status == "diverged" or (self.signals.received is not None and not completed):
                break
            self._end_epoch()
            self.clock.end_epoch(s.epoch)

    def _train_epoch(self) -> bool:
        """One pass over the training batches; False when it ended early (signal, stop, max_steps)."""
        s, t, o, batches = self.state, self.t, self.objects, self.batches
        o.model.train()
        if s.batch == 0:  # a fresh epoch (a resumed one continues where its checkpoint was)
            batches.set_epoch(s.epoch)
            self.reset_epoch_stats()
        self.sync_now = self.sync_each_step or s.step < self.checked_until  # the epoch's sums: host + device
        accumulate, sync = self.settings.accumulate, self.sync_now
        world_size, whole_step = self.world_size, accumulate == 1  # a micro-batch is a whole step: its mean is known
        mean_form = whole_step and world_size == 1  # the loss may come as the step's mean (no count op, no multiply)
        last_index = -2 if getattr(batches, "stream", False) else len(batches) - 1  # a stream's end is found by reading
        if last_index == -2 and self.world_size > 1:  # shares of a stream may end apart: the ranks end a pass together
            batches = while_every_rank_has_a_batch(batches, self.settings.device, self._uneven_stream)
        fire_start, fire_end = t._dispatch["on_batch_start"], t._dispatch["on_batch_end"]
        skip = o.guard.skip_batches
        scaler_on = o.scaler.is_enabled()
        training_terms = t._training_terms
        switch = self.clock.switch  # four switches per micro-batch: data, forward/backward, optimizer, other
        switch("data")
        for batch in batches:
            switch("forward_backward")
            index = s.batch
            s.batch += 1
            boundary = (index + 1) % accumulate == 0 or index == last_index
            loss_sum = None
            if not (skip and (s.epoch, index) in skip):
                for callback in fire_start:
                    callback.on_batch_start(t, batch)
                loss_sum, count, is_mean = training_terms(batch, mean_form)
                if sync:
                    value, count = read_loss(loss_sum, count, self.step_sync, self.signals, is_mean)
                    if not math.isfinite(value):
                        if self._on_nonfinite(f"loss is {value}", index, gradients_touched=False, batch=batch):
                            return False
                        loss_sum = None  # skipped: this batch adds nothing to the step
                    else:
                        self.loss_sum += value * count
                        self.window_loss += value
                        if o.spikes.observe(value):
                            o.record_event("loss_spike", f"loss {value:.4g} at step {s.step} is over "
                                           f"{o.spikes.factor}x the recent median")
                else:
                    self.loss_sum_device += loss_sum.detach() * count if is_mean else loss_sum.detach()
                    self.loss_count_device += count
            if loss_sum is not None:
                self.loss_count += count if sync else 0
                self.step_count = self.step_count + count
                self.window_count += 1
                s.epoch_samples += batch_length(batch)
                loss = loss_sum if is_mean or not whole_step else whole_step_loss(loss_sum, count, world_size)
                o.scaler.scale(loss).backward() if scaler_on else loss.backward()
                self.group_size += 1
            if boundary and self.group_size:
                self.group_size = 0
                switch("optimizer")
                if self._optimizer_step(index) or self.restart_epoch:
                    return False
            switch("other")
            if loss_sum is not None and fire_end:  # one for all callbacks: the micro-batch's mean loss
                mean = loss.detach() if whole_step and world_size == 1 else loss_sum.detach() / count
                for callback in fire_end:
                    callback.on_batch_end(t, mean)
            if boundary and (s.should_stop or self.signals.received is not None or
                             (s.max_steps is not None and s.step >= s.max_steps)):
                return index == last_index
            switch("data")
        if self.group_size:  # a stream ended inside an accumulation group: the group's partial step
            self.group_size = 0
            switch("optimizer")
            if self._optimizer_step(s.batch - 1) or self.restart_epoch:
                return False
            switch("other")
        return True

    def _uneven_stream(self, ranks: int) -> None:
        self.objects.record_event("stream_end", f"epoch {self.state.epoch + 1}: {ranks} of {self.world_size} ranks "
                                  "still had a batch when another's share of the stream ended; those were left out")

    def _optimizer_step(self, index: int) -> bool:
        """Clip, step, zero the gradients, set the next step's lr. True when the epoch must end."""
        s, t, o, optimizer = self.state, self.t, self.objects, self.objects.optimizer
        scaler_on = o.scaler.is_enabled()
        if scaler_on:
            o.scaler.unscale_(optimizer)
        if self.settings.accumulate > 1:  # else the loss was divided before the backward pass
            normalize_gradients(o.model.parameters(), self.step_count, self.world_size)
        self.step_count = 0.0
        if self.settings.grad_clip is not None:
            if self.settings.grad_clip_mode == "norm":
                norm = torch.nn.utils.clip_grad_norm_(o.model.parameters(), self.settings.grad_clip)
                if not self.sync_now:  # no host sync per step: read at log time, caught like the loss
                    self.last_grad_norm = norm
                    self.checkpoints.finiteness.observe(norm)
                    self.clipped_steps += norm > self.settings.grad_clip
                else:
                    norm_value = norm.item()
                    self.last_grad_norm = norm_value
                    if not math.isfinite(norm_value) and not scaler_on:
                        optimizer.zero_grad(set_to_none=True)
                        return self._on_nonfinite(f"gradient norm is {norm_value}", index)
                    self.clipped_steps += norm_value > self.settings.grad_clip
            else:
                torch.nn.utils.clip_grad_value_(o.model.parameters(), self.settings.grad_clip)
        for callback in t._dispatch["on_before_optimizer_step"]:
            callback.on_before_optimizer_step(t, optimizer)
        if scaler_on:
            scale = o.scaler.get_scale()
            o.scaler.step(optimizer)
            o.scaler.update()
            stepped = o.scaler.get_scale() >= scale  # a lowered scale means fp16 overflowed and the step was skipped
        else:
            optimizer.step()
            stepped = True
        optimizer.zero_grad(set_to_none=True)
        if not stepped:
            return False
        s.step += 1
        self.epoch_steps += 1
        if self.torch_scheduler is not None and self.settings.schedule_interval == "step":
            self.torch_scheduler.step()
        self.apply_schedule()
        if s.step % self.settings.log_every_n_steps == 0:
            if not self.sync_now and not self.checkpoints.training_is_finite():
                return self._on_late_nonfinite(index)
            self._log_step()
        for callback in t._dispatch["on_step_end"]:
            callback.on_step_end(t)
        if self.val_every is not None and s.step % self.val_every == 0:
            self._validate_at_step()
        return False

    def apply_schedule(self, force: bool = False) -> None:
        """Set the lr (and momentum, when cycled) of the current step; each group keeps its ratio."""
        s, o = self.state, self.objects
        if self.torch_scheduler is not None:
            s.lr = o.optimizer.param_groups[0]["lr"]
            return
        step = min(max(s.step - self.schedule_start, 0), self.total_steps - 1)
        lr = self.schedule.lr_at(step) * o.guard.lr_scale
        if force or lr != s.lr:
            set_lr(o.optimizer, lr)
            s.lr = lr
        if self.cycle_momentum:
            set_momentum(o.optimizer, self.schedule.momentum_at(step))

    def _log_step(self) -> None:
        s = self.state
        values = {"lr": s.lr}
        if self.window_count and self.sync_now:
            values["loss"] = self.window_loss / self.window_count
        if self.last_grad_norm is not None:
            values["grad_norm"] = float(self.last_grad_norm)
        self.metrics_log.log(s.step, s.current_epoch, "train", values)
        self.window_loss, self.window_count = 0.0, 0

    # ------------------------------------------------------------------ non-finite values
    def _on_nonfinite(self, what: str, index: int, *, gradients_touched: bool = True, batch: Any = None) -> bool:
        """Apply the policy. True when the current epoch must end (rolled back or diverged).

        ``gradients_touched``: the bad value reached the gradients (a non-finite gradient norm), so
        the whole accumulation group is dropped; a bad loss is caught before backward (``batch``)."""
        s, t, guard = self.state, self.t, self.objects.guard
        if gradients_touched or guard.policy != "skip":
            self.objects.optimizer.zero_grad(set_to_none=True)
            self.group_size, self.step_count = 0, 0.0
        where = f"{what} at step {s.step} (epoch {s.current_epoch}, batch {index + 1})"
        data = bad_data(t, batch) if batch is not None and guard.policy != "skip" else None
        if data is not None:  # a data error: a rollback (and its smaller lr) would only hide it
            t.stop(f"training stopped: {where}: {data}, or set on_nonfinite='skip' (train.on_nonfinite: skip) to "
                   "drop such batches", status="diverged")
            return True
        if guard.policy == "skip":
            guard.skipped += 1
            note = ""
            if not self.sync_each_step and self.checked_until != math.inf:  # found by a checked replay
                self.checked_until = math.inf  # a batch can only be dropped before its update: read every step
                note = "; the loss is read at every step from now on, to skip such batches before their update"
            self.objects.record_event("nonfinite_skip", f"{where}; skipped that batch{note}")
            return False
        if guard.policy == "rollback" and guard.can_roll_back():
            self.checkpoints.roll_back(where, (s.epoch, index))
            self.restart_epoch = True
            return True
        gave_up = f" after {guard.rollbacks} rollbacks" if guard.policy == "rollback" else ""
        # at step 0 the weights are the initial ones (a rollback restores them too): the lr played no part
        advice = initial_weights_advice(t, batch) if s.step == 0 and batch is not None else DIVERGED_ADVICE
        t.stop(f"training diverged: {where}{gave_up}; {advice}", status="diverged")
        return True

    def _on_late_nonfinite(self, index: int) -> bool:
        """On accelerators the loss is read only at log steps (no sync per step), so a bad update
        is found after it was applied: it cannot be skipped, only rolled back (or the run stopped)."""
        s, t, guard = self.state, self.t, self.objects.guard
        where = (f"the loss became non-finite in the {self.settings.log_every_n_steps} steps before step {s.step} "
                 f"(epoch {s.current_epoch}; on {self.settings.device.type} the loss is read every "
                 "train.log_every_n_steps steps)")
        self.objects.optimizer.zero_grad(set_to_none=True)
        self.group_size, self.step_count = 0, 0.0
        if guard.policy != "stop" and guard.can_roll_back():
            # the replay up to here reads every step's loss: a NaN in the data is then named at its batch
            self.checked_until = max(self.checked_until, s.step)
            self.checkpoints.roll_back(f"{where}; the steps up to step {s.step} are replayed reading the loss at "
                                       "every step, to find the batch", None)
            self.restart_epoch = True
            return True
        t.stop(f"training diverged: {where}; {DIVERGED_ADVICE}", status="diverged")
        return True

    # ------------------------------------------------------------------ epoch end
    def _train_figures(self) -> dict[str, float]:
        """The epoch's training figures so far: the mean loss per counted position, the clipped share."""
        # sums of steps that read their loss (a checked replay) on the host, of the others on the device
        loss_sum, loss_count = self.loss_sum, self.loss_count
        if self.loss_count_device.item() > 0:
            loss_sum, loss_count = loss_sum + self.loss_sum_device.item(), loss_count + self.loss_count_device.item()
        values = {"loss": loss_sum / max(loss_count, 1e-12)}
        if self.settings.grad_clip is not None and self.settings.grad_clip_mode == "norm":
            values["clip_fraction"] = float(self.clipped_steps) / max(self.epoch_steps, 1)
        return values

    def _end_epoch(self) -> None:
        s = self.state
        train_values = self._train_figures()
        self.metrics_log.log(s.step, s.current_epoch, "train", {**train_values, "lr": s.lr})
        s.samples_seen += s.epoch_samples
        s.batch = 0  # the next checkpoint starts the next epoch
        if self.val_every is not None:  # validation, best and early stopping follow the steps, not epochs
            s.epoch += 1
            return
        logs = self._validate({f"train_{k}": v for k, v in train_values.items()})
        s.epoch += 1
        self._fire_epoch_end(logs)

    def _validate_at_step(self) -> None:
        """``val_every_n_steps``: a validation after this optimizer step, with everything that hangs on
        one (best, early stopping, checkpoints, a history row); callbacks see it as ``on_epoch_end``."""
        logs = self._validate({f"train_{k}": v for k, v in self._train_figures().items()})
        self._fire_epoch_end(logs)

    def _fire_epoch_end(self, logs: dict[str, float]) -> None:
        """``on_epoch_end``; a ``trainer.log()`` in it is of the epoch (or validation) that just ended."""
        self.ended_logs = logs
        try:
            self.t._fire("on_epoch_end", logs)
        finally:
            self.ended_logs = None

    def _validate(self, logs: dict[str, float]) -> dict[str, float]:
        """Validate (when there is validation data), update the best, the schedule's monitor and the
        history; returns the logs of this validation."""
        s, t = self.state, self.t
        if self.val is not None:
            self.clock.switch("evaluation")
            with self.signals.raising():  # a signal ends a validation at once (a long or endless one too)
                val_metrics = self.evaluate(self.val)
            self.clock.switch("other")
            self.metrics_log.log(s.step, s.current_epoch, "val", val_metrics)
            refuse_nonfinite_validation(self, val_metrics.get("loss"), logs.get("train_loss"))
            val_logs = {f"val_{k}": v for k, v in val_metrics.items()}
            t._fire("on_validation_end", val_logs)
            logs.update(val_logs)
        s.last_val_step = s.step
        logs.update(self.pending_logs)
        self.pending_logs = {}
        self._update_best(logs)
        monitored = logs.get(self.settings.schedule_monitor)
        if monitored is not None:
            self.schedule.observe(monitored)
        s.history.append({"epoch": s.current_epoch, "step": s.step, **logs, "lr": s.lr})
        if self.torch_scheduler is not None and self.settings.schedule_interval == "epoch":
            self._step_torch_scheduler(monitored)
        return logs

    def _step_torch_scheduler(self, monitored: Optional[float]) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        if isinstance(self.torch_scheduler, ReduceLROnPlateau):
            if monitored is None:
                raise ConfigError(f"ReduceLROnPlateau needs schedule_monitor {self.settings.schedule_monitor!r}, which "
                                  "this run does not log; set schedule_monitor='train_loss' or pass validation data")
            self.torch_scheduler.step(monitored)
        else:
            self.torch_scheduler.step()
        self.apply_schedule()

    def _update_best(self, logs: dict[str, float]) -> None:
        best = self.state.best
        value = logs.get(best.monitor)
        if value is None:
            available = ", ".join(sorted(logs))
            raise ConfigError(f"early stopping / best checkpoint monitors {best.monitor!r}, which this run does not "
                          f"log{did_you_mean(best.monitor, logs)}; available metrics: {available}")
        if best.update(value, self.state.current_epoch, self.state.step) and best.restore:
            self.best_weights = cpu_copy(self.objects.model.state_dict())  # off the device

    def _restore_best(self) -> None:
        s, best = self.state, self.state.best
        if best.restore and self.best_weights is not None and best.step != s.step:
            self.objects.model.load_state_dict(self.best_weights)
            where = f"step {best.step}" if self.val_every is not None else f"epoch {best.epoch}"
            of = f"of {s.step} steps" if self.val_every is not None else f"of {s.epoch}"
            self.objects.record_event("restore_best", f"restored the weights of {where} "
                                      f"({best.monitor} {best.value:.6g}), the best {of}")

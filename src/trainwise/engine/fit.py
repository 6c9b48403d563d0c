"""``Trainer.fit`` from start to end: set the run up, run the loop, test, write the run folder.

Order at the end: training stops → the best weights are restored → the test pass → the
trivial-predictor check → summary.json, schedule.csv, the report → ``on_fit_end``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import torch

from trainwise import checkpoint as ckpt
from trainwise.distributed.job import agreed_run_dir, writing_run_folder
from trainwise.distributed.ops import barrier, broadcast, is_main, main_then_all, run_together, world
from trainwise.distributed.launch import step_sync_for, training_model
from trainwise.errors import ConfigError, DataError
from trainwise.engine.fitplan import (FitObjects, FitPlan, FitSettings, StepSettings, World, decide_rules,
                                      first_batch, probe_inputs)
from trainwise.engine.plan import build_run_schedule, check_targets, fallback_lr, find_lr, split_data
from trainwise.data.loader import make_batches
from trainwise.models.layers import has_batchnorm
from trainwise.engine.loop import FitLoop
from trainwise.engine.python_run import describe_data, describe_run, finish_files
from trainwise.engine.resume import Checkpointer, check_resume_config, check_world_size
from trainwise.runfolder.record import start_record
from trainwise.runfolder.files import MetricsLog, refuse_used_run_dir, write_config, write_json
from trainwise.engine.summary import build_summary, trivial_predictor_warning
from trainwise.engine.signals import Interrupted, interrupting
from trainwise.engine.timing import PhaseClock


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns. ``history`` has one dict per epoch (``epoch`` counts from 1)."""

    status: str
    history: list[dict[str, float]]
    best_val_loss: Optional[float]
    best_epoch: Optional[int]
    run_dir: Optional[Path]
    summary: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def run_fit(t: Any, train: Any, val: Any, test: Any, *, resume: Union[str, Path, None],
            allow_config_changes: bool) -> FitResult:
    """One fit; in a DDP job every rank runs it and rank 0 alone writes the run folder, holding its
    lock (``distributed.job``) for the whole fit."""
    if getattr(t, "_fits", 0) == 0:
        t.run_dir = agreed_run_dir(t.run_dir)
    with writing_run_folder(t.run_dir):
        return _run_fit(t, FitSettings.of(t), train, val, test, resume=resume,
                        allow_config_changes=allow_config_changes)


def _run_fit(t: Any, settings: FitSettings, train: Any, val: Any, test: Any, *, resume: Union[str, Path, None],
             allow_config_changes: bool) -> FitResult:
    start = time.perf_counter()
    clock = PhaseClock(settings.device, start=start)  # where the time goes (summary.json "timings")
    first = getattr(t, "_fits", 0) == 0
    rank, world_size = world()
    if first and resume is None:
        main_then_all(lambda: refuse_used_run_dir(t.run_dir))
    barrier()  # every rank has looked at the folder before rank 0 writes into it
    if first:
        torch.manual_seed(settings.seed)
        t.checkpointer = Checkpointer(t.run_dir / "checkpoints", settings.keep_last, write=rank == 0)
    (train, sample), (val, _), (test, _) = (split_data(data, name) for data, name in
                                            ((train, "train"), (val, "val"), (test, "test")))
    min_share = _min_share(t.model)
    batches = make_batches(train, batch_size=settings.batch_size, shuffle=True, seed=settings.seed,
                           device=settings.device, augment=settings.augment, num_workers=settings.num_workers,
                           sampler=settings.sampler, rank=rank, world_size=world_size, min_share=min_share)
    _note_left_out_for_batchnorm(t, batches, min_share)
    batch_count = None if getattr(batches, "stream", False) else len(batches)  # a stream: unknown
    lacks = getattr(batches, "integers_lack", None)  # in-memory data: are all target positions counted?
    t.batch_loss.all_counted = lacks is not None and lacks(t.batch_loss.ignore_index)
    if batch_count == 0:
        raise DataError("the training data is empty; give at least one sample")
    output_shape = _decide(t, batches, train)
    train, val, test = (_checked(t, data, name, output_shape) for data, name in
                        ((train, "train"), (val, "val"), (test, "test")))
    for data, name in ((val, "validation"), (test, "test")):  # in memory: inputs of another size, said now
        rows = tuple(part[:2] for part in data) if isinstance(data, tuple) else \
            {key: part[:2] for key, part in data.items()} if isinstance(data, dict) else None  # two rows, not a copy
        if rows is not None:
            probe_inputs(t, make_batches(rows, batch_size=2, shuffle=False, seed=0, device=settings.device),
                         f"the {name} inputs")
    steps_per_epoch, total_steps = _length(settings, batch_count)
    resume_path = broadcast(t.checkpointer.resolve_resume(resume) if resume is not None and rank == 0 else None)
    saved = ckpt.load_checkpoint(resume_path, map_location=settings.device) if resume_path is not None else None
    check_world_size(saved, world_size)
    if first and saved is None:  # a fresh run, or resume="auto" that found nothing yet: init= applies
        _initialize(t, settings, sample)
    try:  # DDP: rank 0's range test; one process: a signal during it ends the run before training
        with interrupting(enabled=world_size == 1):
            reference_lr = t.reference_lr = broadcast(_settle_lr(t, settings, batches, saved, total_steps))
    except Interrupted as stop:
        return _interrupted_before_training(t, settings, start, stop.signal_name, sample, output_shape)
    if t.config is not None:  # the resolved config records the lr actually used
        t.config = {**t.config, "optimizer": {**t.config.get("optimizer", {}), "lr": reference_lr}}
    else:  # a Python run is described like a CLI run, so that its resume checks the config too
        t.config = describe_run(t, reference_lr)
    state = t.state
    if first:
        state.best = replace(t.best)
        state.max_epochs, state.max_steps = settings.epochs, settings.max_steps
    else:  # a second fit continues the run for `epochs` more epochs
        state.start_step, state.start_epoch = state.step, state.epoch
        state.max_epochs = state.epoch + settings.epochs
        state.max_steps = None if settings.max_steps is None else state.step + settings.max_steps
        state.status, state.stop_reason, state.should_stop = "running", None, False
    state.batches_per_epoch, state.world_size = batch_count, world_size
    schedule = build_run_schedule(settings.schedule_spec, lr=reference_lr, total_steps=total_steps,
                                  steps_per_epoch=steps_per_epoch or total_steps, warmup=settings.warmup,
                                  params=settings.schedule_params,
                                  record=t.record_event)
    if first:
        _check_monitors(t, settings, val, schedule)
    metrics_path = t.run_dir / "metrics.csv" if rank == 0 else None  # other ranks keep their rows in memory
    metrics_log = (MetricsLog(metrics_path) if first and saved is None or metrics_path is None else
                   MetricsLog.reopen(metrics_path) if saved is not None else MetricsLog.append_to(metrics_path))
    t.step_sync = step_sync_for(settings.device, world_size)
    plan = t.plan = FitPlan(call=t.batch_loss.call, loss=t.loss_rule, output_shape=output_shape,
                            world=World(rank, world_size), steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                            val_every_n_steps=settings.val_every_n_steps, step=StepSettings(
                                settings.accumulate, settings.grad_clip, settings.grad_clip_mode,
                                settings.log_every_n_steps, settings.device, settings.schedule_monitor,
                                settings.schedule_interval),
                            source=batches.describe() if hasattr(batches, "describe") else None)
    loop = FitLoop(t, batches, val, plan=plan, objects=fit_objects(t, settings), state=state, schedule=schedule,
                   schedule_start=state.step, metrics_log=metrics_log, checkpoints=t.checkpointer,
                   cycle_momentum=_cycle_momentum(t, settings, schedule), evaluate=lambda data: t.evaluate_split(data, split="validation")[0], clock=clock)
    t._loop, t._fits = loop, getattr(t, "_fits", 0) + 1
    if saved is not None:
        changes = check_resume_config(saved.get("config"), t.config, allow_config_changes)
        loop.checkpoints.resume(resume_path, saved)
        replayed = (f"; the stream is replayed to batch {state.batch} of its pass (exact for a deterministic "
                    "stream)" if batch_count is None and state.batch else "")
        t.record_event("resumed", f"resumed from {resume_path} at step {state.step}, epoch {state.epoch}"
                       + (f"; changed: {'; '.join(changes)}" if changes else "") + replayed)
    t.run_record = None
    run_together(lambda: _start_run_folder(t, settings, sample, output_shape), "writing the run folder")
    try:
        with training_model(t, world_size):
            loop.run()
    except BaseException as exc:
        t._fire("on_exception", exc)
        loop.restore_signal_handlers()
        _finish(t, settings, loop, start, test_metrics={}, confusion=None, event=None)
        raise
    try:
        test_metrics, confusion = _test(t, loop, test)
        _check_trivial(t, test_metrics, confusion)
        return _finish(t, settings, loop, start, test_metrics, confusion)
    finally:
        loop.restore_signal_handlers()


def _start_run_folder(t: Any, settings: FitSettings, sample: Any, output_shape: Any) -> None:
    """Rank 0 writes the run folder's first files, run.json and the index (a failure reaches every rank)."""
    if is_main():
        _write_description(t, sample, output_shape)
        t.run_record = start_record(t.run_dir, name=settings.name, config=t.config, device=settings.device,
                                    model=t.model)


def fit_objects(t: Any, settings: FitSettings) -> FitObjects:
    """The Trainer's objects this fit trains and saves, once its optimizer, config and lr are settled."""
    return FitObjects(model=t.model, optimizer=t.optimizer, scaler=t.scaler, guard=t.guard, spikes=t.spikes,
                      callbacks=tuple(t.callbacks), device=settings.device, config=t.config,
                      reference_lr=t.reference_lr, record_event=t.record_event)


def _length(settings: FitSettings, batch_count: Optional[int]) -> tuple[Optional[int], int]:
    """``(steps_per_epoch, total_steps)``; a stream has no steps per epoch, and a schedule that spans
    the whole run then needs ``max_steps`` (one clear error before training otherwise)."""
    if batch_count is not None:
        steps_per_epoch = math.ceil(batch_count / settings.accumulate)
        total = settings.epochs * steps_per_epoch
        return steps_per_epoch, total if settings.max_steps is None else min(total, settings.max_steps)
    if settings.max_steps is not None:
        return None, settings.max_steps
    spec = settings.schedule_spec
    if settings.torch_scheduler is None and not (isinstance(spec, str) and spec in ("constant", "plateau")):
        name = spec if isinstance(spec, str) else type(spec).__name__
        raise ConfigError(f"the training data is a stream of unknown length and schedule {name!r} spans the whole "
                          "run; pass max_steps=N (optimizer steps; config train.max_steps), or schedule='constant'")
    return None, 1


def _min_share(model: Any) -> int:
    """The fewest samples a process's share of a training batch may hold: BatchNorm cannot train on one."""
    return 2 if has_batchnorm(model) else 1


def _note_left_out_for_batchnorm(t: Any, batches: Any, min_share: int) -> None:
    """Say so when the last training batch is left out because BatchNorm cannot train on it."""
    plan = getattr(batches, "plan", None)
    if min_share == 1 or plan is None:
        return
    left_out = plan.samples_left_out() - replace(plan, min_share=1).samples_left_out()
    if left_out:
        processes = f", shared by {plan.world_size} processes" if plan.world_size > 1 else ""
        t.record_event("data", f"the last training batch of each epoch would hold {left_out} sample(s) "
                               f"({plan.num_samples} samples in batches of {plan.batch_size}{processes}), and the "
                               "model has BatchNorm, which cannot train on one sample: that batch is left out (other "
                               "samples each epoch: the order is shuffled)")


def run_lr_find(t: Any, train: Any) -> dict[str, Any]:
    settings = FitSettings.of(t)
    train = split_data(train, "train")[0]
    batches = make_batches(train, batch_size=settings.batch_size, shuffle=True, seed=settings.seed,
                           device=settings.device, min_share=_min_share(t.model))
    _decide(t, batches, train)
    _ensure_optimizer(t, settings)
    return find_lr(t.model, t.optimizer, batches, compute_loss=t.compute_loss, device=settings.device,
                   precision=settings.precision, run_dir=t.run_dir, record=lambda kind, message: None, png=True,
                   settings=settings.lr_find)[1]


def _settle_lr(t: Any, settings: FitSettings, batches: Any, saved: Optional[dict],
               total_steps: Optional[int] = None) -> float:
    """The reference lr (the largest group's) and each group's ``lr_scale`` relative to it."""
    _ensure_optimizer(t, settings)
    groups = t.optimizer.param_groups
    if not all("lr_scale" in g for g in groups):  # a user's optimizer: its groups keep their ratios
        top = max(g["lr"] for g in groups)
        for g in groups:
            g["lr_scale"] = g["lr"] / top if top > 0 else 1.0
    if isinstance(settings.lr, float):  # on resume too: a changed lr is refused, or allowed, by the config check
        return settings.lr
    if saved is not None and saved.get("reference_lr") is not None:  # lr=auto resumes at the lr it found
        return float(saved["reference_lr"])
    if getattr(t, "reference_lr", None) is not None:  # a second fit starts from the first one's reference lr,
        return t.reference_lr                         # not from the lr its schedule had decayed the groups to
    if settings.lr is None and settings.user_optimizer:
        return max(g["lr"] for g in groups)
    # the range test sized to the run and reused by a rerun (trainwise.lr.budget)
    from trainwise.lr.budget import budgeted_find_lr

    run_dir = t.run_dir if is_main() else None
    suggestion, summary = budgeted_find_lr(t, batches, total_steps, run_dir, lambda finder_settings: find_lr(
        t.model, t.optimizer, batches, compute_loss=t.compute_loss, device=settings.device,
        precision=settings.precision, run_dir=run_dir, record=t.record_event, settings=finder_settings))
    t.summary_extra["lr_finder"] = summary
    if suggestion is None:
        suggestion = fallback_lr(settings.optimizer_spec)
        t.warn(f"lr='auto': the lr range test gave no suggestion ({summary.get('reason')}); trained at lr "
               f"{suggestion:g} instead — see the range test in report.html and set lr yourself")
    t.reference_lr = suggestion
    return suggestion


def _ensure_optimizer(t: Any, settings: FitSettings) -> None:
    """A named optimizer is built on first use (its lr is set by the schedule, or found by lr=auto)."""
    if t.optimizer is None:
        from trainwise.optim import build_optimizer

        t.optimizer = build_optimizer(t.model, settings.optimizer_spec, lr=1e-3, **settings.optimizer_args)


def _cycle_momentum(t: Any, settings: FitSettings, schedule: Any) -> bool:
    """Momentum follows the schedule (1cycle, cyclic) only when asked and the optimizer has one."""
    if not settings.cycle_momentum or schedule.momentum_at(0) is None:
        return False
    if all("betas" in g or "momentum" in g for g in t.optimizer.param_groups):
        return True
    t.record_event("schedule", f"{type(t.optimizer).__name__} has no momentum or beta1; the schedule's "
                   "momentum cycle is ignored")
    return False


def _initialize(t: Any, settings: FitSettings, sample: Optional[torch.Tensor]) -> None:
    if settings.init is None:
        return
    from trainwise.models.init import initialize
    from trainwise.models import activation_of

    initialize(t.model, settings.init, activation=activation_of(t.model), sample_input=sample)


def _decide(t: Any, batches: Any, train: Any) -> Optional[tuple[int, ...]]:
    """The run's batch and loss rules from the first batch (once per Trainer), with balanced class
    weights counted from the training labels; returns the outputs' shape per sample."""
    # in memory, every training target tells soft labels and 0/1 labels apart, not the first batch alone
    values = train[1] if isinstance(train, tuple) and len(train) > 1 and isinstance(train[1], torch.Tensor) else None
    rule, output_shape = decide_rules(t, first_batch(batches), user_loss=t._overrides_loss(), values=values)
    if t.class_weights == "balanced":
        if rule is None or rule.task != "classification" or rule.soft_labels:
            raise ConfigError("class_weights='balanced' needs classification data with integer class labels; "
                              "pass a list of weights, one per class, instead")
        from trainwise.data import balanced_class_weights

        labels = train[1] if isinstance(train, tuple) else _all_targets(t, batches)
        labels = labels[labels != rule.ignore_index].long().flatten().cpu()
        t.class_weights = balanced_class_weights(labels, output_shape[0 if rule.class_axis == 1 else -1])
        t.batch_loss.class_weights, t.batch_loss.rule = t._weights_on_device(), None  # decided again, weighted
        rule, output_shape = decide_rules(t, first_batch(batches), user_loss=t._overrides_loss())
    return output_shape


def _all_targets(t: Any, batches: Any) -> torch.Tensor:
    """Every training target, read once by a pass over the batches (no model call)."""
    if getattr(batches, "stream", False):
        raise ConfigError("class_weights='balanced' counts the training labels, which a stream cannot give "
                          "up front; pass a list of weights, one per class")
    batches.set_epoch(0)
    return torch.cat([t.split_batch(batch)[1].flatten() for batch in batches])


def _checked(t: Any, data: Any, split: str, output_shape: Optional[tuple[int, ...]]) -> Any:
    rule = t.loss_rule
    if rule is None or data is None:
        return data
    classes = output_shape[0 if rule.class_axis == 1 else -1] if rule.task == "classification" and output_shape \
        else None
    return check_targets(data, split, task=rule.task, positions=rule.positions, soft=rule.soft_labels,
                         num_classes=classes, ignore_index=rule.ignore_index)


def evaluation_data(t: Any, data: Any) -> Any:
    """``evaluate()``'s data checked as ``fit`` checks its splits (labels in range, integer-valued float
    labels as indices, no NaN inputs), once the run's rules are decided; other data as given."""
    if t.plan is None or t.loss_rule is None:
        return data
    return _checked(t, split_data(data, "evaluate")[0], "evaluate", t.plan.output_shape)


def _check_monitors(t: Any, settings: FitSettings, val: Any, schedule: Any) -> None:
    """Lightning's sanity pass: two validation batches, so that a monitor this run will never log
    (a typo) fails now with the names it does log, not after the first epoch."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    from trainwise.checks import did_you_mean
    from trainwise.schedules import PlateauSchedule

    clipped = settings.grad_clip is not None and settings.grad_clip_mode == "norm"
    names = {"train_loss"} | ({"train_clip_fraction"} if clipped else set())
    if val is not None:
        names |= {f"val_{name}" for name in t.evaluate_split(val, limit=2, split="validation")[0]}
    watched = [("early stopping / best checkpoint", t.state.best.monitor)]
    plateau = isinstance(schedule, PlateauSchedule) or isinstance(getattr(schedule, "schedule", None), PlateauSchedule)
    if plateau or isinstance(settings.torch_scheduler, ReduceLROnPlateau):
        watched.append(("the reduce-on-plateau schedule (schedule_monitor)", settings.schedule_monitor))
    for who, name in watched:
        if name.startswith(("train_", "val_")) and name not in names:
            raise ConfigError(f"{who} monitors {name!r}, which this run does not log{did_you_mean(name, names)}; "
                              f"available metrics: {', '.join(sorted(names))}")


def _write_description(t: Any, sample: Optional[torch.Tensor], output_shape: Optional[tuple[int, ...]]) -> None:
    """config.yaml (the lr actually used) and, for a Python run, data.json: what evaluate/predict need."""
    write_config(t.run_dir / "config.yaml", t.config)
    if not (t.run_dir / "data.json").exists():
        write_json(t.run_dir / "data.json", describe_data(t, sample, output_shape))


def _test(t: Any, loop: FitLoop, test: Any) -> tuple[dict[str, float], Any]:
    s = loop.state
    if test is None or s.status in ("failed", "diverged", "pruned", "interrupted"):  # a signal asked to stop
        return {}, None
    loop.clock.switch("evaluation")
    try:
        with interrupting(enabled=loop.world_size == 1):
            metrics, meter = t.evaluate_split(test, split="test")
    except Interrupted as stop:  # training is over and saved: the run keeps its status, without test figures
        t.record_event("test_interrupted", f"received {stop.signal_name} during the test pass, after the last "
                       f"training step: no test figures; trainwise evaluate {t.run_dir} --split test computes them")
        return {}, None
    finally:
        loop.clock.switch("other")
    loop.metrics_log.log(s.step, s.epoch, "test", metrics)
    confusion = meter.confusion_matrix() if hasattr(meter, "confusion_matrix") else None
    return metrics, confusion


def _interrupted_before_training(t: Any, settings: FitSettings, start: float, signal_name: str, sample: Any,
                                 output_shape: Any) -> FitResult:
    """A signal during the LR range test: the run is recorded (run.json, the index, summary.json) as
    interrupted with nothing trained and no checkpoint, so ``--resume auto`` starts it over."""
    s = t.state
    s.status = "interrupted"
    s.stop_reason = (f"received {signal_name} during the LR range test, before the first training step: nothing "
                     "was trained; run the command again (with --resume auto it starts over in this folder)")
    t.record_event("interrupted", s.stop_reason)
    t.config = t.config if t.config is not None else describe_run(t, None)
    summary = build_summary(s, task=t.task, test_metrics={}, wall_seconds=time.perf_counter() - start,
                            extra={"lr": None, "device": str(settings.device), **t.summary_extra})
    _start_run_folder(t, settings, sample, output_shape)
    write_json(t.run_dir / "summary.json", summary)
    t.run_record.finish("interrupted", config=t.config, summary=summary)
    return FitResult(status=s.status, history=[], best_val_loss=None, best_epoch=None, run_dir=t.run_dir,
                     summary=summary, warnings=list(s.warnings))


def _check_trivial(t: Any, test_metrics: dict[str, float], confusion: Any) -> None:
    metrics, split = test_metrics, "test"
    loss = metrics.get("loss")
    if loss is not None and not math.isfinite(loss):  # figures read off NaN outputs say nothing of the model
        t.warn(f"the test loss is {loss}: the model's outputs on the test data are NaN or Inf, so the test figures "
               "mean nothing; check the test inputs for NaN or Inf (trainwise doctor, data.nonfinite) and what "
               "model.eval() changes (BatchNorm running statistics, a forward that branches on self.training)")
        return
    if not metrics and t.state.history:
        last = t.state.history[-1]
        metrics, split = {k[4:]: v for k, v in last.items() if k.startswith("val_")}, "validation"
    # counts divided in float64, as accuracy is: a float32 ratio (0.9449999928) let an exact majority model pass
    majority = int(confusion.sum(dim=1).max()) / int(confusion.sum()) if confusion is not None else None
    warning = trivial_predictor_warning(t.task, metrics, split, majority, lr_was_auto=t.lr == "auto")
    if warning:
        t.warn(warning)


def _finish(t: Any, settings: FitSettings, loop: FitLoop, start: float, test_metrics: dict[str, float], confusion: Any,
            event: Optional[str] = "on_fit_end") -> FitResult:
    s = loop.state
    extra = {"lr": t.reference_lr, "precision": settings.precision, "device": str(settings.device),
             "loss_spikes": t.spikes.count, "nonfinite_rollbacks": t.guard.rollbacks,
             "nonfinite_skipped": t.guard.skipped, **t.summary_extra}
    if confusion is not None:
        extra["confusion_matrix"] = confusion.tolist()
    if settings.class_names:
        extra.setdefault("class_names", list(settings.class_names))
    now = time.perf_counter()
    extra["timings"] = loop.clock.finish(now)
    summary = build_summary(s, task=t.task, test_metrics=test_metrics, wall_seconds=now - start, extra=extra)
    loop.metrics_log.close()
    if is_main():
        write_json(t.run_dir / "summary.json", summary)
        if getattr(t, "run_record", None) is not None:  # run.json and the index: the final status
            t.run_record.finish(str(summary["status"]), config=t.config, summary=summary)
        finish_files(t, loop, summary)
    t._loop = None
    if event:
        t._fire(event)
    return FitResult(status=s.status, history=list(s.history), best_val_loss=summary["best_val_loss"],
                     best_epoch=summary["best_epoch"], run_dir=t.run_dir, summary=summary,
                     test_metrics=test_metrics, warnings=list(s.warnings))


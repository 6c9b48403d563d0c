"""The training checks, run through the real ``Trainer`` (the same loop, loss and batches as a
fit) on a deep copy of the user's model with a fresh optimizer: one step, overfitting a few
samples, and the lr against the range test's suggestion."""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from trainwise.callbacks import Callback, CheckpointSaver
from trainwise.doctor.report import Check
from trainwise.doctor.thresholds import Thresholds
from trainwise.errors import TrainwiseError


class NoCheckpoints(CheckpointSaver):
    """Replaces the built-in saver: the doctor's short fits write no checkpoints."""

    def on_step_end(self, trainer: Any) -> None:
        return None

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        return None


class StopWhenFit(Callback):
    """Ends the overfit fit once the samples are learned (eval-mode accuracy and loss on them)."""

    def __init__(self, accuracy: Optional[float], loss: float) -> None:
        self.accuracy, self.loss = accuracy, loss

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        acc, loss = logs.get("val_accuracy"), logs.get("val_loss")
        if (self.accuracy is None or (acc is not None and acc >= self.accuracy)) and \
                loss is not None and loss <= self.loss:
            trainer.stop("learned the samples", status="completed")


@dataclass
class Setup:
    """What the user trains with: their model and the Trainer settings the doctor's fits reuse."""

    model: nn.Module
    loss: Any
    optimizer: Any  # a name or the user's optimizer (rebuilt on each copy)
    lr: Any
    batch_size: int
    seed: int = 0
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)

    def copy_with_optimizer(self) -> tuple[nn.Module, Any, int]:
        """A deep copy of the model and an optimizer over its parameters (the user's optimizer's
        class, groups and hyperparameters, fresh state); and how many of the user optimizer's
        parameters are not the model's."""
        work = copy.deepcopy(self.model)
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            return work, self.optimizer, 0
        index = {id(p): i for i, p in enumerate(self.model.parameters())}
        copies = list(work.parameters())
        groups, foreign = [], 0
        for group in self.optimizer.param_groups:
            params = [copies[index[id(p)]] for p in group["params"] if id(p) in index]
            foreign += sum(id(p) not in index for p in group["params"])
            if params:
                groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
        if not groups:
            return work, None, foreign
        try:
            fresh = type(self.optimizer)(groups, **self.optimizer.defaults)
        except TypeError:
            fresh = type(self.optimizer)(groups)
        return work, fresh, foreign

    def trainer(self, model: nn.Module, optimizer: Any, lr: Any, run_dir: Path, **settings: Any) -> Any:
        from trainwise.trainer import Trainer

        kwargs = {**self.trainer_kwargs, **settings}
        if isinstance(optimizer, torch.optim.Optimizer):
            if isinstance(lr, (int, float)):  # e.g. lr='auto''s suggestion: the groups keep their ratios
                top = max(g["lr"] for g in optimizer.param_groups)
                for g in optimizer.param_groups:
                    g["lr"] = lr * (g["lr"] / top if top > 0 else 1.0)
            lr = None if lr != "auto" else lr
            kwargs.setdefault("schedule", None)
        else:
            kwargs.setdefault("schedule", "constant")
        return Trainer(model, loss=self.loss, optimizer=optimizer, lr=lr, run_dir=run_dir, progress=False,
                       report=False, seed=self.seed, **kwargs)


def lr_check(setup: Setup, train: Any, th: Thresholds, broken: Sequence[str] = ()) -> tuple[Check, Optional[float]]:
    """``train.lr``: non-positive lrs fail; otherwise the range test's suggestion, and the
    configured lr against it. ``broken``: the model checks that FAILed; the range test is then not
    run (SKIP): on a broken model (dead layers, a softmax before the loss) its curve is flat or slowed
    by the bug, and the lr it would suggest says nothing about the lr. Returns the check and the lr
    the other checks train at."""
    configured = _configured_lr(setup)
    if configured is not None and not configured > 0:
        return Check("train.lr", "FAIL", configured, 0, f"the lr is {configured:g}; a non-positive lr does not "
                     "descend (a negative one ascends the loss)", "use a positive lr, e.g. lr='auto'"), None
    if broken:
        return Check("train.lr", "SKIP", configured, None, f"not judged: {', '.join(broken)} FAILed, and the lr "
                     "range test on a broken model reads a curve shaped by the bug (flat for dead units, slowed by a "
                     "softmax before the loss), so an lr read off it is not trustworthy; fix the model and run the "
                     "doctor again"), configured
    from trainwise.engine.plan import find_lr, prepare_split
    from trainwise.data.loader import make_batches
    from trainwise.optim import build_optimizer

    work, optimizer, _ = setup.copy_with_optimizer()
    if optimizer is None:
        return Check("train.lr", "FAIL", None, None, "the optimizer holds none of the model's parameters",
                     "build the optimizer on this model's parameters: optimizer(model.parameters())"), None
    with tempfile.TemporaryDirectory(prefix="trainwise-doctor-") as tmp:
        t = setup.trainer(work, optimizer, "auto", Path(tmp), epochs=1)
        data, t.task, _ = prepare_split(train, "train", model=t.model, device=t.device, task=t.task)
        batches = make_batches(data, batch_size=t.batch_size, shuffle=True, seed=t.seed, device=t.device)
        opt = t.optimizer or build_optimizer(t.model, t.optimizer_spec, lr=1e-3, **t.optimizer_args)
        suggestion, summary = find_lr(t.model, opt, batches, compute_loss=t.compute_loss, device=t.device,
                                      precision=t.precision, run_dir=Path(tmp), record=lambda *a: None,
                                      settings=t.lr_find)
    if suggestion is None:
        status = "WARN" if configured is None else "PASS"
        return Check("train.lr", status, configured, None, f"the lr range test gave no suggestion "
                     f"({summary.get('reason')})", "set the lr yourself (try 1e-3 for Adam, 1e-2 for SGD)"
                     if status == "WARN" else ""), configured
    if configured is None:
        return Check("train.lr", "PASS", suggestion, None, f"lr='auto': the range test suggests {suggestion:.3g} "
                     f"(rule {summary.get('rule')}); training will use it"), suggestion
    ratio = configured / suggestion
    ok = 1 / th.lr_factor <= ratio <= th.lr_factor
    return Check("train.lr", "PASS" if ok else "WARN", configured, [suggestion / th.lr_factor, suggestion * th.lr_factor],
                 f"lr {configured:.3g} is {ratio:.3g}x the range test's suggestion {suggestion:.3g} (rule "
                 f"{summary.get('rule')}); WARN beyond {th.lr_factor:g}x either way",
                 "" if ok else f"try lr={suggestion:.3g} (or lr='auto'); too high oscillates or diverges, too "
                 "low barely learns"), configured


def _configured_lr(setup: Setup) -> Optional[float]:
    if isinstance(setup.optimizer, torch.optim.Optimizer) and setup.lr in (None, "auto"):
        lrs = [float(g["lr"]) for g in setup.optimizer.param_groups]
        return None if setup.lr == "auto" else (min(lrs) if min(lrs) <= 0 else max(lrs))
    return None if setup.lr in (None, "auto") else float(setup.lr)


def one_step_check(setup: Setup, batch: Any, lr: Optional[float], th: Thresholds) -> Check:
    """``train.one_step``: one optimizer step on a batch, through ``Trainer.fit``, lowers its loss."""
    work, optimizer, foreign = setup.copy_with_optimizer()
    if optimizer is None:
        return Check("train.one_step", "FAIL", foreign, 0, f"the optimizer holds none of the model's parameters "
                     f"({foreign} parameters of another model)", "build the optimizer after the model, on "
                     "model.parameters(); rebuild it whenever the model is rebuilt or copied")
    with tempfile.TemporaryDirectory(prefix="trainwise-doctor-") as tmp:
        t = setup.trainer(work, optimizer, lr, Path(tmp), epochs=1, batch_size=_length(batch),
                          callbacks=[NoCheckpoints()], early_stopping=False)
        before_params = [p.detach().clone() for p in t.model.parameters()]
        before = _batch_loss(t, batch)
        t.fit(batch)
        after = _batch_loss(t, batch)
    moved = any(not torch.equal(a, p.detach()) for a, p in zip(before_params, t.model.parameters()))
    change = (after - before) / max(abs(before), 1e-12)
    value = {"before": before, "after": after, "relative_change": change}
    if not moved:
        return Check("train.one_step", "FAIL", value, th.one_step_change, "one optimizer step changed no parameter "
                     "of the model", "check that the optimizer holds model.parameters() and that lr > 0")
    if not math.isfinite(after) or change > th.one_step_fail:
        return Check("train.one_step", "FAIL", value, th.one_step_change,
                     f"one step took the batch loss from {before:.4g} to {after:.4g}", "lower the lr (try the range "
                     "test's suggestion, lr='auto'); check the sign of the loss")
    if change > -th.one_step_change:
        return Check("train.one_step", "WARN", value, th.one_step_change,
                     f"one step changed the batch loss from {before:.4g} to {after:.4g} ({change:+.2%}); it should "
                     f"fall by more than {th.one_step_change:g} (relative)", "check the lr (too high or far too "
                     "low), frozen or detached layers, and that the loss depends on the outputs")
    return Check("train.one_step", "PASS", value, th.one_step_change,
                 f"one step lowered the batch loss from {before:.4g} to {after:.4g} ({change:+.2%})")


def overfit_check(setup: Setup, subset: Any, lr: Optional[float], *, task: str, num_classes: Optional[int],
                  reference: float, th: Thresholds) -> Check:
    """``train.overfit_batch``: ``Trainer.fit`` on a few samples until they are learned."""
    work, optimizer, _ = setup.copy_with_optimizer()
    if optimizer is None:
        return Check("train.overfit_batch", "FAIL", None, None, "the optimizer holds none of the model's parameters",
                     "build the optimizer on model.parameters()")
    n = _length(subset)
    target_acc = th.overfit_accuracy if task in ("classification", "binary") else None
    target_loss = _loss_goal(reference, task, num_classes, setup.trainer_kwargs.get("label_smoothing", 0.0), th)
    stopper = StopWhenFit(target_acc, target_loss)
    with tempfile.TemporaryDirectory(prefix="trainwise-doctor-") as tmp:
        t = setup.trainer(work, optimizer, lr, Path(tmp), epochs=th.overfit_steps, batch_size=n,
                          callbacks=[stopper, NoCheckpoints()], early_stopping=False, on_nonfinite="stop")
        result = t.fit(subset, subset)
    history = result.history
    last = history[-1] if history else {}
    loss, acc = last.get("val_loss", math.nan), last.get("val_accuracy")
    reached = (target_acc is None or (acc is not None and acc >= target_acc)) and loss <= target_loss
    value = {"steps": len(history), "loss": loss, "accuracy": acc, "initial_loss": history[0].get("val_loss")
             if history else None}
    goal = (f"accuracy >= {target_acc:g} and " if target_acc is not None else "") + f"loss <= {target_loss:.4g}"
    if reached:
        return Check("train.overfit_batch", "PASS", value, goal,
                     f"learned {n} samples in {len(history)} steps ({goal})")
    return Check("train.overfit_batch", "FAIL", value, goal,
                 f"could not fit {n} samples in {len(history)} steps: loss {loss:.4g}"
                 + (f", accuracy {acc:.3g}" if acc is not None else "") + f" (goal {goal}); "
                 + _floor_hint(loss, task, num_classes, result.status),
                 "a model that cannot memorize 32 samples has a bug: check the output activation, the loss, "
                 "the lr (try lr='auto'), frozen/dead layers and that inputs and labels belong together")


def _loss_goal(reference: float, task: str, num_classes: Optional[int], smoothing: float, th: Thresholds) -> float:
    """The loss the samples must reach: for classification a share of ln C above label smoothing's own
    minimum (below the softmax-before-cross-entropy floor log(1 + (C-1)/e) for every C), else a share
    of the constant predictor's loss."""
    if task == "classification" and num_classes and num_classes > 1:
        c, e = num_classes, smoothing
        true, other = 1 - e + e / c, e / c
        floor = -(true * math.log(true) + (c - 1) * other * math.log(other)) if e > 0 else 0.0
        return floor + th.overfit_ce_ratio * (math.log(c) - floor)
    return th.overfit_loss_ratio * reference


def _floor_hint(loss: float, task: str, num_classes: Optional[int], status: str) -> str:
    if status == "diverged" or not math.isfinite(loss):
        return "the loss diverged: the lr is far too high"
    if task == "classification" and num_classes:
        floor = math.log(1 + (num_classes - 1) / math.e)
        if abs(loss - floor) <= 0.1 * floor:
            return (f"the loss sits at log(1 + (C-1)/e) = {floor:.3f}, the floor of cross-entropy on softmax "
                    "outputs: the model applies softmax before a loss that applies its own")
        if abs(loss - math.log(num_classes)) <= 0.02 * math.log(num_classes):
            return (f"the loss sits at ln C = {math.log(num_classes):.3f}: nothing is learned (lr near zero, dead "
                    "units, or no gradient reaches the weights)")
    return "the loss floors above the goal"


def _batch_loss(t: Any, batch: Any) -> float:
    state = torch.random.get_rng_state()
    was = t.model.training
    t.model.train()
    try:
        torch.manual_seed(0)  # the same dropout masks before and after
        with torch.no_grad():
            data = tuple(v.to(t.device) for v in batch) if isinstance(batch, tuple) else \
                {k: v.to(t.device) for k, v in batch.items()}
            return float(t.compute_loss(t.model, data))
    finally:
        t.model.train(was)
        torch.random.set_rng_state(state)


def _length(batch: Any) -> int:
    first = batch[0] if isinstance(batch, tuple) else next(iter(batch.values()))
    return len(first)


def guarded(check_id: str, fn: Callable[[], Check]) -> Check:
    """Run a check; a user error while running it (bad data the fit refuses) is that check's FAIL."""
    try:
        return fn()
    except TrainwiseError as exc:
        return Check(check_id, "FAIL", None, None, f"could not run: {exc}", "fix the error above and run again")

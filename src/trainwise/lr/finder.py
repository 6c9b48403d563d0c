"""The learning-rate range test (Leslie Smith, 2015; fastai's ``lr_find``).

The test is a schedule plus a stop rule: train for ``num_steps`` steps while the learning
rate rises from ``start_lr`` to ``end_lr``, record the smoothed training loss, stop when it
blows up, then read a learning rate off the curve with one of several suggestion rules
(``trainwise.lr.suggest``). A curve that gives no suggestion is measured once more, twice as
long; when that slow learner's loss then does not diverge near its floor, the edge rule reads
the floor's edge without backing off (``trainwise.lr.suggest.calm_edge``). The model, the
optimizer and every random number generator are put back exactly as they were, so the test can
run before training without changing the run it precedes. The result and its files
(``lr_find.json``, ``lr_find.png``) live in ``trainwise.lr.result``.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import numbers
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainwise.errors import ConfigError, DataError
from trainwise.lr.result import LRFinderResult, save_lr_find
from trainwise.lr.suggest import (
    CALM_EDGE_BACKOFF, MIN_POINTS, SUGGESTION_RULES, calm_edge, check_rule, divergence_reading, suggest,
)

__all__ = ["MIN_POINTS", "SUGGESTION_RULES", "LRFinder", "LRFinderResult", "save_lr_find", "suggest"]

logger = logging.getLogger(__name__)

NONFINITE_AT_START = ("the loss was non-finite at the test's first step, before any update: the model's outputs or "
                      "the loss are NaN or Inf at its initial weights, which no lr changes")

SCHEDULE_MODES = ("exp", "linear")
PRECISIONS = ("fp32", "bf16")
# A curve that gives no suggestion is measured once more, this many times as long, from the
# same weights: a model that learns slowly shows its descent only with more steps near the
# useful lrs. Recurrent nets on MNIST-1D sit at the 10-class chance loss for most of a 100-step
# test: the smoothed loss of a GRU 64 fell 1.2-2.6% before diverging, an LSTM 64's 3.8-4.0%
# (3 seeds each, all refused, < 5%), and lr: auto fell back to 1e-3 (51% test accuracy after
# 20 epochs, for both). With 200 steps (25 per decade instead of 12) every curve gives a
# suggestion: GRU 97.7% (best of a 7-lr sweep 97.5%), LSTM 93.3% (best 96.5%): see
# benchmarks/README.md. A curve with a suggestion the first time is never measured again.
RETRY_STEPS_FACTOR = 2
# A curve that needed the retry (a slow learner near its chance loss) can be measured several times, each test over
# another order of the batches, the rule reading their mean (``retry_repeats``). Near chance, where the loss first
# falls is set by one trajectory: a two-layer LSTM's retries on MNIST-1D read 5.1e-3 to 4.7e-2 from the same weights
# over four batch orders; the mean of 3 halves that spread on every shaping recurrent recipe. It is off by default:
# it does not move the reading's centre, and on MNIST-1D's LSTMs that centre (~1e-2) is ~3x under their best lr, so
# the reporting LSTM traded its luckier single readings of seeds 0-2 (96.7% -> 93.0%) for its worst seed (65.6% ->
# 91.7%) (issue 22, round 4: docs/notes/issue-22-r4-lr.md, benchmarks/README.md).
RETRY_REPEATS = 1
# Where the repeats' batch orders start: epoch ``repeat * REPEAT_EPOCH_SHIFT`` of a source with ``set_epoch`` (a
# permutation no test reaches by itself); other sources get the RNGs seeded by the repeat (a DataLoader's shuffle).
REPEAT_EPOCH_SHIFT = 1000

Batch = tuple[Tensor, Tensor]
BatchSource = Iterable[Batch] | Callable[[], Iterator[Batch]]


class _SavedState:
    """Deep copies of everything a range test changes, and how to put them back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model_state = copy.deepcopy(model.state_dict())
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.training = {module: module.training for module in model.modules()}
        self.grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        self.python_rng = random.getstate()
        self.numpy_rng = np.random.get_state()
        self.torch_rng = torch.get_rng_state()
        # Only when CUDA is already in use: asking earlier would start a CUDA context.
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model.load_state_dict(self.model_state)
        optimizer.load_state_dict(self.optimizer_state)
        for module, training in self.training.items():
            module.training = training
        for parameter, grad in zip(model.parameters(), self.grads):
            parameter.grad = grad
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


class LRFinder:
    """Run the learning-rate range test on a model and read a learning rate off it.

    Args:
        model: The model to test; its weights, buffers and train/eval modes are restored.
        optimizer: The optimizer to test with; its state and learning rates are restored.
            Every param group is scaled by the same factor, so their ratios hold: the group
            with the largest lr runs at the tested lr and the others in proportion, and the
            suggestion is the lr of that largest group. Groups that carry ``lr_scale`` keys
            (the optimizers of ``trainwise.optim``) run at ``lr * lr_scale`` instead (1 when
            a group has none), and the suggestion is the base lr that ``set_lr`` scales.
        loss_fn: ``loss_fn(outputs, targets)`` returning a scalar tensor.
        batch_loss: instead of ``model`` + ``loss_fn`` on ``(inputs, targets)`` pairs, the loss of
            a whole batch of any shape (a trainer's ``compute_loss``); ``loss_fn`` is then unused.
        start_lr: The learning rate of the first step, > 0.
        end_lr: The learning rate of the last step, > start_lr.
        num_steps: How many optimizer steps the test runs at most, >= 10.
        mode: ``exp`` (lr grows geometrically, the usual choice) or ``linear``.
        smoothing: Weight of the past in the exponential moving average of the loss, in
            [0, 1); 0 records the raw loss.
        diverge_factor: Stop when the smoothed loss exceeds this many times the best one.
            Only applies while the best loss is > 0; non-finite losses always stop the test.
        rule: The suggestion rule, one of ``SUGGESTION_RULES``.
        device: Where batches are sent; None means the device of the model's parameters.
            The model must already be there (it is not moved: its optimizer state would
            have to move with it).
        precision: ``fp32`` or ``bf16`` (autocast).
        retry: When the curve gives no suggestion (too flat, or diverging without first
            falling), measure it once more with ``retry_steps`` steps (default
            ``RETRY_STEPS_FACTOR * num_steps``) from the same starting state, ``retry_repeats``
            times over different batch orders, and report the mean of those curves.
        retry_repeats: How many tests of ``retry_steps`` a retry runs and averages (>= 1).

    Example:
        >>> model = nn.Linear(4, 1)
        >>> finder = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss())
        >>> result = finder.run([(torch.randn(8, 4), torch.randn(8, 1))])
        >>> result.rule, len(result.lrs) <= finder.retry_steps
        ('edge', True)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
        *,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exp",
        smoothing: float = 0.98,
        diverge_factor: float = 4.0,
        rule: str = "edge",
        device: torch.device | str | None = None,
        precision: str = "fp32",
        retry: bool = True,
        batch_loss: Callable[[Any], Tensor] | None = None,
        retry_steps: int | None = None,
        retry_repeats: int = RETRY_REPEATS,
    ) -> None:
        for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        if not start_lr < end_lr:
            raise ConfigError(f"start_lr must be < end_lr, got {start_lr} >= {end_lr}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < MIN_POINTS:
            raise ConfigError(f"num_steps must be an integer >= {MIN_POINTS}, got {num_steps!r}")
        if retry_steps is not None and (isinstance(retry_steps, bool) or not isinstance(retry_steps, int)
                                        or retry_steps < MIN_POINTS):
            raise ConfigError(f"retry_steps must be an integer >= {MIN_POINTS} or None, got {retry_steps!r}")
        if isinstance(retry_repeats, bool) or not isinstance(retry_repeats, int) or retry_repeats < 1:
            raise ConfigError(f"retry_repeats must be an integer >= 1, got {retry_repeats!r}")
        if mode not in SCHEDULE_MODES:
            raise ConfigError(f"mode must be one of {SCHEDULE_MODES}, got {mode!r}")
        if not 0 <= smoothing < 1:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}")
        if not diverge_factor > 1:
            raise ConfigError(f"diverge_factor must be > 1, got {diverge_factor}")
        check_rule(rule)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
        wanted = torch.device(device) if device is not None else model_device
        if wanted.type != model_device.type or wanted.index not in (None, model_device.index):
            raise ConfigError(
                f"device is {device!r} but the model is on {model_device}; call model.to(device) "
                "before building the optimizer and the LRFinder"
            )
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.start_lr, self.end_lr, self.num_steps, self.mode = start_lr, end_lr, num_steps, mode
        self.smoothing, self.diverge_factor, self.rule = smoothing, diverge_factor, rule
        self.nonfinite_at_start = False
        self.device = model_device
        self.precision = precision
        self.retry = retry
        self.retry_steps = retry_steps if retry_steps is not None else RETRY_STEPS_FACTOR * num_steps
        self.retry_repeats = retry_repeats
        self.batch_loss = batch_loss

    def lr_at(self, step: int, num_steps: int | None = None) -> float:
        """The lr of step ``step`` (0-based) of a test of ``num_steps`` steps (default: the
        finder's): start_lr at step 0, end_lr at step num_steps - 1."""
        fraction = step / ((num_steps or self.num_steps) - 1)
        if self.mode == "exp":
            return self.start_lr * (self.end_lr / self.start_lr) ** fraction
        return self.start_lr + (self.end_lr - self.start_lr) * fraction

    def run(self, batches: BatchSource) -> LRFinderResult:
        """Run the range test and suggest a learning rate.

        Args:
            batches: ``(inputs, targets)`` pairs: an iterable (re-iterated when it runs out
                before ``num_steps``, after ``set_epoch(epoch)`` when it has that method, as
                samplers and trainwise's loaders do) or a function returning a fresh
                iterator. A float target of shape ``(N,)`` is read as ``(N, 1)`` when the
                model outputs ``(N, 1)`` (one regression target).

        Returns:
            The recorded curve and the suggestions of every rule (of the longer second
            test when the first curve gave none and ``retry`` is on).

        Raises:
            DataError: The source yields no batch, a batch is not a pair, or a one-shot
                iterator runs out before ``num_steps``. The model is restored all the same.
        """
        saved = _SavedState(self.model, self.optimizer)
        self.nonfinite_at_start = False
        repeats: list[list[float]] = []  # each averaged test's raw losses, when the retry averaged several
        calm, unread, below = False, None, None
        # A loader with a state (trainwise's InMemoryBatches, torchdata's StatefulDataLoader)
        # is put back too: the run that follows starts where it would have started.
        stateful = hasattr(batches, "state_dict") and hasattr(batches, "load_state_dict")
        source_state = copy.deepcopy(batches.state_dict()) if stateful else None  # type: ignore[union-attr]
        try:
            self.model.train()
            lrs, losses, raw_losses = self._sweep(batches, self.num_steps)
            answers = {rule: suggest(lrs, losses, rule, raw_losses) for rule in SUGGESTION_RULES}
            if self.nonfinite_at_start:  # a retry would start from the same weights and meet the same value
                answers = {rule: (None, NONFINITE_AT_START) for rule in SUGGESTION_RULES}
            elif self.retry and answers[self.rule][0] is None:
                times = f"{self.retry_repeats} times " if self.retry_repeats > 1 else ""
                logger.info("lr range test: no suggestion from %d steps (%s); measuring again %swith %d steps",
                            len(lrs), answers[self.rule][1], times, self.retry_steps)
                curves = []
                for repeat in range(self.retry_repeats):
                    saved.restore(self.model, self.optimizer)
                    self.model.train()
                    curves.append(self._sweep(batches, self.retry_steps, repeat))
                lrs, losses, raw_losses = _mean_curve(curves)
                if len(curves) > 1:
                    repeats = [raw[: len(lrs)] for _, _, raw in curves if len(raw) >= len(lrs)]
                # a slow learner with no cliff near its floor's edge: the edge itself (see CALM_EDGE_BACKOFF)
                calm = calm_edge(lrs, raw_losses, reached_end=len(lrs) == self.retry_steps)
                backoff = {"edge_backoff": CALM_EDGE_BACKOFF} if calm else {}
                answers = {rule: suggest(lrs, losses, rule, raw_losses, **backoff) for rule in SUGGESTION_RULES}
                calm = calm and self.rule == "edge" and answers["edge"][0] is not None
                unread = answers[self.rule][1]
                # no reading even from the longer test, which diverged: read under where (see DIVERGENCE_DECADES)
                below = divergence_reading(lrs, losses, stopped=len(lrs) < self.retry_steps) if unread else None
                if below is not None:
                    answers[self.rule] = (below, None)
        finally:
            saved.restore(self.model, self.optimizer)
            if stateful:
                batches.load_state_dict(source_state)  # type: ignore[union-attr]
        suggestion, reason = answers[self.rule]
        suggestions = {rule: lr for rule, (lr, _) in answers.items()}
        result = LRFinderResult(lrs, losses, raw_losses, suggestion, self.rule, reason, suggestions, repeats, calm,
                                unread if below is not None else None)
        logger.info("lr range test: %d steps; %s: %s", len(lrs), self.rule, suggestion or reason)
        return result

    def _sweep(
        self, batches: BatchSource, num_steps: int, repeat: int = 0
    ) -> tuple[list[float], list[float], list[float]]:
        """Train ``num_steps`` steps while raising the lr; return the lrs, smoothed and raw
        losses of the recorded steps. ``repeat`` > 0 draws another batch order (see ``_endless``)."""
        device, use_bf16 = self.device, self.precision == "bf16"
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
        lrs: list[float] = []
        losses: list[float] = []
        raw_losses: list[float] = []
        average, best = 0.0, math.inf
        ratios = _group_ratios(self.optimizer.param_groups)
        for step, batch in enumerate(self._endless(batches, repeat)):
            lr = self.lr_at(step, num_steps)
            for group, ratio in zip(self.optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            with autocast:
                if self.batch_loss is not None:
                    loss = self.batch_loss(batch)
                else:
                    inputs, targets = batch
                    outputs = self.model(inputs.to(device))
                    loss = self.loss_fn(outputs, _match_target_shape(outputs, targets.to(device)))
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            # The stop rule needs the value now, so one host sync per step is the price.
            raw = float(loss.detach().float())
            average = self.smoothing * average + (1 - self.smoothing) * raw
            smoothed = average / (1 - self.smoothing ** (step + 1))
            if not (math.isfinite(raw) and math.isfinite(smoothed)):
                logger.info("lr range test stopped at step %d: non-finite loss, lr %.3g", step, lr)
                self.nonfinite_at_start = step == 0  # the initial weights' loss: no lr plays a part yet
                break
            lrs.append(lr)
            losses.append(smoothed)
            raw_losses.append(raw)
            best = min(best, smoothed)
            # A ratio means nothing once the best loss is <= 0 (e.g. a Gaussian NLL).
            if best > 0 and smoothed > self.diverge_factor * best:
                logger.info("lr range test stopped at step %d: loss diverged at lr %.3g", step, lr)
                break
            if step + 1 == num_steps:
                break
        return lrs, losses, raw_losses

    def _endless(self, batches: BatchSource, repeat: int = 0) -> Iterator[Batch]:
        """Yield batches forever, restarting the source each time it runs out. A ``repeat`` > 0 starts a source
        with ``set_epoch`` at epoch ``repeat * REPEAT_EPOCH_SHIFT`` and seeds the RNGs (a DataLoader's shuffle,
        dropout) from the run's seed and the repeat: another batch order, the same for the same seed."""
        if repeat:
            seed = (torch.initial_seed() + 7919 * repeat) % 2**32
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        if isinstance(batches, Iterable):
            restart: Callable[[], Iterator[Batch]] = functools.partial(iter, batches)
        elif callable(batches):
            restart = batches
        else:
            raise DataError(
                "batches must be an iterable or a function returning an iterator, "
                f"got {type(batches).__name__}"
            )
        produced, epoch = 0, repeat * REPEAT_EPOCH_SHIFT
        while True:
            produced_before = produced
            if hasattr(batches, "set_epoch"):
                # A loader that keeps its place (trainwise's InMemoryBatches) yields nothing
                # when iterated again until it is told that a new epoch began.
                batches.set_epoch(epoch)
            epoch += 1
            for batch in restart():
                if self.batch_loss is None and not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                    kind = type(batch).__name__
                    raise DataError(f"each batch must be a pair (inputs, targets), got {kind}")
                produced += 1
                yield batch
            if produced == produced_before:
                raise DataError(
                    f"the batch source ran out after {produced} batches of {self.num_steps} and "
                    "yields no more when restarted; pass a list, a DataLoader or a function "
                    "returning a new iterator"
                )


def _mean_curve(curves: list[tuple[list[float], list[float], list[float]]]) -> tuple[list[float], list[float], list[float]]:
    """The mean of range-test curves over the steps all of them recorded (each stops where it diverged); a test
    that recorded fewer than ``MIN_POINTS`` steps (a non-finite loss early on) is left out unless all are.

    Example:
        >>> _mean_curve([([1.0, 2.0], [3.0, 5.0], [3.0, 7.0]), ([1.0, 2.0, 4.0], [1.0, 1.0, 9.0], [1.0, 1.0, 9.0])])
        ([1.0, 2.0], [2.0, 3.0], [2.0, 4.0])
    """
    usable = [curve for curve in curves if len(curve[0]) >= MIN_POINTS] or curves
    length = min(len(curve[0]) for curve in usable)
    lrs = usable[0][0][:length]
    losses, raw = (np.mean([curve[part][:length] for curve in usable], axis=0).tolist() for part in (1, 2))
    return lrs, losses, raw


def _group_ratios(param_groups: list[dict[str, Any]]) -> list[float]:
    """Each param group's lr as a multiple of the tested lr, so that the groups keep their ratios.

    When any group has an ``lr_scale`` key (trainwise's own optimizers), that key is the
    ratio, 1 for a group without one: exactly what ``trainwise.optim.set_lr`` applies.
    Otherwise each group's current lr is divided by the largest one, so the group with the
    largest lr runs at the tested lr itself; when every lr is 0, every ratio is 1.

    Example:
        >>> _group_ratios([{"lr": 0.05}, {"lr": 0.01}])
        [1.0, 0.2]
    """
    if any("lr_scale" in group for group in param_groups):
        return [float(group.get("lr_scale", 1.0)) for group in param_groups]
    current = [float(group["lr"]) for group in param_groups]
    largest = max(current, default=0.0)
    if largest <= 0:
        return [1.0] * len(current)
    return [lr / largest for lr in current]


def _match_target_shape(outputs: Tensor, targets: Tensor) -> Tensor:
    """Targets of shape ``(N,)`` as ``(N, 1)`` when they are floats and the outputs ``(N, 1)``.

    Both hold one regression target per sample. Left as they are, ``mse_loss`` would
    broadcast them to ``(N, N)`` and compare every output with every target: a loss that
    still falls, and a curve that suggests a wrong lr without a word. Class indices (integer
    targets) and every other pair of shapes are passed through.

    Example:
        >>> _match_target_shape(torch.zeros(4, 1), torch.ones(4)).shape
        torch.Size([4, 1])
    """
    if (
        targets.is_floating_point()
        and targets.dim() == 1
        and outputs.dim() == 2
        and outputs.shape == (targets.shape[0], 1)
    ):
        return targets.unsqueeze(1)
    return targets

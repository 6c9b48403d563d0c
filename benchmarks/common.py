"""What every benchmark shares: the machine record, MNIST, the two cases, the hand-written loop,
the relay that alternates contestants step block by step block, and the result files.

Every figure is a ratio of contestants measured side by side in one process. On a shared,
noisy machine the relay is what makes that hold: contestants run one at a time, in turns of
``block`` optimizer steps, round after round, so neighbouring blocks see the same load, and a
figure is the median over rounds of the per-round ratio.

Example:
    >>> relay = Relay(["hand", "trainwise"], block=10, steps=800, warmup=100)
    >>> times = relay.run({"hand": run_hand, "trainwise": run_trainwise})  # each calls relay.tick(name)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MNIST_ROOT = REPO_ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_THREADS = 2
LR, WEIGHT_DECAY = 3e-3, 1e-4  # examples/mnist.yaml's optimizer
LOG_EVERY = 50  # the Trainer's default log_every_n_steps; the hand loop logs as often


# ---------------------------------------------------------------------------------------- machine
def pin_threads(threads: int) -> None:
    """Pin torch's intra-op threads (and inter-op ones when torch still allows it)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import lightning

        info["lightning"] = lightning.__version__
    except ImportError:
        info["lightning"] = None
    return info


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (a few steps) to check it runs")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (results get a _cuda suffix)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the result JSON")
    parser.add_argument("--mnist-root", type=Path, default=MNIST_ROOT, help="folder of the MNIST IDX files")
    return parser


# ---------------------------------------------------------------------------------------- data and models
_MNIST_CACHE: dict[str, Any] = {}


def load_mnist(root: Path) -> Any:
    """MNIST as trainwise loads it (54,000 train / 6,000 val / 10,000 test, normalized), once per process."""
    from trainwise.data import load_data

    key = str(root)
    if key not in _MNIST_CACHE:
        _MNIST_CACHE[key] = load_data("mnist", root=root)
    return _MNIST_CACHE[key]


@dataclass(frozen=True)
class Case:
    """One benchmark case: a model and the batch size it trains at."""

    name: str
    batch_size: int
    description: str

    def build(self, seed: int = 0) -> nn.Module:
        """The model, seeded and initialized the way the CLI does it (``init: auto``)."""
        from trainwise.models.init import initialize
        from trainwise.models import build_model

        torch.manual_seed(seed)
        if self.name == "mlp":
            model = build_model("mlp", input_shape=(1, 28, 28), num_outputs=10, hidden=[128])
        else:
            model = build_model("cnn", input_shape=(1, 28, 28), num_outputs=10, channels=[32, 64], hidden=[128],
                                norm="batch", dropout=0.1)
        initialize(model, "auto", activation="relu")
        return model


CASES = {
    "mlp": Case("mlp", 64, "MLP 784-128-10, batch 64"),
    "cnn": Case("cnn", 128, "CNN of examples/mnist.yaml (conv 32, 64, BN, dense 128, dropout 0.1), batch 128"),
}


def make_optimizer(model: nn.Module, lr: float = LR) -> torch.optim.Optimizer:
    """AdamW with the parameter groups the Trainer builds (no decay on biases and norms)."""
    from trainwise.optim import build_optimizer

    return build_optimizer(model, "adamw", lr=lr, weight_decay=WEIGHT_DECAY)


def onecycle(total_steps: int, lr: float = LR) -> Any:
    """The Trainer's 1cycle schedule (peak ``lr``) over ``total_steps`` updates."""
    from trainwise.schedules import build_schedule

    return build_schedule("onecycle", lr=lr, total_steps=total_steps, steps_per_epoch=total_steps)


# ---------------------------------------------------------------------------------------- the hand-written loop
def in_memory_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> Iterable:
    """Index slicing of tensors with one permutation per epoch (the Trainer's order), epoch after epoch."""
    from trainwise.data.loader import epoch_permutation

    epoch = 0
    while True:
        order = epoch_permutation(len(x), seed, epoch).to(x.device)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            yield x.index_select(0, index), y.index_select(0, index)
        epoch += 1


def hand_train(model: nn.Module, batches: Iterable, *, steps: int, tick: Callable[[], None],
               device: torch.device, precision: Optional[torch.dtype] = None,
               move_to_device: bool = False, loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
               model_lr: Optional[float] = None) -> list[tuple[int, float, float]]:
    """The loop a careful engineer writes: forward, loss read for the running mean (and checked
    to be finite), backward, AdamW step, ``zero_grad(set_to_none=True)``, the 1cycle lr and beta1
    (set before the first step, then after each step for the next), a log row every ``LOG_EVERY``
    steps. Calls ``tick()`` after each step. It trains the same weights as ``trainwise_fit``.

    On an accelerator the loss stays on the device (summed there), as the Trainer does.
    ``move_to_device``: batches come from the host (a ``DataLoader``) and are copied over.
    ``loss_fn(outputs, targets)``: the loss the hand loop writes (cross-entropy by default);
    ``model_lr``: the peak lr (default ``LR``).
    """
    optimizer = make_optimizer(model, model_lr or LR)
    schedule = onecycle(steps, model_lr or LR)

    def set_step(step: int) -> float:
        """The 1cycle lr and beta1 of ``step`` in every group (as torch's OneCycleLR sets them)."""
        lr, beta1 = schedule.lr_at(step), schedule.momentum_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            group["betas"] = (beta1, group["betas"][1])
        return lr

    set_step(0)  # the first step trains at the schedule's starting lr, not at the peak the optimizer was built with
    model.train()
    sync = device.type == "cpu"
    window = 0.0 if sync else torch.zeros((), device=device)
    log: list[tuple[int, float, float]] = []
    iterator = iter(batches)
    for step in range(steps):
        xb, yb = next(iterator)
        if move_to_device:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if precision is None:
            loss = loss_fn(model(xb), yb)
        else:
            with torch.autocast(device.type, dtype=precision):
                loss = loss_fn(model(xb), yb)
        if sync:
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {step}")
            window += value
        else:
            window += loss.detach()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = set_step(min(step + 1, steps - 1))
        if (step + 1) % LOG_EVERY == 0:
            log.append((step + 1, lr, float(window) / LOG_EVERY))
            window = 0.0 if sync else torch.zeros((), device=device)
        tick()
    return log


# ---------------------------------------------------------------------------------------- trainwise
def tick_callback(tick: Callable[[], None]) -> Any:
    """A trainwise callback that calls ``tick()`` after each optimizer step."""
    from trainwise.callbacks import Callback

    class Tick(Callback):
        def on_batch_end(self, trainer: Any, loss: torch.Tensor) -> None:
            tick()

    return Tick()


def trainwise_fit(model: nn.Module, train: Any, val: Any, *, steps: int, batch_size: int, callbacks: Sequence,
                  device: torch.device, precision: str = "fp32", run_dir: Optional[Path] = None,
                  report: bool = False, **options: Any) -> Any:
    """``Trainer.fit`` with its defaults on (early stopping, checkpoints, non-finite guard, metric
    logging, the progress bar), stopped after ``steps`` optimizer steps.

    The progress bar writes to a non-terminal (a throwaway console): the plain-lines mode a log
    file or CI gets. ``report=False`` skips the end-of-run plots, outside any per-step timing.
    ``options``: other Trainer arguments (``num_workers``, ``loss``).
    """
    from rich.console import Console

    from trainwise.callbacks import ProgressBar
    from trainwise.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch, open(os.devnull, "w") as sink:
        progress = ProgressBar(console=Console(file=sink, force_terminal=False))
        # The optimizer by name, as a Python user writes it: the Trainer builds the same AdamW groups as
        # make_optimizer and, for a named optimizer, cycles beta1 with the 1cycle schedule as the hand loop does
        # (a built optimizer would get cycle_momentum=False: less work than the hand loop, not the same run).
        trainer = Trainer(model, optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY, grad_clip=None,
                          schedule="onecycle", epochs=1000,
                          max_steps=steps, batch_size=batch_size, callbacks=[*callbacks, progress],
                          run_dir=run_dir or Path(scratch) / "run", progress=False, report=report,
                          device=device, precision=precision, **options)
        return trainer.fit(train, val)


# ---------------------------------------------------------------------------------------- the relay
class Relay:
    """Runs contestants one at a time, in turns of ``block`` steps, and times every step.

    Each contestant is a function that trains for ``steps`` steps and calls ``relay.tick(name)``
    after each one. It runs in its own thread, but only while it holds the turn, so nothing
    overlaps; work before its first tick and after its last is never timed. The first
    ``warmup`` steps of each contestant are not timed either. Each step gets its wall time and
    the process's CPU time (which a preempted step does not accrue).
    """

    def __init__(self, names: Sequence[str], *, block: int, steps: int, warmup: int) -> None:
        if block <= 0 or warmup < 0 or steps <= warmup or (steps - warmup) % block:
            raise ValueError(f"steps - warmup must be a positive multiple of block, got steps={steps}, "
                             f"warmup={warmup}, block={block}")
        self.names = list(names)
        self.block, self.steps, self.warmup = block, steps, warmup
        self.blocks: dict[str, list[StepTimes]] = {name: [] for name in names}
        self._count = dict.fromkeys(names, 0)
        self._last = {name: (0.0, 0.0) for name in names}
        self._current = {name: StepTimes() for name in names}
        self._finished: set[str] = set()
        self._turn = self.names[0]
        self._cv = threading.Condition()
        self._errors: dict[str, BaseException] = {}

    def tick(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        count = self._count[name] = self._count[name] + 1
        if count > self.steps:
            return
        if count > self.warmup:
            last = self._last[name]
            self._current[name].add(now[0] - last[0], now[1] - last[1])
        self._last[name] = now
        if count < self.warmup or (count > self.warmup and (count - self.warmup) % self.block):
            return
        if count > self.warmup:
            self.blocks[name].append(self._current[name])
            self._current[name] = StepTimes()
        if count == self.steps:
            self._finish(name)
            with self._cv:
                self._cv.wait_for(lambda: len(self._finished) == len(self.names))
            return
        self._pass_turn(name)
        self._last[name] = (time.perf_counter(), time.process_time())

    def _pass_turn(self, name: str) -> None:
        with self._cv:
            waiting = [n for n in self.names if n not in self._finished]
            self._turn = waiting[(waiting.index(name) + 1) % len(waiting)]
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._turn == name)

    def _finish(self, name: str) -> None:
        with self._cv:
            self._finished.add(name)
            index = self.names.index(name)
            after = [n for n in self.names[index + 1:] + self.names[:index] if n not in self._finished]
            if after:
                self._turn = after[0]
            self._cv.notify_all()

    def _run_one(self, name: str, fn: Callable[[], Any]) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._turn == name)
        self._last[name] = (time.perf_counter(), time.process_time())
        try:
            fn()
            if self._count[name] < self.steps:
                raise RuntimeError(f"{name} stopped after {self._count[name]} of {self.steps} steps")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self._errors[name] = exc
            if name not in self._finished:
                self._finish(name)

    def run(self, contestants: dict[str, Callable[[], Any]]) -> dict[str, list["StepTimes"]]:
        """Run every contestant to the end; per contestant, the step times of each timed block."""
        threads = [threading.Thread(target=self._run_one, args=(name, contestants[name]), name=name)
                   for name in self.names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._errors:
            name, error = next(iter(self._errors.items()))
            raise RuntimeError(f"benchmark contestant {name!r} failed: {error}") from error
        return self.blocks


@dataclass
class StepTimes:
    """Wall and process-CPU seconds of each step of one block."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


# How one block is summed up. A round's ratio compares the blocks the contestants ran back to back;
# the figure is the median over rounds. The median step of a block (the figure each benchmark
# reports) shrugs off a step or two that the OS preempted on a shared machine; the block's total
# wall time and total process CPU time are kept in the result files to show they agree.
PRIMARY_ESTIMATOR = "wall_median_step"
ESTIMATORS = {
    "wall_median_step": lambda b: statistics.median(b.wall),
    "wall_block": lambda b: sum(b.wall),
    "cpu_block": lambda b: sum(b.cpu),
}


def round_ratios(blocks: dict[str, list[StepTimes]], numerator: str, denominator: str | Sequence[str],
                 estimator: str = PRIMARY_ESTIMATOR) -> list[float]:
    """Per round, ``estimator`` of numerator's block over denominator's (a round's blocks ran back to back).

    Several denominators (the same loop run twice, on either side of the numerator in the round)
    are averaged: the baseline then brackets the numerator, and drift within a round cancels.
    """
    measure = ESTIMATORS[estimator]
    names = [denominator] if isinstance(denominator, str) else list(denominator)
    baselines = [sum(measure(blocks[name][i]) for name in names) / len(names) for i in range(len(blocks[numerator]))]
    return [measure(block) / baseline for block, baseline in zip(blocks[numerator], baselines)]


def summarize_steps(blocks: dict[str, list[StepTimes]]) -> dict[str, dict[str, float]]:
    """Each contestant's median step (wall), mean step (wall) and mean step (CPU), in microseconds."""
    summary = {}
    for name, timed in blocks.items():
        wall = [t for block in timed for t in block.wall]
        cpu = [t for block in timed for t in block.cpu]
        summary[name] = {"median_step_us": round(statistics.median(wall) * 1e6, 1),
                         "mean_step_us": round(sum(wall) / len(wall) * 1e6, 1),
                         "mean_cpu_step_us": round(sum(cpu) / len(cpu) * 1e6, 1)}
    return summary


def compare(blocks: dict[str, list[StepTimes]], numerator: str, denominator: str | Sequence[str]) -> dict[str, Any]:
    """Every estimator's ratio summary of numerator over denominator."""
    return {estimator: ratio_summary(round_ratios(blocks, numerator, denominator, estimator))
            for estimator in ESTIMATORS}


def ratio_summary(ratios: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles and the count of a list of per-round ratios."""
    ordered = sorted(ratios)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"median": round(statistics.median(ordered), 4), "q1": round(quartiles[0], 4),
            "q3": round(quartiles[2], 4), "rounds": len(ordered)}


# ---------------------------------------------------------------------------------------- results
def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available")
    return device


def result_name(name: str, device: torch.device) -> str:
    return name if device.type == "cpu" else f"{name}_{device.type}"


def write_result(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``out_dir/NAME.json`` and print its one-line summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{name}: {payload['headline']}  target {payload['target']}  "
          f"{'MEETS' if payload['meets_target'] else 'MISSES'}  -> {path}", flush=True)
    return path


def quiet_logs() -> None:
    """The Trainer logs events (resume, early stop) at INFO; benchmarks only want warnings."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

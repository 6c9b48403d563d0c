"""Validation every N steps costs no more than the validation passes themselves.

An MLP fit validating every ``N`` optimizer steps (``val_every_n_steps``), checkpoints off (a
``CheckpointSaver`` that never saves: checkpoint cost is ``checkpoint_cost.py``'s) and early stopping
off. Each validation inside training (the loop's whole step-validation: the pass, the best, the
history row, the logs, the callbacks) is timed, and next to it one standalone validation pass
(``Trainer.evaluate`` on the same split), before or after it in turn, so the machine's load and the
caches treat both alike.
Figure: median over all validations of (validation inside training) / (the pass alone). Target
<= 1.10. For context, ``extra_seconds``: a whole fit with validation minus one without (noisier).

    .venv/bin/python benchmarks/val_every.py          # writes results/val_every.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import common  # noqa: E402

TARGET = 1.10
FULL = {"steps": 192, "every": 8, "repeats": 4, "train": 4096, "val": 4096}
QUICK = {"steps": 8, "every": 4, "repeats": 1, "train": 256, "val": 128}


def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return torch.randn(n, 64, generator=g) + torch.nn.functional.one_hot(y, 64).float() * 2, y


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def fit_seconds(train: Any, val: Any, *, steps: int, every: int) -> tuple[float, Any]:
    from trainwise import Trainer
    from trainwise.callbacks import CheckpointSaver

    class NeverSave(CheckpointSaver):
        def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
            pass

    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(build(), lr=1e-3, schedule="constant", max_steps=steps, epochs=1000, batch_size=64,
                          early_stopping=False, checkpoint=NeverSave(every_epoch=False), progress=False,
                          report=False, run_dir=Path(scratch) / "run",
                          val_every_n_steps=every if val is not None else None)
        result = trainer.fit(train, val)
        return result.summary["train_seconds"], trainer


def paired_validations(train: Any, val: Any, *, steps: int, every: int) -> list[float]:
    """(validation inside training) / (the pass alone) for each validation of one fit."""
    from trainwise.engine.loop import FitLoop

    ratios: list[float] = []
    original = FitLoop._validate_at_step

    def timed(loop: FitLoop) -> None:
        def alone() -> float:
            start = time.perf_counter()
            loop.t.evaluate(loop.val)
            return time.perf_counter() - start

        first = alone() if len(ratios) % 2 else None  # the order alternates: neither gets the warmer caches
        start = time.perf_counter()
        original(loop)
        inside = time.perf_counter() - start
        ratios.append(inside / (first if first is not None else alone()))

    FitLoop._validate_at_step = timed  # type: ignore[method-assign]
    try:
        fit_seconds(train, val, steps=steps, every=every)
    finally:
        FitLoop._validate_at_step = original  # type: ignore[method-assign]
    return ratios


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    plan = QUICK if args.quick else FULL
    train, val = data(plan["train"], 0), data(plan["val"], 1)
    validations = plan["steps"] // plan["every"]
    ratios, extras, passes = [], [], []
    for _ in range(plan["repeats"]):
        ratios += paired_validations(train, val, steps=plan["steps"], every=plan["every"])
        with_val, trainer = fit_seconds(train, val, steps=plan["steps"], every=plan["every"])
        without, _ = fit_seconds(train, None, steps=plan["steps"], every=plan["every"])
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            trainer.evaluate(val)
            timings.append(time.perf_counter() - start)
        one_pass = statistics.median(timings)
        extras.append(with_val - without)
        passes.append(one_pass)
    figure = statistics.median(ratios)
    payload = {"figure": "validation every N steps: a validation inside training / one validation pass alone",
               "headline": f"a validation inside training (every {plan['every']} of {plan['steps']} steps): "
                           f"{figure:.3f}x the pass alone",
               "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratios": ratios,
               "validations_per_fit": validations, "extra_seconds": extras, "one_pass_seconds": passes, "config": plan,
               "machine": common.machine_info(), "quick": args.quick, "device": "cpu"}
    common.write_result(args.out, "val_every", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

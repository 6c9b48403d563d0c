"""``trainwise profile CONFIG``: a few real training steps under ``torch.profiler``; prints the
operators that took the most time (self CPU time, and self CUDA time on a GPU) and writes a Chrome
trace (open it in chrome://tracing or https://ui.perfetto.dev).

The steps are the Trainer's own (the config's model, data, optimizer, precision and callbacks'
work), so the table shows what ``trainwise train`` spends its time on. The first steps are a
warm-up outside the trace; the lr range test is skipped (``optimizer.lr: auto`` profiles at 1e-3:
the speed of a step does not depend on the lr).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwise.config import build
from trainwise.callbacks import Callback
from trainwise.config.schema import load_config
from trainwise.config.check import check_names
from trainwise.errors import ConfigError

WAIT_STEPS, WARMUP_STEPS = 1, 2  # steps before the trace: the first (allocations, lazy init), then warm-up
TOP_OPERATORS = 15


class ProfileSteps(Callback):
    """Runs ``torch.profiler.profile`` over the fit, advancing its schedule at each optimizer step."""

    def __init__(self, steps: int, trace_path: Path, cuda: bool) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        self.trace_path = trace_path
        self.profiler = profile(activities=activities, record_shapes=True, on_trace_ready=self._export,
                                schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=steps, repeat=1))
        self.exported = False

    def _export(self, profiler: Any) -> None:
        profiler.export_chrome_trace(str(self.trace_path))
        self.exported = True

    def on_fit_start(self, trainer: Any) -> None:
        self.profiler.__enter__()

    def on_step_end(self, trainer: Any) -> None:
        self.profiler.step()

    def on_fit_end(self, trainer: Any) -> None:
        self.profiler.__exit__(None, None, None)

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        self.profiler.__exit__(None, None, None)


def profile(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    cfg = load_config(args.config, args.overrides)
    check_names(cfg)
    build.pin_threads(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}-profile"
    if cfg.optimizer.lr == "auto":
        cfg.optimizer.lr = 1e-3
    total = WAIT_STEPS + WARMUP_STEPS + args.steps
    cfg.train.max_steps = total
    cfg.train.epochs = max(cfg.train.epochs, 1000)  # max_steps ends the run, however small an epoch is
    cfg.train.report = False
    cfg.train.early_stopping.enabled = False
    cfg.train.checkpoint.every_epoch = False
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    trace = run_dir / "trace.json"
    cuda = build.device_of(cfg).type == "cuda"
    profiler = ProfileSteps(args.steps, trace, cuda)
    trainer = build.make_trainer(cfg, bundle, model, run_dir, progress=False, callbacks=[profiler])
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer.fit(bundle.train, bundle.val)
    if not profiler.exported:
        raise ConfigError(f"the run ended after {trainer.state.step} steps, before the {args.steps} profiled ones "
                          f"(it needs {total}); lower --steps or give more training data")
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(profiler.profiler.key_averages().table(sort_by=sort_by, row_limit=TOP_OPERATORS))
    print(f"profiled {args.steps} optimizer steps of {cfg.name} (batch {cfg.data.batch_size}, device "
          f"{trainer.device}, after {WAIT_STEPS + WARMUP_STEPS} warm-up steps); top {TOP_OPERATORS} operators by "
          f"{sort_by.replace('_', ' ').replace(' total', '')}")
    print(f"trace: {trace} (open in chrome://tracing or https://ui.perfetto.dev)")
    return 0

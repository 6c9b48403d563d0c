"""``trainwise schedule``: print and plot a config's lr schedule without training."""

from __future__ import annotations

import argparse
import math
import shlex
from typing import Any

from trainwise.config import build
from trainwise.config.schema import load_config
from trainwise.errors import ConfigError

PLACEHOLDER_LR = 1e-3  # drawn when optimizer.lr is auto: the range test decides the lr at train time


def schedule(args: argparse.Namespace) -> int:
    from trainwise.report.schedule_plot import plot_schedules, schedule_table
    from trainwise.schedules import build_schedule

    compared = [n.strip() for n in args.compare.split(",") if n.strip()] if args.compare is not None else []
    if args.compare is not None and not compared:
        raise ConfigError(f"--compare names no schedule, got {args.compare!r}; give comma-separated schedule names "
                          "to overlay, e.g. --compare cosine,onecycle,step, or leave --compare out")
    cfg = load_config(args.config, args.overrides)
    if cfg.data.batch_size == "auto":
        raise ConfigError("the schedule's length depends on the batch size, and data.batch_size is 'auto'; run "
                          "trainwise find-batch-size CONFIG and pass the size it prints as data.batch_size=N")
    bundle = build.load_bundle(cfg)
    batches = math.ceil(len(bundle.train[0]) / cfg.data.batch_size)
    steps_per_epoch = math.ceil(batches / cfg.train.accumulate)
    total = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    auto = cfg.optimizer.lr == "auto"
    lr = PLACEHOLDER_LR if auto else float(cfg.optimizer.lr)
    names = [cfg.schedule.name] + compared
    schedules = {}
    for name in dict.fromkeys(names):
        params = cfg.schedule.params() if name == cfg.schedule.name else _comparison_params(name, total, lr)
        schedules[name] = build_schedule(name, lr=lr, total_steps=total, steps_per_epoch=steps_per_epoch,
                                         warmup=cfg.schedule.warmup, warmup_mode=cfg.schedule.warmup_mode,
                                         warmup_start_factor=cfg.schedule.warmup_start_factor, **params)
    print(f"{total} optimizer steps ({cfg.train.epochs} epochs x {steps_per_epoch} steps), lr {lr:g}"
          + (" (a placeholder: optimizer.lr is auto)" if auto else ""))
    if auto:
        command = shlex.join(["trainwise", "lr-find", str(args.config), *args.overrides])
        print(f"note: optimizer.lr is auto, so train sets the lr with the LR range test; lr {lr:g} here is a "
              f"placeholder and only the schedule's shape is shown. {command} prints the lr train would use; "
              "or set optimizer.lr")
    for name, sched in schedules.items():
        print(f"\n{name}:\n{'step':>8}  {'lr':>12}  {'momentum':>9}")
        for step, lr_value, momentum in schedule_table(sched, total):
            print(f"{step:>8}  {lr_value:>12.6g}  {'' if momentum is None else f'{momentum:.4f}':>9}")
    note = (f"lr {lr:g} is a placeholder (optimizer.lr is auto): the shape is what is shown;\n"
            "trainwise lr-find CONFIG gives the lr train would use") if auto else None
    out = plot_schedules(schedules, total, args.out, note=note)
    print(f"\nplot: {out}")
    return 0


def _comparison_params(name: str, total: int, lr: float) -> dict[str, Any]:
    """Typical settings for a schedule overlaid with --compare, scaled to the run's length."""
    third = max(total // 3, 1)
    return {
        "step": {"step_size": third, "gamma": 0.1},
        "multistep": {"milestones": [max(total // 2, 1), max(3 * total // 4, 2)], "gamma": 0.1},
        "exponential": {"gamma": 0.01 ** (1 / max(total, 1))},
        "inverse_time": {"decay": 10 / max(total, 1)},
        "cosine_restarts": {"cycle_steps": max(total // 4, 1)},
        "sgdr": {"cycle_steps": max(total // 4, 1)},
        "piecewise": {"boundaries": [third, 2 * third], "values": [lr, lr / 10, lr / 100]},
    }.get(name, {})

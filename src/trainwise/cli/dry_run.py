"""``trainwise train --dry-run``: check every name in the config and print what a run would do,
without loading the data, building the model or touching the run folder.

It imports only what the checks need (the config, the lists of valid names, the schedules), so
it costs little more than ``import torch``; the run's real length and shapes are known only
once the data is loaded, and the printout says where a figure is an estimate.
"""

from __future__ import annotations

import argparse

import yaml

from trainwise.config.check import check_names, estimated_steps
from trainwise.config.schema import RunConfig, load_config


def dry_run_command(args: argparse.Namespace) -> int:
    """The ``train --dry-run`` command: load the config and the overrides, then :func:`run_dry_run`."""
    return run_dry_run(load_config(args.config, args.overrides), args)


def run_dry_run(cfg: RunConfig, args: argparse.Namespace) -> int:
    """Validate ``cfg`` and print the resolved config, the run's length and the callback order.

    Reads ``args.run_dir`` and ``args.quiet`` (the progress bar is left out when quiet).

    Returns:
        0; a bad name raises a ConfigError (the CLI prints it as one ``error:`` line).
    """
    check_names(cfg)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    print()
    for line in plan_lines(cfg, args):
        print(line)
    print("callbacks, in the order they run:")
    for index, name in enumerate(callback_order(cfg, quiet=bool(getattr(args, "quiet", False))), 1):
        print(f"  {index}. {name}")
    return 0


def plan_lines(cfg: RunConfig, args: argparse.Namespace) -> list[str]:
    """What the run would do, one line each: data, length, lr, model, run folder."""
    total, steps_per_epoch, exact = estimated_steps(cfg)
    about = "" if exact else "about "
    where = cfg.data.path or cfg.data.root
    lines = [
        f"data: {cfg.data.dataset}{f' ({where})' if where else ''}, not loaded by the dry run",
        f"length: {about}{total:,} optimizer steps ({cfg.train.epochs} epochs x {about}{steps_per_epoch:,} steps"
        f"{', capped by train.max_steps' if cfg.train.max_steps and cfg.train.max_steps == total else ''})"
        f"{'' if exact else '; the data size is known once it is loaded'}",
        f"schedule: {cfg.schedule.name}, warmup {cfg.schedule.warmup:g}",
    ]
    if cfg.optimizer.lr == "auto":
        lines.append(f"lr: auto, the LR range test ({cfg.train.lr_find.num_steps} steps, rule "
                     f"{cfg.train.lr_find.rule}) picks it before training")
    else:
        lines.append(f"lr: {cfg.optimizer.lr:g} ({cfg.optimizer.name})")
    lines.append(f"model: {cfg.model.name}, init {cfg.model.init}")
    run_dir = getattr(args, "run_dir", None)
    lines.append(f"run folder: {run_dir or f'runs/{cfg.name}-<timestamp>'}")
    return lines


def callback_order(cfg: RunConfig, *, quiet: bool) -> list[str]:
    """The built-in callbacks the CLI's Trainer gets, in the order the Trainer runs them."""
    es = cfg.train.early_stopping
    order = []
    if es.enabled:
        condition = "" if cfg.data.val_fraction > 0 else ", only when the data has a validation split"
        order.append(f"EarlyStopping (monitor {es.monitor}, patience {es.patience}{condition})")
    if cfg.optimizer.freeze:
        order.append(f"ModuleFreezer ({', '.join(cfg.optimizer.freeze)})")
    keep = cfg.train.checkpoint.keep_last
    order.append(f"CheckpointSaver (best.pt, last.pt, keep {keep} step checkpoint{'s' if keep > 1 else ''})")
    if not quiet:
        order.append("ProgressBar")
    return order

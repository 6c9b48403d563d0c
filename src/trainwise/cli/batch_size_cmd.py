"""``trainwise find-batch-size CONFIG``: the batch-size finder on a config's model and data, with
every size it tried (``data.batch_size: auto`` runs the same finder at the start of ``train``)."""

from __future__ import annotations

import argparse

from trainwise.config import build
from trainwise.config.schema import load_config
from trainwise.config.check import check_names


def find_batch_size(args: argparse.Namespace) -> int:
    from trainwise.engine.batch_size import BatchSizeResult, Trial, describe_trials

    cfg = load_config(args.config, args.overrides)
    check_names(cfg)
    build.pin_threads(cfg)
    cfg.data.batch_size = "auto"
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    found = build.resolve_batch_size(cfg, bundle, model)
    assert found is not None  # batch_size is auto
    result = BatchSizeResult(found["batch_size"], found["mode"], found["rule"],
                             [Trial(**trial) for trial in found["trials"]])
    print(f"device {build.device_of(cfg)}, {found['mode']} mode; sizes tried (* chosen):")
    for line in describe_trials(result):
        print(line)
    print(f"batch size {found['batch_size']}: {found['rule']}")
    if found["accumulate"] > 1 or cfg.data.effective_batch_size is not None:
        print(f"micro-batch {found['micro_batch_size']} x accumulate {found['accumulate']} = effective batch "
              f"{found['effective_batch_size']}")
    if cfg.optimizer.lr != "auto" and cfg.optimizer.lr_scaling != "none":
        print(f"lr {build.scaled_lr(cfg, float(cfg.optimizer.lr)):.4g} ({cfg.optimizer.lr_scaling} scaling from "
              f"{cfg.optimizer.lr:g} at batch {cfg.optimizer.base_batch_size})")
    overrides = f"data.batch_size={found['micro_batch_size']}"
    if found["accumulate"] > 1:
        overrides += f" train.accumulate={found['accumulate']}"
    print(f"use it: trainwise train {args.config} {overrides}")
    return 0

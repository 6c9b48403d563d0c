"""The CLI commands: train, evaluate, predict, schedule, lr-find."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from trainwise import checkpoint as ckpt
from trainwise.cli import EXIT_RUN_FAILED
from trainwise.cli import build
from trainwise.config import RunConfig, config_from_dict, load_config
from trainwise.errors import CheckpointError, DataError, DataNotFoundError, LRFinderError
from trainwise.run_folder import default_run_dir

log = logging.getLogger("trainwise")


# ---------------------------------------------------------------------------------------- train
def train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    build.pin_threads(cfg)
    run_dir = _run_dir_for(cfg, args)
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    lr_finder_summary = None
    if args.dry_run:
        lr = cfg.optimizer.lr if cfg.optimizer.lr != "auto" else 1e-3
        trainer = build.make_trainer(cfg, bundle, model, build.scaled_lr(cfg, lr), run_dir, progress=not args.quiet)
        return _print_dry_run(cfg, trainer, bundle)
    if cfg.optimizer.lr == "auto":
        lr, lr_finder_summary = _resolve_auto_lr(cfg, bundle, model, run_dir, args.resume)
    else:
        lr = build.scaled_lr(cfg, float(cfg.optimizer.lr))
    cfg.optimizer.lr = lr  # the resolved config records the lr actually used
    trainer = build.make_trainer(cfg, bundle, model, lr, run_dir, progress=not args.quiet)
    if lr_finder_summary is not None:
        trainer.summary_extra["lr_finder"] = lr_finder_summary
    if bundle.class_names:
        trainer.summary_extra["class_names"] = bundle.class_names
    run_dir.mkdir(parents=True, exist_ok=True)
    build.write_data_description(run_dir, bundle)
    result = trainer.fit(bundle.train, bundle.val, test=bundle.test, resume=args.resume,
                         allow_config_changes=args.resume_changed)
    _print_result(result)
    if result.status in ("diverged", "failed"):
        return EXIT_RUN_FAILED
    return 0


def _run_dir_for(cfg: RunConfig, args: argparse.Namespace) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    if args.resume == "auto":
        previous = sorted(Path("runs").glob(f"{cfg.name}-*"), key=lambda p: p.stat().st_mtime)
        if not previous:
            raise CheckpointError(f"--resume auto found no earlier run of {cfg.name!r} under runs/; "
                                  "pass --run-dir with the folder of the run to continue")
        return previous[-1]
    return default_run_dir(cfg.name)


def _resolve_auto_lr(cfg: RunConfig, bundle, model, run_dir: Path, resume: Any) -> tuple[float, dict]:
    """Run the LR range test (or, on resume, reuse the lr the run started with)."""
    if resume is not None:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else None
        if saved and isinstance(saved["optimizer"]["lr"], (int, float)):
            return float(saved["optimizer"]["lr"]), {"reused_from_run": True}
    result = _run_lr_finder(cfg, bundle, model, run_dir)
    if result.suggestion is None:
        raise LRFinderError(f"optimizer.lr=auto: the LR range test gave no suggestion ({result.reason}); "
                            f"set optimizer.lr to a number, see {run_dir / 'lr_find.png'}")
    log.info("lr range test suggests lr %.3g (rule %s)", result.suggestion, result.rule)
    return float(result.suggestion), {"suggestion": result.suggestion, "rule": result.rule,
                                      "suggestions": result.suggestions}


def _run_lr_finder(cfg: RunConfig, bundle, model, run_dir: Path):
    from trainwise.loader import InMemoryBatches
    from trainwise.lr_finder import LRFinder, save_lr_find
    from trainwise.metrics import build_loss

    device = build.device_of(cfg)
    model.to(device)
    optimizer = build.make_optimizer(cfg, model, 1e-3)
    f = cfg.train.lr_find
    x, y = bundle.train
    batches = InMemoryBatches(x.to(device), y.to(device), batch_size=cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    loss_fn = build_loss(build.loss_name(cfg, bundle), label_smoothing=cfg.train.label_smoothing)
    if bundle.task == "regression" and y.dim() == 1:
        loss_fn = _reshaping(loss_fn)
    finder = LRFinder(model, optimizer, loss_fn, start_lr=f.start_lr, end_lr=f.end_lr, num_steps=f.num_steps,
                      rule=f.rule, device=device,
                      # fp16 needs a grad scaler the range test does not have; bf16 behaves alike without one
                      precision="bf16" if cfg.train.precision == "bf16" else "fp32")

    def epochs():
        epoch = 0
        while True:
            batches.set_epoch(epoch)
            yield from batches
            epoch += 1

    result = finder.run(lambda: epochs())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_lr_find(result, run_dir)
    return result


def _reshaping(loss_fn):
    return lambda out, y: loss_fn(out, y.reshape(out.shape))


def _print_dry_run(cfg: RunConfig, trainer, bundle) -> int:
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    print(f"\ndata: {bundle.name}, {len(bundle.train[0])} train / "
          f"{0 if bundle.val is None else len(bundle.val[0])} val / {0 if bundle.test is None else len(bundle.test[0])}"
          f" test samples, input shape {tuple(bundle.input_shape)}")
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"model: {cfg.model.name}, {params:,} parameters")
    print("callbacks, in the order they run:")
    for index, callback in enumerate(trainer.callbacks, 1):
        print(f"  {index}. {type(callback).__name__}")
    return 0


def _print_result(result) -> None:
    summary = result.summary
    figures = [f"status {summary['status']}", f"epochs {summary['epochs_run']}", f"steps {summary['steps']}"]
    for key in ("best_val_loss", "best_val_accuracy", "test_accuracy", "test_rmse", "test_r2"):
        if summary.get(key) is not None:
            figures.append(f"{key} {summary[key]:.4f}")
    figures.append(f"{summary['wall_seconds']:.1f}s")
    print("  ".join(figures))
    if summary.get("stop_reason") and summary["status"] != "completed":
        print(summary["stop_reason"])
    report = result.run_dir / "report.html"
    print(f"run folder: {result.run_dir}")
    if report.exists():
        print(f"report: {report}")


# ---------------------------------------------------------------------------------------- evaluate / predict
def _load_run(run_dir: str, checkpoint_name: str):
    folder = Path(run_dir)
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise DataNotFoundError(f"{folder} is not a trainwise run folder: {config_path} is missing")
    cfg = config_from_dict(yaml.safe_load(config_path.read_text()))
    path = folder / "checkpoints" / checkpoint_name
    if not path.is_file() and checkpoint_name == "best.pt":
        path = folder / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint {checkpoint_name} (nor last.pt) in {folder / 'checkpoints'}")
    return folder, cfg, path


def evaluate(args: argparse.Namespace) -> int:
    folder, cfg, path = _load_run(args.run_dir, args.checkpoint)
    bundle = build.load_bundle(cfg)
    split = {"train": bundle.train, "val": bundle.val, "test": bundle.test}[args.split]
    if split is None:
        raise DataError(f"this run has no {args.split} split; choose one of train, val, test that exists")
    model = build.make_bare_model(cfg, tuple(bundle.input_shape), bundle.num_outputs)
    model.load_state_dict(ckpt.load_checkpoint(path)["model"])
    trainer = build.make_trainer(cfg, bundle, model, float(cfg.optimizer.lr), folder, progress=False)
    metrics = trainer.evaluate(split)
    print(f"{args.split} metrics of {path}:")
    for key, value in metrics.items():
        print(f"  {key:<15} {value:.6g}")
    out = folder / f"evaluate_{args.split}.json"
    out.write_text(json.dumps({"checkpoint": str(path), "split": args.split, **metrics}, indent=2) + "\n")
    return 0


def predict(args: argparse.Namespace) -> int:
    from trainwise.data import apply_normalization

    folder, cfg, path = _load_run(args.run_dir, args.checkpoint)
    description = json.loads((folder / "data.json").read_text())
    inputs_path = Path(args.inputs)
    if not inputs_path.is_file():
        raise DataNotFoundError(f"inputs file not found: {inputs_path}")
    with np.load(inputs_path) as arrays:
        key = "x" if "x" in arrays.files else arrays.files[0]
        x = torch.as_tensor(arrays[key], dtype=torch.float32)
    shape = tuple(description["input_shape"])
    if tuple(x.shape[1:]) != shape:
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise DataError(f"inputs have shape {tuple(x.shape[1:])} per sample, the model expects {shape}")
        x = x.reshape(len(x), *shape)
    if description["normalization"]:
        x = apply_normalization(x, description["normalization"])
    model = build.make_bare_model(cfg, shape, description["num_outputs"])
    model.load_state_dict(ckpt.load_checkpoint(path)["model"])
    model.eval()
    with torch.inference_mode():
        outputs = torch.cat([model(chunk) for chunk in x.split(1024)])
    result: dict[str, np.ndarray] = {"outputs": outputs.numpy()}
    if description["task"] == "classification":
        result["predictions"] = outputs.argmax(dim=1).numpy()
        result["probabilities"] = torch.softmax(outputs, dim=1).numpy()
    else:
        result["predictions"] = outputs.squeeze(1).numpy() if outputs.shape[1] == 1 else outputs.numpy()
    np.savez(args.out, **result)
    print(f"wrote {len(x)} predictions to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------- schedule / lr-find
def schedule(args: argparse.Namespace) -> int:
    from trainwise.report.schedule_plot import plot_schedules, schedule_table
    from trainwise.schedules import build_schedule

    cfg = load_config(args.config, args.overrides)
    bundle = build.load_bundle(cfg)
    batches = math.ceil(len(bundle.train[0]) / cfg.data.batch_size)
    steps_per_epoch = math.ceil(batches / cfg.train.accumulate)
    total = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    lr = 1e-3 if cfg.optimizer.lr == "auto" else float(cfg.optimizer.lr)
    names = [cfg.schedule.name] + ([n.strip() for n in args.compare.split(",") if n.strip()] if args.compare else [])
    schedules = {}
    for name in dict.fromkeys(names):
        params = cfg.schedule.params() if name == cfg.schedule.name else _comparison_params(name, total, lr)
        schedules[name] = build_schedule(name, lr=lr, total_steps=total, steps_per_epoch=steps_per_epoch,
                                         warmup=cfg.schedule.warmup, warmup_mode=cfg.schedule.warmup_mode,
                                         warmup_start_factor=cfg.schedule.warmup_start_factor, **params)
    print(f"{total} optimizer steps ({cfg.train.epochs} epochs x {steps_per_epoch} steps), lr {lr:g}")
    for name, sched in schedules.items():
        print(f"\n{name}:\n{'step':>8}  {'lr':>12}  {'momentum':>9}")
        for step, lr_value, momentum in schedule_table(sched, total):
            print(f"{step:>8}  {lr_value:>12.6g}  {'' if momentum is None else f'{momentum:.4f}':>9}")
    out = plot_schedules(schedules, total, args.out)
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


def lr_find(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    build.pin_threads(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}-lr-find"
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    result = _run_lr_finder(cfg, bundle, model, run_dir)
    for rule, value in result.suggestions.items():
        print(f"  {rule:<9} {'none' if value is None else f'{value:.3g}'}")
    if result.suggestion is None:
        print(f"no suggestion: {result.reason}")
    else:
        print(f"suggested lr: {result.suggestion:.3g} (rule {result.rule})")
    print(f"curve: {run_dir / 'lr_find.png'}")
    return 0

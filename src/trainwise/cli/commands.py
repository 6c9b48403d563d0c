"""The CLI commands train and lr-find (evaluate and predict: cli/inference.py; schedule: cli/schedule_cmd.py;
``train --dry-run``: cli/dry_run.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from trainwise.config import build
from trainwise.cli import EXIT_RUN_FAILED
from trainwise.config.check import check_names
from trainwise.config.schema import RunConfig, load_config
from trainwise.cli.rank import continue_after_restart, train_rank
from trainwise.distributed.job import writing_run_folder
from trainwise.distributed.ops import is_main
from trainwise.distributed.launch import check_nproc, check_sync_batchnorm
from trainwise.distributed.world import env_world_size
from trainwise.errors import CheckpointError, ConfigError
from trainwise.runfolder.files import default_run_dir, refuse_used_run_dir

log = logging.getLogger("trainwise")


# ---------------------------------------------------------------------------------------- train
def train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_names(cfg)  # a typo fails in a second, before the data loads
    continue_after_restart(args)
    if env_world_size() > 1:  # one rank of a DDP job (started by --nproc or torchrun)
        return train_rank(args, cfg, _run_dir_for(cfg, args), _train)
    if args.nproc is not None:
        check_nproc(args.nproc, build.device_of(cfg))
    if _launches(args):
        check_sync_batchnorm(cfg.train.sync_batchnorm, build.device_of(cfg), args.nproc)
        from trainwise.cli.launch import check_launch_args, launch

        check_launch_args(args)
        run_dir = _run_dir_for(cfg, args)
        if getattr(args, "doctor", False):  # pre-flight once, in this process, before any rank starts
            run_dir.mkdir(parents=True, exist_ok=True)
            if _doctor_fails(cfg, build.load_bundle(cfg), run_dir):
                return EXIT_RUN_FAILED
        return launch(args, run_dir)
    return _train(args, cfg, _run_dir_for(cfg, args))


def _launches(args: argparse.Namespace) -> bool:
    """Whether this command starts a job through the elastic launcher (and is not one of its ranks)."""
    given = [flag for flag, value in (("--max-restarts", getattr(args, "max_restarts", 0)),
                                      ("--nnodes", str(getattr(args, "nnodes", "1")) != "1"),
                                      ("--rdzv-endpoint", getattr(args, "rdzv_endpoint", None)),
                                      ("--rdzv-id", getattr(args, "rdzv_id", None))) if value]
    launcher_flags = bool(given)
    if launcher_flags and args.nproc is None:
        raise ConfigError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --nproc N (processes on "
                          "this machine); add --nproc, e.g. --nproc 2")
    return (args.nproc or 1) > 1 or bool(launcher_flags)


def _train(args: argparse.Namespace, cfg: RunConfig, run_dir: Path) -> int:
    with writing_run_folder(run_dir):  # one writer per run folder, from data.json to the report
        return _train_in_folder(args, cfg, run_dir)


def _train_in_folder(args: argparse.Namespace, cfg: RunConfig, run_dir: Path) -> int:
    build.pin_threads(cfg)
    main = is_main()
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    trainer = build.make_trainer(cfg, bundle, model, run_dir, progress=not args.quiet)
    if bundle.class_names:
        trainer.summary_extra["class_names"] = bundle.class_names
    if main:
        if args.resume is None:  # refused before anything is written: another run's data.json stays its own
            refuse_used_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if args.resume is None or not (run_dir / "data.json").is_file():  # a resume keeps the run's description
            build.write_data_description(run_dir, bundle)
    if getattr(args, "doctor", False) and env_world_size() <= 1 and _doctor_fails(cfg, bundle, run_dir):
        return EXIT_RUN_FAILED
    result = trainer.fit(bundle.train, bundle.val, test=bundle.test, resume=args.resume,
                         allow_config_changes=args.resume_changed)
    if main and bundle.tokenizer is not None:
        build.record_token_figures(result, bundle)
    if main:
        _print_result(result)
    if result.status in ("diverged", "failed"):
        return EXIT_RUN_FAILED
    return 0


def _doctor_fails(cfg: RunConfig, bundle, run_dir: Path) -> bool:
    from trainwise.cli.doctor_cmd import preflight

    report = preflight(cfg, run_dir / "doctor.json", {}, bundle=bundle)
    if report.failed():
        print(f"the doctor found {len(report.failed())} FAIL(s): "
              f"{', '.join(c.id for c in report.failed())}; not training (see {run_dir / 'doctor.json'})")
        return True
    return False


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


def _print_result(result) -> None:
    summary = result.summary
    figures = [f"status {summary['status']}", f"epochs {summary['epochs_run']}", f"steps {summary['steps']}"]
    for key in ("best_val_loss", "best_val_accuracy", "best_val_bits_per_char", "test_accuracy", "test_bits_per_char",
                "test_rmse", "test_r2"):
        if summary.get(key) is not None:
            figures.append(f"{key} {summary[key]:.4f}")
    figures.append(f"{summary['wall_seconds']:.1f}s")
    print("  ".join(figures))
    if summary.get("stop_reason") and summary["status"] != "completed":
        print(summary["stop_reason"])
    if summary.get("pruned_at_epoch") is not None:
        print(f"pruned at epoch {summary['pruned_at_epoch']}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    for line in (summary.get("timings") or {}).get("bottleneck", []):
        print(f"where the time went: {line}")
    report = result.run_dir / "report.html"
    print(f"run folder: {result.run_dir}")
    if report.exists():
        print(f"report: {report}")


# ---------------------------------------------------------------------------------------- lr-find
def lr_find(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    build.pin_threads(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}-lr-find"
    bundle = build.load_bundle(cfg)
    model = build.make_model(cfg, bundle)
    cfg.optimizer.lr = "auto"
    trainer = build.make_trainer(cfg, bundle, model, run_dir, progress=False)
    result = trainer.find_lr(bundle.train)
    for rule, value in result["suggestions"].items():
        print(f"  {rule:<9} {'none' if value is None else f'{value:.3g}'}")
    if result["suggestion"] is None:
        print(f"no suggestion: {result.get('reason')}")
    else:
        print(f"suggested lr: {result['suggestion']:.3g} (rule {result['rule']})")
    if result.get("unread_curve"):  # the curve gave no reading; the lr was read under where the test diverged
        print(f"  the curve gave no reading ({result['unread_curve']}): read {result['decades_under_divergence']:g} "
              f"decades of lr under where the retried test diverged ({result['diverged_at']:.3g})")
    print(f"curve: {run_dir / 'lr_find.png'}")
    return 0

"""``trainwise doctor CONFIG`` (the pre-flight checks), ``trainwise doctor RUN_DIR`` (the post-run
diagnosis) and the pre-flight of ``trainwise train CONFIG --doctor``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from trainwise.config import build
from trainwise.cli import EXIT_RUN_FAILED
from trainwise.config.schema import RunConfig, load_config
from trainwise.config.check import check_names
from trainwise.errors import ConfigError, DataNotFoundError


def doctor(args: argparse.Namespace) -> int:
    from trainwise.doctor.diagnosis import is_run_folder
    from trainwise.doctor.thresholds import parse_threshold_options, thresholds_of

    target = Path(args.target)
    thresholds = parse_threshold_options(args.threshold)
    thresholds_of(thresholds)  # a typo fails before any data loads
    if target.is_dir():
        if not is_run_folder(target):
            raise DataNotFoundError(f"{target} is a folder but not a run folder (no summary.json, metrics.csv or "
                                    "config.yaml); pass a run folder (runs/<name>-<time>) or a YAML config")
        if args.overrides:
            raise ConfigError(f"overrides {' '.join(args.overrides)} apply to a config, not to the run folder "
                              f"{target}; drop them")
        report = diagnose_run(target, thresholds, Path(args.out) if args.out else None)
    else:
        cfg = load_config(target, args.overrides)
        check_names(cfg)
        out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-doctor" / "doctor.json"
        report = preflight(cfg, out, thresholds, baselines=not args.no_baselines)
    return EXIT_RUN_FAILED if report.failed() else 0


def preflight(cfg: RunConfig, out: Path, thresholds: dict[str, Any], *, baselines: bool = True,
              bundle: Any = None) -> Any:
    """The pre-flight checks of a config: the same data, model, loss and optimizer as ``train``.
    Writes ``out`` (doctor.json) and the samples PNG beside it, and prints the table."""
    from trainwise import doctor as doctor_api
    from trainwise.doctor.render import print_report

    build.pin_threads(cfg)
    bundle = bundle if bundle is not None else build.load_bundle(cfg)
    if not bundle.in_memory:
        raise ConfigError(f"the doctor's pre-flight checks read data held in memory, got data.dataset="
                          f"{cfg.data.dataset!r} read from disk; train without --doctor, or with data.cache=true for "
                          "an image folder that fits in memory")
    model = build.make_model(cfg, bundle)
    auto = cfg.optimizer.lr == "auto"
    lr = 1e-3 if auto else build.scaled_lr(cfg, float(cfg.optimizer.lr))
    t = cfg.train
    classification = bundle.task == "classification"
    report = doctor_api.check(
        model, bundle.train, bundle.val, test=bundle.test, loss=build.loss_name(cfg, bundle),
        optimizer=build.make_optimizer(cfg, model, lr), lr="auto" if auto else None, batch_size=cfg.data.batch_size,
        thresholds=thresholds, baselines=baselines, out_dir=out.parent, seed=cfg.seed, device=t.device,
        grad_clip=t.grad_clip, grad_clip_mode=t.grad_clip_mode, accumulate=t.accumulate, precision=t.precision,
        label_smoothing=t.label_smoothing, lr_find=t.lr_find.model_dump(), sampler=cfg.data.sampler,
        class_weights=build.class_weights_of_config(cfg) if classification else None, focal_gamma=cfg.loss.gamma,
        feature_names=_feature_names(bundle))
    report.write(out)
    print_report(report, title=f"trainwise doctor: {cfg.name} (pre-flight)")
    print(f"doctor.json: {out}")
    if "samples_per_class" in report.artifacts:
        print(f"samples per class: {out.parent / report.artifacts['samples_per_class']}")
    return report


def diagnose_run(run_dir: Path, thresholds: dict[str, Any], out: Optional[Path]) -> Any:
    """The post-run diagnosis, merged into the run's doctor.json (pre-flight checks are kept)."""
    from trainwise.doctor import DoctorReport, diagnose
    from trainwise.doctor.render import print_report

    report = diagnose(run_dir, thresholds=thresholds)
    existing = run_dir / "doctor.json"
    if existing.exists():
        try:
            report = DoctorReport.from_json(json.loads(existing.read_text())).merged_with(report)
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable doctor.json is replaced
    target = out or existing
    report.write(target)
    if out is None and (run_dir / "report.html").exists():
        from trainwise.engine.python_run import write_plots_and_report

        write_plots_and_report(run_dir, _task_of(run_dir))
    print_report(report, title=f"trainwise doctor: {run_dir} (diagnosis)")
    print(f"doctor.json: {target}")
    return report


def _task_of(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("task") or "classification"
    except (OSError, ValueError):
        return "classification"


def _feature_names(bundle: Any) -> Any:
    """A CSV's feature columns as the model sees them (text columns one-hot: ``city=paris``), else None."""
    from trainwise.data.categorical import encoded_names

    columns = bundle.details.get("feature_names")
    return encoded_names(columns, bundle.details.get("categorical", {}), bundle.details.get("missing_fill", {})) \
        if columns else None

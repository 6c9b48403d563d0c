"""The ``trainwise`` command line: a thin layer over the Python API.

User mistakes (a bad config, a missing file, bad data) print one ``error:`` line and exit 2;
``--debug`` shows the traceback. A run that diverged or failed exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, Optional, Sequence

from trainwise.errors import TrainwiseError

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from trainwise import __version__

    parser = argparse.ArgumentParser(prog="trainwise", description="Train PyTorch models with good defaults.")
    parser.add_argument("--version", action="version", version=f"trainwise {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train from a YAML config", description="Train from a YAML config; "
                           "overrides look like optimizer.lr=0.01 train.epochs=5.")
    _config_args(train)
    train.add_argument("--run-dir", help="run folder (default runs/<name>-<timestamp>)")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and callback order, do not train")
    train.add_argument("--resume", metavar="auto|PATH", help="continue from a checkpoint: 'auto' picks the newest "
                       "that verifies in the run folder")
    train.add_argument("--resume-changed", action="store_true",
                       help="allow a resume whose config changes optimizer.lr, train.epochs or train.max_steps")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    evaluate = sub.add_parser("evaluate", help="re-evaluate a run's best checkpoint")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", choices=("train", "val", "test"),
                          help="split of the run's own data set (default test)")
    evaluate.add_argument("--data", metavar="FILE", help="evaluate on this file instead: .npz with arrays x and y, "
                          "or .csv with the training columns and the target column")
    evaluate.add_argument("--target", metavar="COLUMN", help="the target column of a --data CSV "
                          "(default: the run's data.target)")
    _model_args(evaluate)

    predict = sub.add_parser("predict", help="predict with a run's best checkpoint")
    predict.add_argument("run_dir")
    predict.add_argument("inputs", help=".npz with an array 'x', or .csv with the training columns "
                         "(raw, unnormalized inputs; a target column is ignored)")
    predict.add_argument("--out", required=True, help="where to write predictions: .npz or .csv")
    _model_args(predict)

    schedule = sub.add_parser("schedule", help="print and plot a config's lr schedule without training")
    _config_args(schedule)
    schedule.add_argument("--compare", help="comma-separated schedule names to overlay, e.g. cosine,onecycle,step")
    schedule.add_argument("--out", help="PNG path (default schedule.png)", default="schedule.png")

    lr_find = sub.add_parser("lr-find", help="run the LR range test for a config")
    _config_args(lr_find)
    lr_find.add_argument("--run-dir", help="where lr_find.json and lr_find.png go (default runs/<name>-lr-find)")

    report = sub.add_parser("report", help="re-render a run's report.html from its folder",
                            description="Re-render report.html (SVG charts, confusion matrix table) from "
                            "the run folder's files; --png also draws the matplotlib PNGs and links them.")
    report.add_argument("run_dir")
    report.add_argument("--png", action="store_true", help="also write curves.png, lr.png and confusion.png")

    study = sub.add_parser("study", help="run a controlled study: init, schedules, normalization, batch-size, "
                           "optimizers, dropout, lr-surface", description="Train each variant of one factor "
                           "once per seed with the same budget, data split and seeds; write study.md, study.json, "
                           "PNGs and report.html with a verdict on which differences hold across seeds. "
                           "lr-surface needs no config.")
    study.add_argument("study", help="init | schedules | normalization | batch-size | optimizers | dropout | lr-surface")
    study.add_argument("config", nargs="?", help="YAML config file (not for lr-surface)")
    study.add_argument("overrides", nargs="*", help="section.key=value overrides, applied to every variant")
    study.add_argument("--seeds", type=int, help="seeds per variant (default: the study's, see README)")
    study.add_argument("--epochs", type=int, help="epochs per run (default: the study's)")
    study.add_argument("--steps", type=int, help="optimizer steps per run instead of epochs")
    study.add_argument("--train-samples", metavar="N|all", help="train on the first N samples of one seeded "
                       "shuffle of the train split (the normalization study's default is 8000)")
    study.add_argument("--workers", type=int, default=2, help="parallel worker processes, at most the cores "
                       "(default 2); torch threads are split among them")
    study.add_argument("--resume", action="store_true", help="continue a killed study: finished runs are kept, "
                       "half-done ones continue from their checkpoint")
    study.add_argument("--target", type=float, help="the val metric for 'steps to target' (default 95%% of "
                       "the best variant's final accuracy)")
    study.add_argument("--out", help="study folder (default runs/studies/<study>-<config name>)")
    return parser


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR/checkpoints (default best.pt)")
    parser.add_argument("--model", metavar="package.module:factory",
                        help="rebuild the model with this factory instead of the run's model.name")


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(build_parser(), argv)
    logging.basicConfig(level=logging.INFO if not getattr(args, "quiet", False) else logging.WARNING,
                        format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        return _handler(args)(args)
    except TrainwiseError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # a second Ctrl-C during training: stopped at once, no checkpoint of this step
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides come after options too (``train c.yaml --dry-run a.b=1``)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# Each command's function, imported only when it runs: `trainwise --help` imports no torch, and a
# dry run imports nothing of training.
HANDLERS = {
    "train": "trainwise.cli.commands:train",
    "evaluate": "trainwise.cli.inference:evaluate",
    "predict": "trainwise.cli.inference:predict",
    "schedule": "trainwise.cli.schedule_cmd:schedule",
    "lr-find": "trainwise.cli.commands:lr_find",
    "report": "trainwise.cli.report_cmd:report",
    "study": "trainwise.cli.study_cmd:study",
}
DRY_RUN_HANDLER = "trainwise.cli.dry_run:dry_run_command"


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    spec = DRY_RUN_HANDLER if getattr(args, "dry_run", False) else HANDLERS[args.command]
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)

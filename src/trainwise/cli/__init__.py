"""The ``trainwise`` command line: a thin layer over the Python API.

User mistakes (a bad config, a missing file, bad data) print one ``error:`` line and exit 2;
``--debug`` shows the traceback. A run that diverged or failed exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

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
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR/checkpoints (default best.pt)")

    predict = sub.add_parser("predict", help="predict with a run's best checkpoint")
    predict.add_argument("run_dir")
    predict.add_argument("inputs", help=".npz file with an array 'x' (raw, unnormalized inputs)")
    predict.add_argument("--out", required=True, help="where to write predictions (.npz)")
    predict.add_argument("--checkpoint", default="best.pt")

    schedule = sub.add_parser("schedule", help="print and plot a config's lr schedule without training")
    _config_args(schedule)
    schedule.add_argument("--compare", help="comma-separated schedule names to overlay, e.g. cosine,onecycle,step")
    schedule.add_argument("--out", help="PNG path (default schedule.png)", default="schedule.png")

    lr_find = sub.add_parser("lr-find", help="run the LR range test for a config")
    _config_args(lr_find)
    lr_find.add_argument("--run-dir", help="where lr_find.json and lr_find.png go (default runs/<name>-lr-find)")
    return parser


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if not getattr(args, "quiet", False) else logging.WARNING,
                        format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from trainwise.cli import commands

    handler = {"train": commands.train, "evaluate": commands.evaluate, "predict": commands.predict,
               "schedule": commands.schedule, "lr-find": commands.lr_find}[args.command]
    try:
        return handler(args)
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

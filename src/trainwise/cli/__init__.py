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
    _runs_parser(sub)
    return parser


def _runs_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list, show, compare and remove runs (the run index)",
                          description="The run index under the runs root: --root, else $TRAINWISE_RUNS, else the "
                          "first folder from here upwards holding runs.sqlite or runs/runs.sqlite, else ./runs.")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", help="the runs root (the folder holding runs.sqlite)")
    listing = runs_sub.add_parser("list", parents=[root], help="runs, newest first")
    listing.add_argument("--where", help="filter, e.g. \"optimizer.name = 'sgd' and test_accuracy > 0.97\"")
    listing.add_argument("--sort", help="sort key, '-key' for descending, e.g. -test_accuracy")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table")
    listing.add_argument("--limit", type=int, help="at most this many runs (default: 50 in the table, all in csv "
                         "and json; 0: all)")
    listing.add_argument("--columns", help="extra comma-separated columns, e.g. optimizer.lr,model.hidden")
    show = runs_sub.add_parser("show", parents=[root], help="one run: summary, config, provenance")
    show.add_argument("run", help="an id, a unique id prefix, a name, or a folder")
    compare = runs_sub.add_parser("compare", parents=[root], help="runs side by side; --out writes compare.html")
    compare.add_argument("run", nargs="+", help="two or more runs (id, id prefix, name or folder)")
    compare.add_argument("--all", action="store_true", help="list every parameter, not only those that differ")
    compare.add_argument("--out", help="write a self-contained HTML page here, e.g. compare.html")
    compare.add_argument("--draw", type=int, default=10, help="curves for at most this many runs (default 10)")
    remove = runs_sub.add_parser("rm", parents=[root], help="move a finished run to the trash (.trash/ under the "
                                 "root; --force deletes it); a running run is refused")
    remove.add_argument("run", nargs="+")
    remove.add_argument("--force", action="store_true", help="delete at once instead of moving to the trash")
    runs_sub.add_parser("gc", parents=[root], help="forget runs whose folder is gone, empty the trash, delete "
                        "temporary files left by killed writers")
    runs_sub.add_parser("reindex", parents=[root], help="rebuild runs.sqlite from the run folders (run.json)")


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
    argv = list(sys.argv[1:] if argv is None else argv)
    for index in range(len(argv) - 1):  # `--sort -key`: a value that starts with "-" is still the value
        if argv[index] == "--sort" and argv[index + 1].startswith("-"):
            argv[index:index + 2] = [f"--sort={argv[index + 1]}", ""]
    args, extra = parser.parse_known_args([item for item in argv if item != ""])
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
    "runs": "trainwise.cli.runs_cmd:runs",
}
DRY_RUN_HANDLER = "trainwise.cli.dry_run:dry_run_command"


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    spec = DRY_RUN_HANDLER if getattr(args, "dry_run", False) else HANDLERS[args.command]
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)

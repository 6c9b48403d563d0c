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
    train.add_argument("--doctor", action="store_true", help="run the doctor's pre-flight checks first (doctor.json "
                       "in the run folder); a FAIL stops before training with exit code 1")
    train.add_argument("--nproc", type=int, metavar="N", help="train with N processes on this machine "
                       "(DistributedDataParallel: gloo on CPU, nccl on GPU; data.batch_size is the global batch)")

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

    profile = sub.add_parser("profile", help="a few training steps under torch.profiler: top operators, a trace",
                             description="Run a few real training steps of a config under torch.profiler; print "
                             "the operators that took the most time and write a Chrome trace (RUN_DIR/trace.json).")
    _config_args(profile)
    profile.add_argument("--steps", type=int, default=10, help="optimizer steps to profile, after 3 warm-up steps "
                         "(default 10)")
    profile.add_argument("--run-dir", help="where trace.json goes (default runs/<name>-profile)")

    find_bs = sub.add_parser("find-batch-size", help="the largest batch that fits (GPU) or the knee of samples/s (CPU)",
                             description="Try powers of two with real training steps: on a GPU the largest that "
                             "fits, with a safety margin; on a CPU the smallest within 10%% of the best samples/s. "
                             "data.effective_batch_size keeps the effective batch by accumulation; "
                             "optimizer.lr_scaling scales the lr. data.batch_size=auto does this in train.")
    _config_args(find_bs)

    doctor = sub.add_parser("doctor", help="pre-flight checks of a config, or the diagnosis of a finished run",
                            description="trainwise doctor CONFIG: data, model and training checks plus baselines "
                            "before training; trainwise doctor RUN_DIR: the diagnosis of a finished run from its "
                            "metrics. Writes doctor.json; exit 0 without a FAIL, 1 with one, 2 for bad input.")
    doctor.add_argument("target", metavar="CONFIG|RUN_DIR", help="a YAML config, or a run folder")
    doctor.add_argument("overrides", nargs="*", help="section.key=value overrides (with a config)")
    doctor.add_argument("--out", help="where doctor.json goes (default: runs/<name>-doctor/doctor.json for a "
                        "config; the run folder's doctor.json for a run)")
    doctor.add_argument("--threshold", action="append", metavar="NAME=VALUE",
                        help="change a rule's limit, e.g. --threshold imbalance_ratio=5 (repeatable)")
    doctor.add_argument("--no-baselines", action="store_true", help="skip training the baselines")

    report = sub.add_parser("report", help="re-render a run's report.html from its folder",
                            description="Re-render report.html (SVG charts, confusion matrix table) from "
                            "the run folder's files; --png also draws the matplotlib PNGs and links them.")
    report.add_argument("run_dir")
    report.add_argument("--png", action="store_true", help="also write curves.png, lr.png and confusion.png")
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
    "profile": "trainwise.cli.profile_cmd:profile",
    "find-batch-size": "trainwise.cli.batch_size_cmd:find_batch_size",
    "doctor": "trainwise.cli.doctor_cmd:doctor",
}
DRY_RUN_HANDLER = "trainwise.cli.dry_run:dry_run_command"


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    spec = DRY_RUN_HANDLER if getattr(args, "dry_run", False) else HANDLERS[args.command]
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)

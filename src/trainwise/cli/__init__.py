"""The ``trainwise`` command line: a thin layer over the Python API.

User mistakes (a bad config, a missing file, bad data) print one ``error:`` line and exit 2;
``--debug`` shows the traceback. A run that diverged or failed exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import Callable, Optional, Sequence

from trainwise.errors import RunEndedBadlyWarning, TrainwiseError

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
                       "(DistributedDataParallel: gloo on CPU, nccl on GPU; data.batch_size is the global batch), "
                       "started by torch's elastic launcher (torchrun's)")
    train.add_argument("--max-restarts", type=int, default=0, metavar="N", help="with --nproc: restart the whole "
                       "job up to N times when a process fails; each restart continues from the last checkpoint")
    train.add_argument("--nnodes", default="1", metavar="N|MIN:MAX", help="with --nproc: machines in the job "
                       "(run the same command on each, with --rdzv-endpoint and --run-dir)")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="with --nnodes: where the machines meet "
                       "(torch's c10d rendezvous, hosted by the machine at HOST)")
    train.add_argument("--rdzv-id", metavar="ID", help="with --nnodes: the job's id, the same on every machine "
                       "(default: from the --run-dir name)")

    evaluate = sub.add_parser("evaluate", help="re-evaluate a run's best checkpoint")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", choices=("train", "val", "test"),
                          help="split of the run's own data set (default test)")
    evaluate.add_argument("--data", metavar="FILE", help="evaluate on this file instead: .npz with arrays x and y, "
                          "or .csv with the training columns and the target column")
    evaluate.add_argument("--target", metavar="COLUMN", help="the target column of a --data CSV "
                          "(default: the run's data.target)")
    _model_args(evaluate)

    predict = sub.add_parser("predict", help="predict with a run's best checkpoint or an exported model")
    predict.add_argument("run_dir", metavar="RUN_DIR|ARTIFACT", help="a run folder, or a file trainwise export "
                         "wrote: .onnx, .pt (TorchScript), .pt2, .safetensors")
    predict.add_argument("inputs", help=".npz with an array 'x', or .csv with the training columns "
                         "(raw, unnormalized inputs; a target column is ignored), or a folder of images for a run "
                         "trained on data.dataset: imagefolder (a first column names each file)")
    predict.add_argument("--out", required=True, help="where to write predictions: .npz or .csv")
    predict.add_argument("--format", choices=("torchscript", "pt2"),
                         help="load a .pt (torchscript) or .pt2 artifact: these are programs that run code when "
                              "loaded, so name the format only for a file you trust")
    _model_args(predict)

    generate = sub.add_parser("generate", help="sample text from a language-model run (model gpt on text)",
                              description="Continue --prompt with --tokens tokens sampled from RUN_DIR's best "
                              "checkpoint, using the tokenizer saved in the run folder.")
    generate.add_argument("run_dir")
    generate.add_argument("--prompt", required=True, help="the text to continue")
    generate.add_argument("--tokens", type=int, default=200, help="tokens to sample (default 200)")
    generate.add_argument("--temperature", type=float, default=1.0, help="divide the logits by this (default 1; "
                          "0 always takes the most likely token)")
    generate.add_argument("--top-k", type=int, help="sample among the k most likely tokens only")
    generate.add_argument("--seed", type=int, default=0, help="the sampling seed; the same seed gives the same text")
    generate.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR/checkpoints (default best.pt)")

    export = sub.add_parser(
        "export", help="export a run's best checkpoint: onnx, torchscript, pt2, safetensors, int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export RUN_DIR/checkpoints/best.pt (eval mode) and verify each artifact: it is reloaded from "
        "disk, its outputs on real test batches must match PyTorch's within --atol/--rtol and its test accuracy "
        "PyTorch's within 0.1 point, or the export fails and the file is removed. Every artifact takes raw inputs: "
        "the run's input normalization (data.json) is folded into the graph, so nothing else must ship with it. "
        "BatchNorm is folded into the preceding conv/linear layer; the batch axis is dynamic.",
        epilog="formats:\n"
        "  onnx         model.onnx, one self-contained file (torch's default exporter), run with onnxruntime\n"
        "  torchscript  model.pt (traced; scripted when tracing misses control flow). TorchScript is\n"
        "               deprecated in PyTorch; prefer pt2 or onnx unless you need libtorch (C++)\n"
        "  pt2          model.pt2 from torch.export, PyTorch's replacement for TorchScript\n"
        "  safetensors  model.safetensors: weights + config + data.json, trainwise.load_model(path) loads it\n"
        "               with no pickle\n"
        "  int8         dynamic quantization of Linear/LSTM/GRU layers: model.int8.onnx (onnxruntime), or\n"
        "               model.int8.pt for GRU/LSTM models (torch's quantize_dynamic, deprecated, the only\n"
        "               path that quantizes recurrent weights); size, latency and accuracy before/after\n"
        "  all          every format the model can take, into one folder\n"
        "onnx and int8 need pip install 'trainwise[export]'. Figures go to export.json beside the files.")
    export.add_argument("run_dir")
    export.add_argument("--format", default="onnx", help="onnx (default), torchscript, pt2, safetensors, int8, all")
    export.add_argument("--out", metavar="PATH", help="the file (one format) or a folder (any format); its parent folder must exist "
                        "(default RUN_DIR/export/model.<suffix>)")
    export.add_argument("--atol", type=float, default=1e-4, help="absolute output tolerance (default 1e-4)")
    export.add_argument("--rtol", type=float, default=1e-3, help="relative output tolerance (default 1e-3)")
    export.add_argument("--max-int8-drop", type=float, default=1.0,
                        help="largest int8 test-accuracy drop accepted, in points (default 1)")
    export.add_argument("--data", metavar="FILE", help="verify on this .npz (raw x, y) instead of the run's test split")
    _model_args(export)

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

    tune = sub.add_parser("tune", help="hyperparameter search over the config's tune: section",
                          description="Search the config's tune.space with Optuna, training each trial like "
                          "trainwise train; bad trials are pruned early. Results in runs/tune/<study>/: best.yaml, "
                          "trials.csv, report.html and PNG plots.")
    _config_args(tune)
    tune.add_argument("--trials", type=int, help="the study's total trials, across all its workers (default tune.trials)")
    tune.add_argument("--timeout", type=float, help="seconds after which a worker starts no new trial")
    tune.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    tune.add_argument("--storage", help="database URL shared by workers on many machines, e.g. "
                      "postgresql://user:password@host/db (default: study.db in the study folder)")
    tune.add_argument("--study", help="study name; workers with the same --storage and --study join one study "
                      "(default: the config's name)")
    tune.add_argument("--study-dir", help="this machine's study folder (default runs/tune/<study>)")
    tune.add_argument("--sampler", help="grid, random, tpe or gp (default tune.sampler, tpe)")
    tune.add_argument("--pruner", help="none, median, asha or hyperband (default tune.pruner, asha)")
    tune.add_argument("--seed", type=int, help="the sampler's seed (default tune.seed, else the config's seed)")
    tune.add_argument("--backend", help="optuna or ray: run the trials as Ray Tune trials (default tune.backend, "
                      "optuna; pip install 'trainwise[ray]')")
    tune.add_argument("--address", help="Ray backend: the cluster to join (host:6379, ray://host:10001 or auto); "
                      "default a local Ray")
    tune.add_argument("--status", action="store_true", help="print the study's progress and best trials; run nothing")
    tune.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    _runs_parser(sub)
    study = sub.add_parser("study", help="run a controlled study: init, schedules, normalization, batch-size, "
                           "optimizers, dropout, warmup, norm-position, lr-surface", description="Train each variant of one factor "
                           "once per seed with the same budget, data split and seeds; write study.md, study.json, "
                           "PNGs and report.html with a verdict on which differences hold across seeds. "
                           "lr-surface needs no config.")
    study.add_argument("study", help="init | schedules | normalization | batch-size | optimizers | dropout | "
                       "warmup | norm-position (gpt) | lr-surface")
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
    warnings.filterwarnings("ignore", category=RunEndedBadlyWarning)  # the CLI prints the run's ending itself
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
    items: list[Optional[str]] = list(sys.argv[1:] if argv is None else argv)
    for index in range(len(items) - 1):  # `--sort -key`: a value that starts with "-" is still the value
        if items[index] == "--sort" and str(items[index + 1]).startswith("-"):
            items[index:index + 2] = [f"--sort={items[index + 1]}", None]
    argv = [item for item in items if item is not None]  # an empty string stays: it is a value
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        print(f"error: {_unknown_arguments(parser, args, extra)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    empty = _empty_option(parser, args, argv)
    if empty:
        print(f"error: {empty}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    return args


# What an empty value of an option means, where "give a value" says too little.
EMPTY_VALUE_FIX = {
    "--prompt": "give the text to continue, at least one character",
    "--compare": "give comma-separated schedule names to overlay, e.g. --compare cosine,onecycle,step, or leave "
                 "--compare out",
}


def _empty_option(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> Optional[str]:
    """One line for an option given an empty string (``--prompt ""``), which argparse takes as its value."""
    command, names = parser, ["trainwise"]
    for name in (args.command, getattr(args, "runs_command", None)):
        actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if name is None or not actions or name not in actions[0].choices:
            break
        command, names = actions[0].choices[name], [*names, name]
    for action in command._actions:
        if action.option_strings and getattr(args, action.dest, None) == "":
            flag = next((item.split("=")[0] for item in argv if item.split("=")[0] in action.option_strings),
                        action.option_strings[-1])
            fix = EMPTY_VALUE_FIX.get(flag, f"give a value, or leave {flag} out ({' '.join(names)} --help says "
                                            "what it takes)")
            return f"{flag} is empty; {fix}"
    return None


def _unknown_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> str:
    """One line for arguments the command does not take: the first unknown option with a did-you-mean
    among the command's own options (``runs list`` included), and where they are listed."""
    from trainwise.checks import did_you_mean

    command, names = parser, []
    for name in (args.command, getattr(args, "runs_command", None)):
        actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if name is None or not actions or name not in actions[0].choices:
            break
        command, names = actions[0].choices[name], [*names, name]
    options = [option for action in command._actions for option in action.option_strings]
    where = f"trainwise {' '.join(names)}"
    flag = next((item.split("=")[0] for item in extra if item.startswith("-")), None)
    if flag is not None:
        return f"{where}: unknown option {flag}{did_you_mean(flag, options)} ({where} --help lists them)"
    return f"{where}: unexpected argument(s) {' '.join(extra)} ({where} --help lists what it takes)"


# Each command's function, imported only when it runs: `trainwise --help` imports no torch, and a
# dry run imports nothing of training.
HANDLERS = {
    "train": "trainwise.cli.commands:train",
    "evaluate": "trainwise.cli.inference:evaluate",
    "predict": "trainwise.cli.inference:predict",
    "generate": "trainwise.cli.generate_cmd:generate",
    "schedule": "trainwise.cli.schedule_cmd:schedule",
    "lr-find": "trainwise.cli.commands:lr_find",
    "report": "trainwise.cli.report_cmd:report",
    "runs": "trainwise.cli.runs_cmd:runs",
    "export": "trainwise.cli.export_cmd:export_command",
    "profile": "trainwise.cli.profile_cmd:profile",
    "find-batch-size": "trainwise.cli.batch_size_cmd:find_batch_size",
    "doctor": "trainwise.cli.doctor_cmd:doctor",
    "tune": "trainwise.cli.tune_cmd:tune",
    "study": "trainwise.cli.study_cmd:study",
}
DRY_RUN_HANDLER = "trainwise.cli.dry_run:dry_run_command"


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    spec = DRY_RUN_HANDLER if getattr(args, "dry_run", False) else HANDLERS[args.command]
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)

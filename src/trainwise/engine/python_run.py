"""The run folder of a Python run described like a CLI run's: config.yaml and data.json record
what ``trainwise evaluate``/``predict`` need to rebuild the model; schedule.csv and the report
are written at the end of every fit."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.metrics import LOSS_NAMES
from trainwise.runfolder.files import write_json, write_schedule

log = logging.getLogger(__name__)

# At most this many rows in schedule.csv (evenly spaced, first and last step included).
SCHEDULE_POINTS = 2000


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The config ``model`` section that rebuilds ``model``: a built-in model's own settings, or
    ``package.module:Class`` for a user's class (``trainwise evaluate --model`` when that does not
    import, e.g. a class defined in a script, ``__main__:Net``)."""
    built_in = getattr(model, "trainwise_config", None)
    if built_in is not None:
        return dict(built_in)
    cls = type(model)
    return {"name": f"{cls.__module__}:{cls.__qualname__}"}


def describe_run(t: Any, lr: float) -> dict[str, Any]:
    """A config.yaml for a Python run, in the CLI's sections (every key a valid config key)."""
    from trainwise.optim import OPTIMIZER_NAMES

    optimizer_name = (type(t.optimizer).__name__.lower() if t.user_optimizer else str(t.optimizer_spec))
    stopper = next((cb for cb in t.callbacks if type(cb).__name__ == "EarlyStopping"), None)
    return {
        "name": t.name, "seed": t.seed,
        "data": {"dataset": "python", "batch_size": t.batch_size, "eval_batch_size": t.eval_batch_size,
                 "val_fraction": 0.0, "test_fraction": 0.0, "normalize": False},
        "model": {**model_spec(t.model), "init": t.init or "none"} if "trainwise_config" in vars(t.model)
        else model_spec(t.model),
        "optimizer": {"name": optimizer_name if optimizer_name in OPTIMIZER_NAMES else optimizer_name, "lr": lr,
                      "weight_decay": t.optimizer_args["weight_decay"], "momentum": t.optimizer_args["momentum"],
                      "nesterov": t.optimizer_args["nesterov"]},
        "schedule": {"name": _schedule_name(t),
                     "warmup": t.warmup, **t.schedule_params},
        "train": {"epochs": t.epochs, "max_steps": t.max_steps, "grad_clip": t.grad_clip,
                  "grad_clip_mode": t.grad_clip_mode, "accumulate": t.accumulate, "precision": t.precision,
                  "device": str(t.device), "loss": t.loss_spec if t.loss_spec in LOSS_NAMES else None,
                  "label_smoothing": t.label_smoothing, "shift_labels": t.shift_labels,
                  "log_every_n_steps": t.log_every_n_steps,
                  "report": t.write_report,
                  "early_stopping": {"enabled": stopper is not None, "monitor": t.state.best.monitor,
                                     "mode": t.state.best.mode, "patience": getattr(stopper, "patience", 5),
                                     "min_delta": t.state.best.min_delta, "restore_best": t.state.best.restore}},
    }


def _schedule_name(t: Any) -> str:
    spec = t.torch_scheduler if t.torch_scheduler is not None else t.schedule_spec
    return spec if isinstance(spec, str) else type(spec).__name__


def describe_data(t: Any, sample: Optional[torch.Tensor], output_shape: Optional[tuple[int, ...]]) -> dict[str, Any]:
    """data.json for a Python run: the shapes and task ``predict`` needs (no normalization: the
    model takes the inputs as the user gave them), and the run's decisions on its batches: how the
    model is called, the loss rule and its class axis."""
    rule = t.loss_rule
    if output_shape and rule is not None and rule.task == "classification":
        num_outputs = int(output_shape[0 if rule.class_axis == 1 else -1])
    else:
        num_outputs = int(output_shape[0]) if output_shape and len(output_shape) == 1 else 1
    return {"dataset": "python", "task": t.task,
            "input_shape": list(sample.shape[1:]) if sample is not None else None,
            "num_classes": num_outputs if t.task == "classification" else None, "num_outputs": num_outputs,
            "class_names": list(t.class_names) if t.class_names else None, "normalization": None,
            "target_normalization": t.target_normalization,
            **(t.table_encoding.describe() if getattr(t, "table_encoding", None) is not None else {}),
            **(t.plan.describe() if getattr(t, "plan", None) is not None else {})}


def finish_files(t: Any, loop: Any, summary: Optional[dict[str, Any]] = None) -> None:
    """schedule.csv (the planned lr of every step, from the closed-form schedule) and the report. A
    report that fails to render is one line in the run's warnings (``result.warnings``, and
    ``summary`` and its summary.json when given)."""
    if loop.torch_scheduler is None:  # a torch scheduler has no closed form: the report draws the logged lrs
        total, start, schedule, scale = loop.total_steps, loop.schedule_start, loop.schedule, t.guard.lr_scale
        count = min(total, SCHEDULE_POINTS)
        steps = sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)})
        try:
            write_schedule(t.run_dir / "schedule.csv", [(start + step, schedule.lr_at(step) * scale) for step in steps])
        except OSError as exc:
            log.warning("could not write schedule.csv: %s", exc)
    if t.write_report:
        failure = write_plots_and_report(t.run_dir, t.task or "classification", warn=t.warn)
        if failure is not None and summary is not None:  # summary.json was written before the report read it
            summary["warnings"] = list(t.state.warnings)
            try:
                write_json(t.run_dir / "summary.json", summary)
            except OSError as exc:
                log.warning("could not write summary.json: %s", exc)


def write_plots_and_report(run_dir: Any, task: str, *, warn: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """report.html with its SVG charts (curves.svg, lr.svg): milliseconds, no matplotlib. PNGs are
    drawn on request: ``trainwise report RUN --png``. A failure never loses the finished run: it is
    returned as one line, passed to ``warn`` (the trainer's warnings) or else logged as a warning;
    the traceback goes to the debug log."""
    try:
        from trainwise.report.html import write_report

        write_report(run_dir, task=task)
    except Exception as exc:  # noqa: BLE001 - a broken report must not lose a finished run; say so instead
        log.debug("could not write report.html for %s", run_dir, exc_info=True)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        line = (f"could not write report.html for {run_dir}: {reason}; the run's other files are complete "
                f"(trainwise report {run_dir} renders it again)")
        (warn or log.warning)(line)
        return line
    return None

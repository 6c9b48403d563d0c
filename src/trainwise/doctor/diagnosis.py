"""``doctor.diagnose``: the post-run checks, read from a run folder (metrics.csv, summary.json and,
when the pre-flight ran, the baselines in doctor.json) or from a ``FitResult``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from trainwise.doctor.report import Check, DoctorReport
from trainwise.doctor.thresholds import SOURCES, Thresholds, thresholds_of
from trainwise.errors import DataNotFoundError

Curves = dict[str, list[float]]  # per-epoch series: train_loss, val_loss, val_accuracy, val_r2 ...


def is_run_folder(path: Union[str, Path]) -> bool:
    """A folder a run wrote (it has at least one of config.yaml, summary.json, metrics.csv)."""
    p = Path(path)
    return p.is_dir() and any((p / name).exists() for name in ("summary.json", "metrics.csv", "config.yaml"))


def diagnose(source: Any, *, thresholds: Union[Thresholds, Mapping[str, Any], None] = None) -> DoctorReport:
    """The ``run.*`` checks of a finished run: a run folder's path or a ``FitResult``.

    Example:
        >>> result = Trainer(model, epochs=20).fit(train, val)
        >>> report = doctor.diagnose(result)   # or doctor.diagnose("runs/digits-mlp-...")
        >>> [(c.id, c.status) for c in report.checks]
    """
    th = thresholds_of(thresholds)
    run_dir = getattr(source, "run_dir", None) if not isinstance(source, (str, Path)) else Path(source)
    if run_dir is not None and (Path(run_dir) / "metrics.csv").exists():
        curves, summary, baselines = read_run(Path(run_dir))
    elif hasattr(source, "history"):
        curves, summary, baselines = _from_history(source.history), dict(source.summary), {}
    else:
        raise DataNotFoundError(f"{run_dir} holds no metrics.csv, so there is no training curve to diagnose; "
                                "pass the folder of a run that trained at least one epoch (runs/<name>-<time>)")
    return DoctorReport(diagnose_curves(curves, summary, baselines, th))


def read_run(run_dir: Path) -> tuple[Curves, dict[str, Any], dict[str, float]]:
    summary_path, doctor_path = run_dir / "summary.json", run_dir / "doctor.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    last: dict[tuple[int, str], float] = {}
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("split") in ("train", "val"):
                # an epoch's figures are its last rows (step-level rows come before them)
                last[(int(row["epoch"]), f"{row['split']}_{row['metric']}")] = float(row["value"])
    epochs = sorted({epoch for epoch, _ in last})
    names = sorted({name for _, name in last})
    curves = {name: [last.get((e, name), math.nan) for e in epochs] for name in names}
    baselines: dict[str, float] = {}
    if doctor_path.exists():
        for c in json.loads(doctor_path.read_text()).get("checks", []):
            if c.get("id", "").startswith("baseline.") and isinstance(c.get("value"), (int, float)):
                baselines[c["id"].split(".", 1)[1]] = float(c["value"])
    return curves, summary, baselines


def _from_history(history: list[dict[str, float]]) -> Curves:
    names = sorted({k for row in history for k in row if k.startswith(("train_", "val_"))})
    return {name: [float(row.get(name, math.nan)) for row in history] for name in names}


def diagnose_curves(curves: Curves, summary: dict[str, Any], baselines: dict[str, float],
                    th: Thresholds) -> list[Check]:
    train = [v for v in curves.get("train_loss", [])]
    if not train:
        raise DataNotFoundError("the run logged no training loss, so there is nothing to diagnose; train at "
                                "least one epoch first")
    accuracy = curves.get("val_accuracy")
    return [_diverged(train, summary, th), _underfit(accuracy, summary, th), _overfit(curves, th),
            _plateau(train, th), _still_improving(curves, summary, th), _oscillation(curves, th),
            _lr_too_high(train, summary, th), _lr_too_low(train, summary, th),
            _worse_than_baseline(curves, summary, baselines)]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _diverged(train: list[float], summary: dict[str, Any], th: Thresholds) -> Check:
    bad = [v for v in train if not math.isfinite(v) or v >= th.diverged_loss]
    rollbacks = int(summary.get("nonfinite_rollbacks", 0) or 0) + int(summary.get("nonfinite_skipped", 0) or 0)
    status = "FAIL" if summary.get("status") == "diverged" or bad else "WARN" if rollbacks else "PASS"
    message = (f"status {summary.get('status')}; {len(bad)} epoch(s) with a non-finite train loss or one >= "
               f"{th.diverged_loss:g} ({SOURCES['diverged_loss']}); {rollbacks} non-finite step(s) rolled back or "
               "skipped")
    return Check("run.diverged", status, {"bad_epochs": len(bad), "nonfinite_steps": rollbacks}, th.diverged_loss,
                 message, "" if status == "PASS" else "lower the lr (lr='auto'), clip gradients "
                 "(train.grad_clip: 1.0), add warmup (schedule.warmup: 0.05), use bf16 instead of fp16")


def _underfit(accuracy: Optional[list[float]], summary: dict[str, Any], th: Thresholds) -> Check:
    if not accuracy or not _finite(accuracy):
        r2 = summary.get("best_val_r2")
        return Check("run.underfit", "PASS", r2, None, "no validation accuracy to judge underfitting by"
                     + (f" (best val R² {r2:.3g}; see run.worse_than_baseline)" if isinstance(r2, float) else ""))
    best = max(_finite(accuracy))
    return Check("run.underfit", "PASS" if best >= th.underfit_accuracy else "WARN", best, th.underfit_accuracy,
                 f"best validation accuracy {best:.4g}; WARN below {th.underfit_accuracy:g} "
                 f"({SOURCES['underfit_accuracy']})", "" if best >= th.underfit_accuracy else
                 "train longer or with a better lr (lr='auto'), use a bigger model, lower dropout and weight "
                 "decay; check run.lr_too_low and the pre-flight checks")


def _overfit(curves: Curves, th: Thresholds) -> Check:
    train, val_loss, acc = curves.get("train_loss", []), curves.get("val_loss"), curves.get("val_accuracy")
    if not val_loss or len(val_loss) < 4:
        return Check("run.overfit", "PASS", None, None, "too few validated epochs to judge overfitting")
    fix = ("regularize: weight decay (optimizer.weight_decay), dropout (model.dropout), augmentation "
           "(data.augment), more data, early stopping on the validation metric (restore_best keeps the best)")
    if acc and _finite(acc) and len(acc) == len(val_loss):
        smooth = _moving_average(acc, 3)  # one noisy epoch is no trend
        best_epoch = max(range(len(smooth)), key=lambda i: (smooth[i], -i))
        drop = smooth[best_epoch] - smooth[-1]
        falling = train[-1] < train[best_epoch] if len(train) == len(acc) else True
        loss_rise = val_loss[-1] / val_loss[best_epoch] - 1 if val_loss[best_epoch] > 0 else 0.0
        bad = (drop > th.overfit_rise and loss_rise > 10 * th.overfit_rise and len(acc) - 1 - best_epoch >= 3
               and falling) or _loss_overfit(train, val_loss, smooth, th)
        note = (f"; val loss rose {loss_rise:.0%} while accuracy held: the model grows more confident, which "
                "costs no accuracy" if not bad and loss_rise > 10 * th.overfit_rise else "")
        return Check("run.overfit", "WARN" if bad else "PASS", drop, th.overfit_rise,
                     f"validation accuracy (3-epoch average) peaked at {smooth[best_epoch]:.4g} (epoch "
                     f"{best_epoch + 1}) and ended {drop:.3g} lower, val loss {loss_rise:+.0%}, train loss "
                     f"{'falling' if falling else 'not falling'}; WARN when accuracy drops over {th.overfit_rise:g} "
                     f"and val loss rises over {10 * th.overfit_rise:.0%} for 3+ epochs while the train loss falls "
                     f"({SOURCES['overfit_rise']}){note}", fix if bad else "")
    finite = _finite(val_loss)
    best_epoch = val_loss.index(min(finite))
    rise = val_loss[-1] / val_loss[best_epoch] - 1 if val_loss[best_epoch] > 0 else 0.0
    falling = len(train) == len(val_loss) and train[-1] < train[best_epoch]
    bad = rise > 10 * th.overfit_rise and len(val_loss) - 1 - best_epoch >= 3 and falling
    return Check("run.overfit", "WARN" if bad else "PASS", rise, 10 * th.overfit_rise,
                 f"validation loss ended {rise:+.1%} above its minimum (epoch {best_epoch + 1}) while the train loss "
                 f"{'kept falling' if falling else 'did not fall'}; WARN above {10 * th.overfit_rise:.0%} over 3+ "
                 f"epochs ({SOURCES['overfit_rise']})", fix if bad else "")


def _loss_overfit(train: list[float], val_loss: list[float], smooth_acc: list[float], th: Thresholds) -> bool:
    """Val loss up by half over its minimum, 3+ epochs on, with the train loss falling and the accuracy
    no better than at that minimum (UMLAUT / SageMaker Overfit: val loss up while train loss falls)."""
    finite = _finite(val_loss)
    if not finite or len(train) != len(val_loss):
        return False
    low = val_loss.index(min(finite))
    rise = val_loss[-1] / val_loss[low] - 1 if val_loss[low] > 0 else 0.0
    return (rise > 50 * th.overfit_rise and len(val_loss) - 1 - low >= 3 and train[-1] < train[low]
            and smooth_acc[-1] <= smooth_acc[low] + th.overfit_rise)


def _moving_average(values: list[float], width: int) -> list[float]:
    return [sum(values[max(0, i - width + 1):i + 1]) / len(values[max(0, i - width + 1):i + 1])
            for i in range(len(values))]


def _plateau(train: list[float], th: Thresholds) -> Check:
    w = th.plateau_window
    finite = _finite(train)
    if len(finite) < w + 1:
        return Check("run.plateau", "PASS", None, w, f"fewer than {w + 1} epochs: no plateau to judge")
    start, end = finite[-w - 1], finite[-1]
    per_epoch = (start - end) / abs(start) / w if start else 0.0
    stuck_high = end > 0.5 * finite[0]
    bad = per_epoch < th.plateau_decrease and stuck_high
    return Check("run.plateau", "WARN" if bad else "PASS", per_epoch, th.plateau_decrease,
                 f"over the last {w} epochs the train loss fell {per_epoch:.3%} per epoch (WARN below "
                 f"{th.plateau_decrease:.1%} while the loss is still above half its first-epoch value; "
                 f"{SOURCES['plateau_decrease']}); last {end:.4g}, first {finite[0]:.4g}",
                 "raise the lr or use a schedule with warmup (lr='auto'), check for dead units (doctor pre-flight), "
                 "use a bigger model" if bad else "")


def _still_improving(curves: Curves, summary: dict[str, Any], th: Thresholds) -> Check:
    series = curves.get("val_loss") or curves.get("train_loss", [])
    name = "validation" if curves.get("val_loss") else "train"
    if len(series) < 4 or summary.get("status") == "stopped_early" or not all(map(math.isfinite, series[-4:])):
        return Check("run.still_improving", "PASS", None, th.still_improving,
                     "stopped early or too short to judge" if len(series) >= 4 else "too few epochs to judge")
    per_epoch = (series[-4] - series[-1]) / abs(series[-4]) / 3 if series[-4] else 0.0
    bad = per_epoch > th.still_improving
    return Check("run.still_improving", "WARN" if bad else "PASS", per_epoch, th.still_improving,
                 f"the {name} loss fell {per_epoch:.2%} per epoch over the last 3 epochs; WARN above "
                 f"{th.still_improving:.0%} (Tuning Playbook: still improving at the end means train longer)",
                 "train for more epochs (train.epochs) — the run ended while it was still learning" if bad else "")


def _turns(series: list[float], swing: float, relative: bool) -> int:
    diffs = [(b - a) / (abs(a) if relative and a else 1.0) for a, b in zip(series, series[1:])]
    return sum(1 for d1, d2 in zip(diffs, diffs[1:]) if d1 * d2 < 0 and abs(d1) >= swing and abs(d2) >= swing)


def _oscillation(curves: Curves, th: Thresholds) -> Check:
    acc = curves.get("val_accuracy")
    series, relative, swing = ((acc, False, th.oscillation_swing) if acc else
                               (curves.get("val_loss") or curves.get("train_loss", []), True,
                                10 * th.oscillation_swing / 3))
    series = _finite(series or [])
    if len(series) < 5:
        return Check("run.oscillation", "PASS", None, th.oscillation_share, "fewer than 5 epochs: no oscillation "
                     "to judge")
    share = _turns(series, swing, relative) / len(series)
    bad = share >= th.oscillation_share
    what = "validation accuracy" if acc else "loss (relative)"
    return Check("run.oscillation", "WARN" if bad else "PASS", share, th.oscillation_share,
                 f"{share:.0%} of epochs turn the {what} around by >= {swing:g} on both sides; WARN at "
                 f"{th.oscillation_share:.0%} ({SOURCES['oscillation_swing']})",
                 "lower the lr or decay it (schedule.name: cosine), use larger batches, Adam instead of SGD, "
                 "clip gradients" if bad else "")


def _lr_vs_suggestion(summary: dict[str, Any]) -> Optional[float]:
    finder = summary.get("lr_finder") or {}
    lr, suggestion = summary.get("lr"), finder.get("suggestion")
    return lr / suggestion if isinstance(lr, (int, float)) and isinstance(suggestion, (int, float)) and suggestion else None


def _lr_too_high(train: list[float], summary: dict[str, Any], th: Thresholds) -> Check:
    spikes = int(summary.get("loss_spikes", 0) or 0)
    rollbacks = int(summary.get("nonfinite_rollbacks", 0) or 0)
    finite = _finite(train)
    # a rise counts when it is large against the loss's own level and against the first epoch's loss
    # (0.0005 -> 0.001 near zero is noise, not a bad lr)
    rises = [i for i in range(2, len(finite)) if finite[i] > min(finite[:i]) * (1 + th.lr_high_rise)
             and finite[i] - min(finite[:i]) > 0.05 * abs(finite[0])]
    ratio = _lr_vs_suggestion(summary)
    signs = []
    if spikes:
        signs.append(f"{spikes} loss spike(s)")
    if rollbacks or summary.get("status") == "diverged" or len(finite) < len(train):
        signs.append("non-finite losses")
    if rises:
        signs.append(f"the train loss rose over {th.lr_high_rise:.0%} above its minimum at epoch {rises[0] + 1} "
                     "(Tuning Playbook: training loss increasing)")
    if ratio is not None and ratio > th.lr_factor:
        signs.append(f"the lr was {ratio:.3g}x the range test's suggestion")
    return Check("run.lr_too_high", "WARN" if signs else "PASS", {"spikes": spikes, "rises": len(rises),
                 "lr_over_suggestion": ratio}, th.lr_high_rise,
                 ("signs of a too-high lr: " + "; ".join(signs)) if signs else
                 "no loss spikes, non-finite steps or rising train loss",
                 "lower the lr (lr='auto' picks one by a range test), add warmup, clip gradients" if signs else "")


def _lr_too_low(train: list[float], summary: dict[str, Any], th: Thresholds) -> Check:
    finite = _finite(train)
    if len(finite) < 3:
        return Check("run.lr_too_low", "PASS", None, th.lr_low_decrease, "fewer than 3 epochs to judge")
    decrease = (finite[0] - min(finite)) / abs(finite[0]) if finite[0] else 0.0
    ratio = _lr_vs_suggestion(summary)
    bad = decrease < th.lr_low_decrease or (ratio is not None and ratio < 1 / th.lr_factor)
    return Check("run.lr_too_low", "WARN" if bad else "PASS", decrease, th.lr_low_decrease,
                 f"the train loss fell {decrease:.1%} from the first epoch to its best; WARN below "
                 f"{th.lr_low_decrease:.0%}" + (f"; the lr was {ratio:.3g}x the range test's suggestion"
                                                  if ratio is not None else ""),
                 "raise the lr (lr='auto'), check for dead units or frozen layers" if bad else "")


def _worse_than_baseline(curves: Curves, summary: dict[str, Any], baselines: dict[str, float]) -> Check:
    classification = bool(curves.get("val_accuracy"))
    metric = "accuracy" if classification else "r2"
    series = _finite(curves.get(f"val_{metric}", []))
    if not series:
        return Check("run.worse_than_baseline", "PASS", None, None, "no validation metric to compare")
    score = max(series)
    bars = dict(baselines)
    if "majority" not in bars:
        confusion = summary.get("confusion_matrix")
        if classification and confusion:
            rows = [sum(r) for r in confusion]
            bars["majority"] = max(rows) / max(sum(rows), 1)
        elif not classification:
            bars["majority"] = 0.0
    beaten = {k: v for k, v in bars.items() if score <= v + 1e-9 and k in ("majority", "random", "linear")}
    source = "the pre-flight baselines (doctor.json)" if baselines else "the majority class / mean predictor"
    text = ", ".join(f"{k} {v:.4g}" for k, v in bars.items())
    return Check("run.worse_than_baseline", "WARN" if beaten else "PASS", score, bars,
                 f"best validation {metric} {score:.4g} against {source}: {text}",
                 f"the model does no better than {', '.join(beaten)}: check the pre-flight (trainwise doctor "
                 "CONFIG), the lr, and that the model has nonlinearities" if beaten else "")

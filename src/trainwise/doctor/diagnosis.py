"""``doctor.diagnose``: the post-run checks, read from a run folder (metrics.csv, summary.json and,
when the pre-flight ran, the baselines in doctor.json) or from a ``FitResult``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from trainwise.doctor import run_rules
from trainwise.doctor.report import Check, DoctorReport
from trainwise.doctor.run_rules import Curves, RunFacts
from trainwise.doctor.thresholds import SOURCES, Thresholds, thresholds_of
from trainwise.errors import DataNotFoundError



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
        facts = read_run(Path(run_dir))
    elif hasattr(source, "history"):
        facts = RunFacts(_from_history(source.history), dict(source.summary))
        _add_classes(facts)
    else:
        raise DataNotFoundError(f"{run_dir} holds no metrics.csv, so there is no training curve to diagnose; "
                                "pass the folder of a run that trained at least one epoch (runs/<name>-<time>)")
    return DoctorReport(diagnose_facts(facts, th))


def read_run(run_dir: Path) -> RunFacts:
    """The curves (each epoch's last train/val rows of metrics.csv), its step-level train-loss and
    event rows, summary.json, the pre-flight's baselines (doctor.json) and the class count
    (data.json) of a run folder."""
    summary = _json(run_dir / "summary.json")
    last: dict[tuple[int, str], float] = {}
    steps: list[tuple[int, int, str, float]] = []
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            split = row.get("split")
            if split in ("train", "val"):
                # an epoch's figures are its last rows (step-level rows come before them)
                last[(int(row["epoch"]), f"{split}_{row['metric']}")] = float(row["value"])
            if split == "event" or (split == "train" and row.get("metric") == "loss"):
                steps.append((int(row["step"]), int(row["epoch"]), "loss" if split == "train" else row["metric"],
                              float(row["value"])))
    epochs = sorted({epoch for epoch, _ in last})
    names = sorted({name for _, name in last})
    curves = {name: [last.get((e, name), math.nan) for e in epochs] for name in names}
    baselines: dict[str, float] = {}
    for c in _json(run_dir / "doctor.json").get("checks", []):
        if c.get("id", "").startswith("baseline.") and isinstance(c.get("value"), (int, float)):
            baselines[c["id"].split(".", 1)[1]] = float(c["value"])
    classes = _json(run_dir / "data.json").get("num_classes")
    facts = RunFacts(curves, summary, baselines, classes if isinstance(classes, int) else None, steps=steps)
    _add_classes(facts)
    return facts


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _add_classes(facts: RunFacts) -> None:
    """Class shares from the confusion matrix summary.json holds (the test split), when it does."""
    confusion = facts.summary.get("confusion_matrix")
    if confusion and all(isinstance(r, list) for r in confusion):
        rows = [sum(r) for r in confusion]
        total = sum(rows)
        if total:
            facts.class_shares = [r / total for r in rows]
            facts.num_classes = facts.num_classes or len(rows)


def _from_history(history: list[dict[str, float]]) -> Curves:
    names = sorted({k for row in history for k in row if k.startswith(("train_", "val_"))})
    return {name: [float(row.get(name, math.nan)) for row in history] for name in names}


def diagnose_facts(facts: RunFacts, th: Thresholds) -> list[Check]:
    train = facts.series("train_loss")
    if not train:
        if facts.summary.get("status") == "diverged":
            return _before_first_epoch(facts, th)
        raise DataNotFoundError("the run logged no training loss, so there is nothing to diagnose; train at "
                                "least one epoch first")
    summary, curves = facts.summary, facts.curves
    underfit = run_rules.underfit(facts, th)
    learned = underfit.status == "PASS" and underfit.value is not None
    return [_diverged(train, facts, th), underfit, run_rules.overfit(facts, th),
            _plateau(train, th, learned), run_rules.still_improving(facts, th), _oscillation(curves, th),
            _lr_too_high(train, summary, th), _lr_too_low(train, summary, th),
            run_rules.worse_than_baseline(facts, th)]


RUN_CHECKS = ("run.diverged", "run.underfit", "run.overfit", "run.plateau", "run.still_improving", "run.oscillation",
              "run.lr_too_high", "run.lr_too_low", "run.worse_than_baseline")


def _before_first_epoch(facts: RunFacts, th: Thresholds) -> list[Check]:
    """A run that diverged before any epoch ended: run.diverged from summary.json and the step-level
    rows of metrics.csv, run.lr_too_high from the same signs; the checks that read epoch curves are
    skipped (SKIP, not PASS: they saw nothing)."""
    why = ("skipped: the run diverged before its first epoch ended, so it logged no epoch figures (train/val "
           "loss, accuracy) to judge; see run.diverged")
    done = {"run.diverged": _diverged([], facts, th), "run.lr_too_high": _lr_too_high([], facts.summary, th)}
    return [done.get(check_id) or Check(check_id, "SKIP", None, None, why) for check_id in RUN_CHECKS]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _diverged(train: list[float], facts: RunFacts, th: Thresholds) -> Check:
    summary = facts.summary
    bad = [v for v in train if not math.isfinite(v) or v >= th.diverged_loss]
    rollbacks = int(summary.get("nonfinite_rollbacks", 0) or 0) + int(summary.get("nonfinite_skipped", 0) or 0)
    diverged = summary.get("status") == "diverged"
    status = "FAIL" if diverged or bad else "WARN" if rollbacks else "PASS"
    value: dict[str, Any] = {"bad_epochs": len(bad), "nonfinite_steps": rollbacks}
    stop = next(((step, epoch) for step, epoch, kind, _ in reversed(facts.steps) if kind == "diverged"), None)
    if diverged and stop is not None:
        value.update(step=stop[0], epoch=stop[1])
    reason = str(summary.get("stop_reason") or "").split("; try ")[0]  # the advice is the fix below
    head = f"status {summary.get('status')}"
    if diverged:
        head += f": {reason}" if reason else f" at step {stop[0]} (epoch {stop[1]})" if stop else ""
        head += ", before its first epoch ended" if not train else ""
    losses = [(step, v) for step, _, kind, v in facts.steps if kind == "loss" and math.isfinite(v)]
    logged = f"; the last finite train loss logged was {losses[-1][1]:.4g} at step {losses[-1][0]}" if losses else ""
    message = (f"{head}; {len(bad)} epoch(s) with a non-finite train loss or one >= {th.diverged_loss:g} "
               f"({SOURCES['diverged_loss']}); {rollbacks} non-finite step(s) rolled back or skipped{logged}")
    fix = ("lower the lr (lr='auto'), clip gradients (train.grad_clip: 1.0), add warmup (schedule.warmup: 0.05), "
           "use bf16 instead of fp16")
    if reason.startswith("training stopped"):  # the guard found NaN/Inf in a batch's data
        fix = "remove the NaN/Inf from the data (trainwise doctor CONFIG: data.nonfinite); otherwise " + fix
    return Check("run.diverged", status, value, th.diverged_loss, message, "" if status == "PASS" else fix)


def _plateau(train: list[float], th: Thresholds, learned: bool) -> Check:
    """A train loss that stopped falling while still high, on a run that did not learn its task
    (AutoTrainer gates slow convergence on a bad outcome: noisy labels keep a good model's loss high)."""
    w = th.plateau_window
    finite = _finite(train)
    if len(finite) < w + 1:
        return Check("run.plateau", "PASS", None, w, f"fewer than {w + 1} epochs: no plateau to judge")
    start, end = finite[-w - 1], finite[-1]
    per_epoch = (start - end) / abs(start) / w if start else 0.0
    stuck_high = end > th.plateau_level * finite[0]
    bad = per_epoch < th.plateau_decrease and stuck_high and not learned
    return Check("run.plateau", "WARN" if bad else "PASS", per_epoch, th.plateau_decrease,
                 f"over the last {w} epochs the train loss fell {per_epoch:.3%} per epoch (WARN below "
                 f"{th.plateau_decrease:.1%} while the loss is still above {th.plateau_level:g} of its first-epoch value; "
                 f"{SOURCES['plateau_decrease']}) and the validation score does not pass run.underfit; last {end:.4g}, "
                 f"first {finite[0]:.4g}",
                 "raise the lr or use a schedule with warmup (lr='auto'), check for dead units (doctor pre-flight), "
                 "use a bigger model" if bad else "")


def _turns(series: list[float], swing: float) -> int:
    diffs = [b - a for a, b in zip(series, series[1:])]
    return sum(1 for d1, d2 in zip(diffs, diffs[1:]) if d1 * d2 < 0 and abs(d1) >= swing and abs(d2) >= swing)


def _oscillation(curves: Curves, th: Thresholds) -> Check:
    """AutoTrainer's oscillation rule on the validation accuracy; without one, on the loss, with each
    swing measured against the loss's whole descent (first value to minimum): near zero loss a 10%
    relative wobble is noise, a bounce by a tenth of all that was learned is not."""
    acc = _finite(curves.get("val_accuracy") or [])
    loss = _finite(curves.get("val_loss") or curves.get("train_loss") or [])
    series = acc or loss
    if len(series) < 5:
        return Check("run.oscillation", "PASS", None, th.oscillation_share, "fewer than 5 epochs: no oscillation "
                     "to judge")
    if acc:
        scaled, swing, what = acc, th.oscillation_swing, f"validation accuracy around by >= {th.oscillation_swing:g}"
    else:
        descent = max(loss[0] - min(loss), 1e-12)
        scaled, swing = [v / descent for v in loss], th.oscillation_loss_swing
        what = f"loss around by >= {swing:g} of its descent ({descent:.4g})"
    share = _turns(scaled, swing) / len(series)
    bad = share >= th.oscillation_share
    return Check("run.oscillation", "WARN" if bad else "PASS", share, th.oscillation_share,
                 f"{share:.0%} of epochs turn the {what} on both sides; WARN at {th.oscillation_share:.0%} "
                 f"({SOURCES['oscillation_swing']}; {SOURCES['oscillation_share']})",
                 "lower the lr or decay it (schedule.name: cosine), use larger batches, Adam instead of SGD, "
                 "clip gradients" if bad else "")


def _lr_vs_suggestion(summary: dict[str, Any]) -> Optional[float]:
    finder = summary.get("lr_finder") or {}
    lr, suggestion = summary.get("lr"), finder.get("suggestion")
    return lr / suggestion if isinstance(lr, (int, float)) and isinstance(suggestion, (int, float)) and suggestion else None


def _lr_too_high(train: list[float], summary: dict[str, Any], th: Thresholds) -> Check:
    """Non-finite losses, an lr far above the range test's suggestion, or a train loss that rose and
    never came back (the Playbook's "training loss increasing"). A bump that training recovers from
    (1cycle's peak lr) and loss spikes the run survived are reported, not warned about."""
    spikes = int(summary.get("loss_spikes", 0) or 0)
    rollbacks = int(summary.get("nonfinite_rollbacks", 0) or 0)
    finite = _finite(train)
    # a rise counts when it is large against the loss's own level and against the first epoch's loss
    # (0.0005 -> 0.001 near zero is noise, not a bad lr)
    rises = [i for i in range(2, len(finite)) if finite[i] > min(finite[:i]) * (1 + th.lr_high_rise)
             and finite[i] - min(finite[:i]) > th.lr_high_min_rise * abs(finite[0])]
    unrecovered = bool(rises) and finite[-1] > min(finite) * (1 + th.lr_high_rise) and \
        finite[-1] - min(finite) > th.lr_high_min_rise * abs(finite[0])
    ratio = _lr_vs_suggestion(summary)
    signs, notes = [], []
    if rollbacks or summary.get("status") == "diverged" or len(finite) < len(train):
        signs.append("non-finite losses")
    if unrecovered:
        signs.append(f"the train loss rose over {th.lr_high_rise:.0%} above its minimum from epoch {rises[0] + 1} "
                     "and ended there (Tuning Playbook: training loss increasing)")
    elif rises:
        notes.append(f"the train loss rose over {th.lr_high_rise:.0%} at epoch {rises[0] + 1} and recovered")
    if ratio is not None and ratio > th.lr_factor:
        signs.append(f"the lr was {ratio:.3g}x the range test's suggestion")
    if spikes:
        notes.append(f"{spikes} loss spike(s) the run recovered from")
    note = f" ({'; '.join(notes)})" if notes else ""
    return Check("run.lr_too_high", "WARN" if signs else "PASS", {"spikes": spikes, "rises": len(rises),
                 "lr_over_suggestion": ratio}, th.lr_high_rise,
                 ("signs of a too-high lr: " + "; ".join(signs) + note) if signs else
                 f"no non-finite steps, no lasting rise of the train loss{note}",
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

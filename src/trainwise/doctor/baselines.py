"""Baselines trained briefly and scored on validation: the majority class (or the mean), random
guesses from the train prior, a linear model and a shallow MLP (the last two through the
``Trainer``), and the bar the user's model must beat."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from trainwise.doctor.report import Check
from trainwise.doctor.thresholds import SOURCES, Thresholds


def baseline_checks(x: torch.Tensor, y: torch.Tensor, x_val: Optional[torch.Tensor], y_val: Optional[torch.Tensor],
                    *, task: str, num_classes: Optional[int], th: Thresholds, seed: int = 0) -> list[Check]:
    """The five ``baseline.*`` checks. Without validation data, 20% of train is held out.

    Each ``baseline.*`` value is the validation accuracy (R² for regression). Classes more imbalanced
    than ``imbalance_ratio`` (data.imbalance's rule) are judged by macro-F1, which a majority guess
    cannot game, and the trained baselines then learn with a class-balanced loss."""
    g = torch.Generator().manual_seed(seed)
    x, y = x.detach().float().reshape(len(x), -1).cpu(), y.detach().cpu()
    if x_val is None or y_val is None:
        order = torch.randperm(len(x), generator=g)
        cut = max(1, len(x) // 5)
        x, y, x_val, y_val = x[order[cut:]], y[order[cut:]], x[order[:cut]], y[order[:cut]]
    x_val, y_val = x_val.detach().float().reshape(len(x_val), -1).cpu(), y_val.detach().cpu()
    if len(x) > th.baseline_samples:
        keep = torch.randperm(len(x), generator=g)[:th.baseline_samples]
        x, y = x[keep], y[keep]
    mean, std = x.mean(dim=0), x.std(dim=0) if len(x) > 1 else torch.ones(x.shape[1])
    std = torch.where(std > 1e-6, std, torch.ones_like(std)).clamp(min=1e-2 * float(std.max()) if len(std) else 1.0)
    x, x_val = (x - mean) / std, (x_val - mean) / std
    if task == "regression":  # standardized targets train well at one lr; R² is the same in any units
        y_mean, y_std = y.float().mean(dim=0), y.float().std(dim=0).clamp(min=1e-12)
        y, y_val = (y.float() - y_mean) / y_std, (y_val.float() - y_mean) / y_std
    classification = task in ("classification", "binary")
    classes = (int(num_classes or int(y.max()) + 1) if task == "classification" else 2) if classification else 0
    counts = torch.bincount(y.reshape(-1).long().clamp(0, classes - 1), minlength=classes) if classification else None
    ratio = 1.0
    if counts is not None:
        ratio = float(counts.max()) / float(counts.min()) if int(counts.min()) else math.inf
    balanced = ratio > th.imbalance_ratio
    metric = ("macro_f1" if balanced else "accuracy") if classification else "r2"
    fit: dict[str, Any] = dict(x=x, y=y, x_val=x_val, y_val=y_val, task=task, seed=seed, steps=th.baseline_steps,
                               counts=counts if balanced else None)
    scores = {"majority": _majority(y, y_val, task, classes), "random": _random(y, y_val, task, g, classes),
              "linear": _trained(_linear(x, y, task, num_classes), **fit),
              "shallow_mlp": _trained(_mlp(x, y, task, num_classes), **fit)}
    names = {"majority": "the majority class" if classification else "the train mean",
             "random": f"random guesses from the train prior (mean of {RANDOM_DRAWS} draws)" if classification else
             f"random train targets (mean of {RANDOM_DRAWS} draws)",
             "linear": "a linear model", "shallow_mlp": "an MLP with one hidden layer of 64"}
    how = " (trained with a class-balanced loss: the classes are imbalanced)" if balanced else ""
    checks = [Check(f"baseline.{key}", "PASS", score["accuracy" if classification else "r2"], None,
                    f"{names[key]} scores validation " + ", ".join(f"{_LABELS[m]} {v:.4g}" for m, v in score.items())
                    + (how if key in ("linear", "shallow_mlp") else ""))
              for key, score in scores.items()]
    checks.append(_comparison({k: v[metric] for k, v in scores.items()}, metric, th, ratio if balanced else None))
    return checks


_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "r2": "R²"}
RANDOM_DRAWS = 100  # draws averaged into the random baseline's figures


def _comparison(scores: dict[str, float], metric: str, th: Thresholds, imbalance: Optional[float]) -> Check:
    """``imbalance``: the largest/smallest class ratio when it exceeds ``imbalance_ratio`` (judged by macro-F1)."""
    best_name = max(scores, key=lambda k: scores[k] if math.isfinite(scores[k]) else -math.inf)
    bar = scores[best_name]
    learned = max(scores["linear"], scores["shallow_mlp"])
    floor = max(scores["majority"], scores["random"])
    gain = (learned - floor) / (1.0 - floor) if 1.0 - floor > 1e-12 else 0.0
    label = _LABELS[metric]
    value = {"bar": bar, "best": best_name, "metric": metric, "gain": gain}
    judged = ""
    if imbalance is not None:
        value["imbalance_ratio"] = imbalance
        judged = (f"the classes are imbalanced (largest/smallest {imbalance:.3g} > {th.imbalance_ratio:g}, "
                  f"data.imbalance), so the baselines are judged by macro-F1, which always guessing the majority "
                  "class cannot game; ")
    message = (f"{judged}the bar to beat: validation {label} {bar:.4g} ({best_name}); the trained baselines gain "
               f"{gain:.3g} of the way from the best trivial guess ({floor:.4g}) to perfect. ")
    if gain < th.baseline_gain:
        if imbalance is not None:
            return Check("baseline.comparison", "WARN", value, th.baseline_gain,
                         message + f"No trained baseline gains {th.baseline_gain:g} over it "
                         f"({SOURCES['baseline_gain']}), even with a class-balanced loss: these inputs barely tell the "
                         "minority classes apart",
                         "collect more samples of the minority classes or features that separate them; train with "
                         "class_weights='balanced', sampler='balanced' or loss='focal' and judge by macro-F1; last, "
                         "check that the label column is the one you mean and that inputs and labels belong together")
        return Check("baseline.comparison", "WARN", value, th.baseline_gain,
                     message + f"No trained baseline gains {th.baseline_gain:g} over it ({SOURCES['baseline_gain']}): the "
                     "inputs seem to say little about the targets",
                     "check that inputs and labels are aligned (not shuffled separately), and that the label "
                     "column is the one you mean")
    return Check("baseline.comparison", "PASS", value, th.baseline_gain,
                 message + f"A model that does not beat {bar:.4g} learns nothing a {best_name} baseline cannot")


def _classified(predicted: torch.Tensor, y_val: torch.Tensor, classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of class predictions."""
    from trainwise.metrics import macro_f1

    truth = y_val.reshape(-1).long().clamp(0, classes - 1)
    predicted = predicted.reshape(-1).long().clamp(0, classes - 1)
    confusion = torch.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    return {"accuracy": float((predicted == truth).double().mean()), "macro_f1": macro_f1(confusion)}


def _majority(y: torch.Tensor, y_val: torch.Tensor, task: str, classes: int) -> dict[str, float]:
    if task == "regression":
        return {"r2": _r2(y.float().mean(dim=0).expand_as(y_val.float()), y_val.float())}
    mode = int(torch.mode(y.reshape(-1).long()).values)
    return _classified(torch.full((y_val.numel(),), mode), y_val, classes)


def _random(y: torch.Tensor, y_val: torch.Tensor, task: str, g: torch.Generator, classes: int) -> dict[str, float]:
    """The expected figures of guessing from the train prior: the mean over ``RANDOM_DRAWS`` draws (one
    draw's macro-F1 on a rare class swings by several points)."""
    draws = []
    for _ in range(RANDOM_DRAWS):
        picks = torch.randint(len(y), (len(y_val),), generator=g)
        draws.append({"r2": _r2(y.float()[picks].reshape(y_val.shape), y_val.float())} if task == "regression" else
                     _classified(y.reshape(-1).long()[picks], y_val, classes))
    return {name: sum(d[name] for d in draws) / len(draws) for name in draws[0]}


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    total = float(((target - target.mean(dim=0)) ** 2).sum())
    return 1.0 - float(((pred - target) ** 2).sum()) / total if total > 0 else 0.0


def _outputs(y: torch.Tensor, task: str, num_classes: Optional[int]) -> int:
    if task == "classification":
        return int(num_classes or int(y.max()) + 1)
    return 1 if y.dim() == 1 else int(y.reshape(len(y), -1).shape[1])


def _linear(x: torch.Tensor, y: torch.Tensor, task: str, num_classes: Optional[int]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(x.shape[1], _outputs(y, task, num_classes))


def _mlp(x: torch.Tensor, y: torch.Tensor, task: str, num_classes: Optional[int]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, _outputs(y, task, num_classes)))


def _trained(model: nn.Module, *, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
             task: str, seed: int, steps: int, counts: Optional[torch.Tensor]) -> dict[str, float]:
    """Validation figures of ``model`` trained through the Trainer; ``counts`` (train samples per
    class): train with a class-balanced loss, each class weighted by n / (C * its count)."""
    from trainwise.doctor.training import NoCheckpoints
    from trainwise.trainer import Trainer

    loss: Any = {"classification": "cross_entropy", "binary": nn.BCEWithLogitsLoss()}.get(task, "mse")
    weights = None
    if counts is not None:
        per_class = float(counts.sum()) / (len(counts) * counts.clamp(min=1).double())
        if task == "binary":  # one logit: the positive class weighs negatives / positives
            loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(per_class[1] / per_class[0])]))
        else:
            weights = per_class.float().tolist()
    if task == "classification":
        y, y_val = y.long(), y_val.long()
    else:
        y, y_val = y.float().reshape(len(y), -1), y_val.float().reshape(len(y_val), -1)
    batch_size = 64
    epochs = max(1, min(200, math.ceil(steps / math.ceil(len(x) / batch_size))))
    with tempfile.TemporaryDirectory(prefix="trainwise-baseline-") as tmp:
        trainer = Trainer(model, loss=loss, optimizer="adamw", lr=3e-3, weight_decay=1e-4, epochs=epochs,
                          batch_size=batch_size, patience=3, callbacks=[NoCheckpoints()], run_dir=Path(tmp),
                          progress=False, report=False, seed=seed, device="cpu", class_weights=weights)
        trainer.fit((x, y), (x_val, y_val))
        figures = trainer.evaluate((x_val, y_val))
    names = ("r2",) if task == "regression" else ("accuracy", "macro_f1")
    return {name: float(figures[name]) for name in names}

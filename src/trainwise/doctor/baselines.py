"""Baselines trained briefly and scored on validation: the majority class (or the mean), random
guesses from the train prior, a linear model and a shallow MLP (the last two through the
``Trainer``), and the bar the user's model must beat."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from trainwise.doctor.report import Check
from trainwise.doctor.thresholds import SOURCES, Thresholds


def baseline_checks(x: torch.Tensor, y: torch.Tensor, x_val: Optional[torch.Tensor], y_val: Optional[torch.Tensor],
                    *, task: str, num_classes: Optional[int], th: Thresholds, seed: int = 0) -> list[Check]:
    """The five ``baseline.*`` checks. Without validation data, 20% of train is held out."""
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
    metric = "accuracy" if task in ("classification", "binary") else "r2"
    fit = dict(x=x, y=y, x_val=x_val, y_val=y_val, task=task, metric=metric, seed=seed, steps=th.baseline_steps)
    scores = {"majority": _majority(y, y_val, task), "random": _random(y, y_val, task, g),
              "linear": _trained(_linear(x, y, task, num_classes), **fit),
              "shallow_mlp": _trained(_mlp(x, y, task, num_classes), **fit)}
    names = {"majority": "the majority class" if metric == "accuracy" else "the train mean",
             "random": "random guesses from the train prior" if metric == "accuracy" else "random train targets",
             "linear": "a linear model", "shallow_mlp": "an MLP with one hidden layer of 64"}
    checks = [Check(f"baseline.{key}", "PASS", score, None, f"{names[key]} scores validation {metric} {score:.4g}")
              for key, score in scores.items()]
    checks.append(_comparison(scores, metric, th))
    return checks


def _comparison(scores: dict[str, float], metric: str, th: Thresholds) -> Check:
    best_name = max(scores, key=lambda k: scores[k] if math.isfinite(scores[k]) else -math.inf)
    bar = scores[best_name]
    learned = max(scores["linear"], scores["shallow_mlp"])
    floor = max(scores["majority"], scores["random"])
    gain = (learned - floor) / (1.0 - floor) if 1.0 - floor > 1e-12 else 0.0
    value = {"bar": bar, "best": best_name, "metric": metric, "gain": gain}
    message = (f"the bar to beat: validation {metric} {bar:.4g} ({best_name}); the trained baselines gain "
               f"{gain:.3g} of the way from the best trivial guess ({floor:.4g}) to perfect. ")
    if gain < th.baseline_gain:
        return Check("baseline.comparison", "WARN", value, th.baseline_gain,
                     message + f"No trained baseline gains {th.baseline_gain:g} over it ({SOURCES['baseline_gain']}): the "
                     "inputs seem to say little about the targets",
                     "check that inputs and labels are aligned (not shuffled separately), and that the label "
                     "column is the one you mean")
    return Check("baseline.comparison", "PASS", value, th.baseline_gain,
                 message + f"A model that does not beat {bar:.4g} learns nothing a {best_name} baseline cannot")


def _majority(y: torch.Tensor, y_val: torch.Tensor, task: str) -> float:
    if task == "regression":
        return _r2(y.float().mean(dim=0).expand_as(y_val.float()), y_val.float())
    mode = int(torch.mode(y.reshape(-1).long()).values)
    return float((y_val.reshape(-1).long() == mode).double().mean())


def _random(y: torch.Tensor, y_val: torch.Tensor, task: str, g: torch.Generator) -> float:
    picks = torch.randint(len(y), (len(y_val),), generator=g)
    if task == "regression":
        return _r2(y.float()[picks].reshape(y_val.shape), y_val.float())
    return float((y.reshape(-1).long()[picks] == y_val.reshape(-1).long()).double().mean())


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
             task: str, metric: str, seed: int, steps: int) -> float:
    from trainwise.doctor.training import NoCheckpoints
    from trainwise.trainer import Trainer

    loss = {"classification": "cross_entropy", "binary": nn.BCEWithLogitsLoss()}.get(task, "mse")
    if task == "classification":
        y, y_val = y.long(), y_val.long()
    else:
        y, y_val = y.float().reshape(len(y), -1), y_val.float().reshape(len(y_val), -1)
    batch_size = 64
    epochs = max(1, min(200, math.ceil(steps / math.ceil(len(x) / batch_size))))
    with tempfile.TemporaryDirectory(prefix="trainwise-baseline-") as tmp:
        trainer = Trainer(model, loss=loss, optimizer="adamw", lr=3e-3, weight_decay=1e-4, epochs=epochs,
                          batch_size=batch_size, patience=3, callbacks=[NoCheckpoints()], run_dir=Path(tmp),
                          progress=False, report=False, seed=seed, device="cpu")
        trainer.fit((x, y), (x_val, y_val))
        return float(trainer.evaluate((x_val, y_val))[metric])

"""Losses and evaluation metrics, accumulated on the device and read once per pass."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trainwise.errors import ConfigError

LOSS_NAMES = ("cross_entropy", "mse", "mae", "huber")
REGRESSION_LOSSES = ("mse", "mae", "huber")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def task_of_loss(loss: str) -> str:
    return "regression" if loss in REGRESSION_LOSSES else "classification"


def build_loss(name: str, *, label_smoothing: float = 0.0,
               class_weights: Optional[torch.Tensor] = None) -> LossFn:
    """The mean loss over a batch. ``label_smoothing`` and ``class_weights`` apply to cross-entropy."""
    if name not in LOSS_NAMES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if name == "cross_entropy":
        if class_weights is None and label_smoothing == 0.0:
            return F.cross_entropy
        return lambda out, y: F.cross_entropy(out, y, weight=class_weights, label_smoothing=label_smoothing)
    if name == "mse":
        return F.mse_loss
    if name == "mae":
        return F.l1_loss
    return F.huber_loss


class ClassificationMeter:
    """Loss, accuracy, top-5 accuracy and a confusion matrix, summed on the device."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        n = targets.shape[0]
        self.count += n
        self.loss_sum += loss.detach().double() * n
        predicted = outputs.argmax(dim=1)
        self.confusion += torch.bincount(targets * self.num_classes + predicted, minlength=self.num_classes ** 2)
        if self.num_classes > 5:
            top5 = outputs.topk(5, dim=1).indices
            self.top5 += (top5 == targets.unsqueeze(1)).any(dim=1).sum()

    def compute(self) -> dict[str, float]:
        cm = self.confusion_matrix()
        total = max(self.count, 1)
        result = {"loss": self.loss_sum.item() / total, "accuracy": float(cm.diag().sum()) / total,
                  "macro_f1": macro_f1(cm)}
        if self.num_classes > 5:
            result["top5_accuracy"] = self.top5.item() / total
        return result

    def confusion_matrix(self) -> torch.Tensor:
        """Rows are true classes, columns predicted classes."""
        return self.confusion.view(self.num_classes, self.num_classes).cpu()


def macro_f1(confusion: torch.Tensor) -> float:
    """Unweighted mean of per-class F1; classes absent from both truth and predictions are skipped."""
    cm = confusion.double()
    tp = cm.diag()
    predicted, actual = cm.sum(dim=0), cm.sum(dim=1)
    present = (predicted + actual) > 0
    f1 = 2 * tp / (predicted + actual).clamp(min=1)
    return float(f1[present].mean()) if bool(present.any()) else 0.0


class RegressionMeter:
    """Loss, RMSE, MAE and R², from sums kept on the device."""

    def __init__(self, device: torch.device) -> None:
        zeros = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.sse, self.sae, self.y_sum, self.y_sq_sum = zeros(), zeros(), zeros(), zeros(), zeros()
        self.count = 0
        self.elements = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        outputs, targets = outputs.detach().double(), targets.double().reshape(outputs.shape)
        self.count += targets.shape[0]
        self.elements += targets.numel()
        self.loss_sum += loss.detach().double() * targets.shape[0]
        error = outputs - targets
        self.sse += (error * error).sum()
        self.sae += error.abs().sum()
        self.y_sum += targets.sum()
        self.y_sq_sum += (targets * targets).sum()

    def compute(self) -> dict[str, float]:
        n = max(self.elements, 1)
        sse = self.sse.item()
        total_ss = self.y_sq_sum.item() - self.y_sum.item() ** 2 / n
        r2 = 1.0 - sse / total_ss if total_ss > 0 else float("nan")
        return {"loss": self.loss_sum.item() / max(self.count, 1), "rmse": math.sqrt(sse / n),
                "mae": self.sae.item() / n, "r2": r2}

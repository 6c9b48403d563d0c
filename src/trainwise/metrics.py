"""Losses and evaluation metrics, accumulated on the device and read once per pass."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from trainwise.checks import check_choice, check_range
from trainwise.errors import ConfigError

LOSS_NAMES = ("cross_entropy", "mse", "mae", "huber", "focal")
REGRESSION_LOSSES = ("mse", "mae", "huber")
TASKS = ("classification", "regression")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Loss = Union[str, LossFn, nn.Module]
# nn.Module losses whose task is known from their type; any other callable: the targets decide.
_CLASSIFICATION_MODULES: tuple[type, ...] = (nn.CrossEntropyLoss, nn.NLLLoss)
_REGRESSION_MODULES = (nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss)
_UNREDUCED: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": F.cross_entropy, "mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


def focal_loss(outputs: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0,
               weight: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_true) ** gamma``, so easy,
    confident samples (mostly the majority class) count less. ``gamma=0`` is cross-entropy.
    ``weight``: per-class weights as in ``F.cross_entropy``; the mean is then weighted likewise."""
    log_p = F.log_softmax(outputs.float(), dim=1)
    ce = F.nll_loss(log_p, targets, weight=weight, reduction="none")
    p_true = log_p.gather(1, targets.unsqueeze(1)).squeeze(1).exp()
    loss = (1 - p_true).clamp(min=0) ** gamma * ce
    if reduction == "none":
        return loss
    if weight is not None:
        return loss.sum() / weight[targets].sum().clamp_min(torch.finfo(loss.dtype).tiny)
    return loss.mean()


class FocalLoss(nn.Module):
    """``loss=FocalLoss(gamma=2.0)``: the focal loss as an ``nn.Module`` (``loss="focal"`` is the same).

    Example:
        >>> Trainer(model, loss=FocalLoss(gamma=3.0))
    """

    def __init__(self, gamma: float = 2.0, weight: Optional[torch.Tensor] = None, reduction: str = "mean") -> None:
        super().__init__()
        check_range("gamma", gamma, 0)
        self.gamma, self.weight, self.reduction = gamma, weight, reduction

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(outputs, targets, gamma=self.gamma, weight=self.weight, reduction=self.reduction)


_UNREDUCED["focal"] = focal_loss


def task_of_loss(loss: Loss) -> Optional[str]:
    """``classification``, ``binary`` (one logit per sample, BCEWithLogitsLoss) or ``regression`` when
    the loss says which, else None (the data decides)."""
    if isinstance(loss, nn.BCEWithLogitsLoss):
        return "binary"
    if isinstance(loss, str):
        return "regression" if loss in REGRESSION_LOSSES else "classification"
    if isinstance(loss, (*_CLASSIFICATION_MODULES, FocalLoss)):
        return "classification"
    if isinstance(loss, _REGRESSION_MODULES):
        return "regression"
    return None


def loss_label(loss: Loss) -> str:
    """What a config file or a report calls ``loss``: its name, or the callable's type/function name."""
    if isinstance(loss, str):
        return loss
    return type(loss).__name__ if isinstance(loss, nn.Module) else getattr(loss, "__name__", type(loss).__name__)


def build_loss(loss: Loss, *, label_smoothing: float = 0.0, class_weights: Optional[torch.Tensor] = None,
               focal_gamma: float = 2.0) -> LossFn:
    """The mean loss over a batch, from a name or a user's callable ``(outputs, targets) -> tensor``
    (an ``nn.Module`` loss included, used as given). ``label_smoothing`` and ``class_weights``
    apply to the named cross-entropy."""
    if not isinstance(loss, str):
        if not callable(loss):
            raise ConfigError(f"loss must be a name ({', '.join(LOSS_NAMES)}) or a callable (outputs, targets) -> "
                              f"tensor such as nn.CrossEntropyLoss(), got {type(loss).__name__}")
        return loss
    check_choice("loss", loss, LOSS_NAMES)
    check_range("label_smoothing", label_smoothing, 0, 1, high_open=True)
    if loss == "focal":
        check_range("focal_gamma", focal_gamma, 0)
        return FocalLoss(focal_gamma, weight=class_weights)
    if loss == "cross_entropy":
        if class_weights is None and label_smoothing == 0.0:
            return F.cross_entropy
        return lambda out, y: F.cross_entropy(out, y, weight=class_weights, label_smoothing=label_smoothing)
    return _UNREDUCED[loss]


def build_weighted_loss(loss: Loss, *, label_smoothing: float = 0.0, class_weights: Optional[torch.Tensor] = None,
                        focal_gamma: float = 2.0) -> Callable[..., torch.Tensor]:
    """``f(outputs, targets, weights)``: the per-sample loss averaged with sample weights
    (``sum(w * l) / sum(w)``), for ``(x, y, weight)`` batches."""
    if isinstance(loss, str):
        extra: dict = {"weight": class_weights, "label_smoothing": label_smoothing} if loss == "cross_entropy" else {}
        if loss == "focal":
            extra = {"weight": class_weights, "gamma": focal_gamma}
        named = _UNREDUCED[loss]

        def fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return named(out, y, reduction="none", **extra)
    elif isinstance(loss, nn.Module) and hasattr(loss, "reduction"):
        unreduced = copy.copy(loss)
        unreduced.reduction = "none"
        fn = unreduced
    else:
        def fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            raise ConfigError(f"batches carry sample weights but the loss {loss_label(loss)} is a plain function "
                              "that averages over the batch; pass a loss name or an nn.Module loss, or override "
                              "Trainer.compute_loss(model, batch)")

    def weighted(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        per_sample = fn(out, y)
        if per_sample.dim() > 1:
            per_sample = per_sample.reshape(len(per_sample), -1).mean(dim=1)
        w = w.to(per_sample.dtype).reshape(-1)
        return (per_sample * w).sum() / w.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)

    return weighted


def compute_user_metrics(metrics: dict[str, Callable], outputs: torch.Tensor,
                         targets: torch.Tensor) -> dict[str, float]:
    """Each ``fn(outputs, targets)`` over a whole split, as a float."""
    values = {}
    for name, fn in metrics.items():
        value = fn(outputs, targets)
        values[name] = float(value.item() if isinstance(value, torch.Tensor) else value)
    return values


class ClassificationMeter:
    """Loss, accuracy, top-5 accuracy and a confusion matrix, summed on the device. Targets equal to
    ``ignore_index`` count nowhere (neither in the loss's count nor in accuracy)."""

    def __init__(self, num_classes: int, device: torch.device, ignore_index: int = -100) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_count = torch.zeros((), dtype=torch.float64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor, count: Any) -> None:
        self.loss_sum += loss_sum.detach().double()
        self.loss_count += count
        counted = targets != self.ignore_index
        if not bool(counted.all()):
            outputs, targets = outputs[counted], targets[counted]
        self.count += targets.shape[0]
        predicted = outputs.argmax(dim=1)
        self.confusion += torch.bincount(targets * self.num_classes + predicted, minlength=self.num_classes ** 2)
        if self.num_classes > 5:
            top5 = outputs.topk(5, dim=1).indices
            self.top5 += (top5 == targets.unsqueeze(1)).any(dim=1).sum()

    def compute(self) -> dict[str, float]:
        cm = self.confusion_matrix()
        total = max(self.count, 1)
        result = {"loss": self.loss_sum.item() / max(self.loss_count.item(), 1e-12),
                  "accuracy": float(cm.diag().sum()) / total, "macro_f1": macro_f1(cm)}
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


class BinaryMeter:
    """Loss and accuracy of one logit per sample (positive when > 0) against 0/1 targets, with the
    2x2 confusion matrix, so binary figures read like ``ClassificationMeter``'s. K logits per sample
    (multi-label) are :class:`MultiLabelMeter`'s."""

    def __init__(self, device: torch.device) -> None:
        self.inner = ClassificationMeter(2, device)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor, count: Any) -> None:
        predicted = (outputs.reshape(len(outputs), -1)[:, 0] > 0).long()
        logits = torch.nn.functional.one_hot(predicted, 2).float()  # argmax gives back the prediction
        self.inner.update(logits, targets.reshape(len(targets), -1)[:, 0].round().long(), loss_sum, count)

    def compute(self) -> dict[str, float]:
        return self.inner.compute()

    def confusion_matrix(self) -> torch.Tensor:
        return self.inner.confusion_matrix()


class MultiLabelMeter:
    """Figures of K logits per sample against 0/1 targets of shape ``(N, K)`` (multi-label, BCE on
    logits), summed on the device: ``accuracy`` over every label of every sample (Keras'
    ``binary_accuracy``: logit > 0 against target >= 0.5), ``exact_match`` the share of samples with
    every label right (subset accuracy), ``macro_f1`` the unweighted mean over labels of each label's
    F1 of its positive class (labels positive in neither truth nor predictions are skipped, as in
    :func:`macro_f1`). No confusion matrix: K labels make K of them.

    Example:
        >>> meter = MultiLabelMeter(2, torch.device("cpu"))
        >>> meter.update(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        ...              torch.tensor(1.0), 2)
        >>> meter.compute()["accuracy"], meter.compute()["exact_match"]
        (0.75, 0.5)
    """

    def __init__(self, num_labels: int, device: torch.device) -> None:
        # No int settings here: all_reduce_sums sums every int and tensor (the label count is a shape).
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_count = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)  # labels right, over all samples
        self.exact = torch.zeros((), dtype=torch.int64, device=device)  # samples with every label right
        self.true_positive = torch.zeros(num_labels, dtype=torch.int64, device=device)
        self.predicted_positive = torch.zeros(num_labels, dtype=torch.int64, device=device)
        self.actual_positive = torch.zeros(num_labels, dtype=torch.int64, device=device)
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor, count: Any) -> None:
        self.loss_sum += loss_sum.detach().double()
        self.loss_count += count
        labels = self.true_positive.numel()
        predicted = outputs.reshape(len(outputs), labels) > 0
        actual = targets.reshape(len(targets), labels) >= 0.5
        right = predicted == actual
        self.count += right.shape[0]
        self.correct += right.sum()
        self.exact += right.all(dim=1).sum()
        self.true_positive += (predicted & actual).sum(dim=0)
        self.predicted_positive += predicted.sum(dim=0)
        self.actual_positive += actual.sum(dim=0)

    def compute(self) -> dict[str, float]:
        samples = max(self.count, 1)
        labels = self.true_positive.numel()
        positives = (self.predicted_positive + self.actual_positive).double()
        present = positives > 0
        f1 = 2 * self.true_positive.double() / positives.clamp(min=1)
        return {"loss": self.loss_sum.item() / max(self.loss_count.item(), 1e-12),
                "accuracy": self.correct.item() / (samples * labels), "exact_match": self.exact.item() / samples,
                "macro_f1": float(f1[present].mean()) if bool(present.any()) else 0.0}


class RegressionMeter:
    """Loss, RMSE, MAE and R², from sums kept on the device.

    ``target_std``: the targets were standardized with this std (per column): RMSE and MAE are
    reported in the original units (R² is the same in both); the loss stays as trained."""

    def __init__(self, device: torch.device, target_std: Optional[Sequence[float]] = None) -> None:
        self.scale = None if target_std is None else torch.tensor(target_std, dtype=torch.float64, device=device)
        zeros = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.sse, self.sae, self.y_sum, self.y_sq_sum = zeros(), zeros(), zeros(), zeros(), zeros()
        self.loss_count = zeros()
        self.count = 0
        self.elements = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor, count: Any) -> None:
        outputs, targets = outputs.detach().double(), targets.double().reshape(outputs.shape)
        self.count += targets.shape[0]
        self.elements += targets.numel()
        self.loss_sum += loss_sum.detach().double()
        self.loss_count += count
        error = outputs - targets
        if self.scale is not None:
            error = error * (self.scale if outputs.dim() > 1 else self.scale[0])
            targets = targets * (self.scale if outputs.dim() > 1 else self.scale[0])
        self.sse += (error * error).sum()
        self.sae += error.abs().sum()
        self.y_sum += targets.sum()
        self.y_sq_sum += (targets * targets).sum()

    def compute(self) -> dict[str, float]:
        n = max(self.elements, 1)
        sse = self.sse.item()
        total_ss = self.y_sq_sum.item() - self.y_sum.item() ** 2 / n
        r2 = 1.0 - sse / total_ss if total_ss > 0 else float("nan")
        return {"loss": self.loss_sum.item() / max(self.loss_count.item(), 1e-12), "rmse": math.sqrt(sse / n),
                "mae": self.sae.item() / n, "r2": r2}


class TokenMeter:
    """Per-position classification (tokens of ``(N, T, V)`` outputs, pixels of ``(N, C, H, W)``):
    the loss per counted position, token accuracy and perplexity (``exp`` of the mean
    cross-entropy), as running sums on the device; ``ignore_index`` positions count nowhere."""

    def __init__(self, class_axis: int, device: torch.device, ignore_index: int = -100,
                 perplexity: bool = True) -> None:
        self.class_axis, self.ignore_index, self.perplexity = class_axis, ignore_index, perplexity
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_count = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.positions = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor, count: Any) -> None:
        self.loss_sum += loss_sum.detach().double()
        self.loss_count += count
        counted = targets != self.ignore_index
        self.correct += ((outputs.argmax(dim=self.class_axis) == targets) & counted).sum()
        self.positions += counted.sum()

    def compute(self) -> dict[str, float]:
        loss = self.loss_sum.item() / max(self.loss_count.item(), 1e-12)
        result = {"loss": loss, "accuracy": self.correct.item() / max(self.positions.item(), 1)}
        if self.perplexity:
            result["perplexity"] = math.exp(min(loss, 700.0))
        return result


def class_weights_of(weights: Any) -> Union[torch.Tensor, str, None]:
    """Class weights as a float tensor (from a list, array or tensor), or ``"balanced"``."""
    if weights is None or isinstance(weights, torch.Tensor):
        return weights.float() if isinstance(weights, torch.Tensor) else None
    if isinstance(weights, str):
        return check_choice("class_weights", weights, ("balanced",))
    try:
        return torch.as_tensor(list(weights), dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"class_weights must be a list of numbers, one per class, or 'balanced', "
                          f"got {weights!r}") from exc


# The figures every run reports (Keras' names for them too): asking for one by name changes nothing.
BUILT_IN_FIGURES = {"accuracy": "accuracy", "acc": "accuracy", "sparse_categorical_accuracy": "accuracy",
                    "categorical_accuracy": "accuracy", "binary_accuracy": "accuracy", "macro_f1": "macro_f1",
                    "f1": "macro_f1", "exact_match": "exact_match",
                    "top5_accuracy": "top5_accuracy", "rmse": "rmse", "mae": "mae", "mean_absolute_error": "mae",
                    "r2": "r2", "loss": "loss"}


def named_metrics(metrics: Any) -> dict[str, Callable]:
    """``{name: fn(outputs, targets)}`` from a dict, or a list named by ``__name__``; the names of
    built-in figures (``"accuracy"``, as Keras users write them) are reported anyway and add nothing."""
    if metrics is None:
        return {}
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Mapping):
        unknown = [m for m in metrics if isinstance(m, str) and m not in BUILT_IN_FIGURES]
        if unknown:
            raise ConfigError(f"metric {unknown[0]!r} is not a built-in figure (every run reports accuracy, macro_f1, "
                              "top5_accuracy for classification; exact_match for multi-label; rmse, mae, r2 for "
                              "regression); pass a callable fn(outputs, targets) for others, e.g. metrics={'name': fn}")
        metrics = [m for m in metrics if not isinstance(m, str)]
    items = metrics.items() if isinstance(metrics, Mapping) else ((getattr(f, "__name__", None), f) for f in metrics)
    named = {}
    for name, fn in items:
        if not callable(fn) or not name or name == "<lambda>":
            raise ConfigError(f"metrics must be callables fn(outputs, targets) with a name (pass a dict "
                              f"{{'name': fn}} for lambdas), got {name!r}: {fn!r}")
        named[str(name)] = fn
    return named

"""Checks on the model: its mode, dropout, BatchNorm against the batch size, symmetric units, and,
from one forward and backward pass on a training batch, the loss at init, the output activation,
dead ReLUs, layers with no nonlinearity between them and the gradient flow."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from trainwise.doctor.report import Check, check
from trainwise.doctor.thresholds import SOURCES, Thresholds
from trainwise.models.layers import has_batchnorm

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
# autograd nodes that pass values through unchanged in shape-only ways (walked past to find the
# output activation) and those that are linear (a net made of these alone is one linear map)
_VIEWS = {"ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "SqueezeBackward0",
          "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0", "CloneBackward0", "ToCopyBackward0",
          "PermuteBackward0", "TransposeBackward0", "TBackward0", "SelectBackward0", "SliceBackward0",
          "ExpandBackward0", "AsStridedBackward0"}
_AFFINE = {"AddmmBackward0", "MmBackward0", "BmmBackward0", "ConvolutionBackward0", "MvBackward0",
           "LinearBackward0"}
_LINEAR = _VIEWS | _AFFINE | {
    "torch::autograd::AccumulateGrad", "AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1",
    "MulBackward1", "DivBackward1", "NegBackward0", "NativeBatchNormBackward0", "CudnnBatchNormBackward0",
    "NativeDropoutBackward0", "SumBackward0", "SumBackward1", "MeanBackward0", "MeanBackward1",
    "CatBackward0", "StackBackward0", "AvgPool1DBackward0", "AvgPool2DBackward0", "AdaptiveAvgPool1DBackward0",
    "AdaptiveAvgPool2DBackward0", "SplitBackward0", "UnbindBackward0", "IndexSelectBackward0"}
# output activation → the range its outputs can take
_RANGES = {"SigmoidBackward0": (0.0, 1.0), "TanhBackward0": (-1.0, 1.0), "ReluBackward0": (0.0, math.inf),
           "SoftplusBackward0": (0.0, math.inf), "ExpBackward0": (0.0, math.inf), "SoftmaxBackward0": (0.0, 1.0),
           "HardtanhBackward0": (-1.0, 1.0)}
# activations whose gradient vanishes when they saturate (the classic cause of a vanishing gradient)
_SATURATING = {"SigmoidBackward0": "sigmoid", "TanhBackward0": "tanh", "HardtanhBackward0": "hardtanh"}


def static_checks(model: nn.Module, batch_size: int, th: Thresholds) -> list[Check]:
    return [_train_mode(model), _dropout(model, th), _batchnorm(model, batch_size, th), _symmetry(model)]


def _train_mode(model: nn.Module) -> Check:
    frozen = [name or type(model).__name__ for name, m in model.named_modules() if not m.training]
    return check("model.train_mode", not frozen, len(frozen), 0,
                 f"{len(frozen)} module(s) left in eval mode: {', '.join(frozen[:5])}; dropout is then off and "
                 "BatchNorm uses its running statistics (Lightning warns on this at fit start)" if frozen else
                 "every module is in training mode", "call model.train() before training (the Trainer does it "
                 "each epoch; a loop of your own must too)")


def _dropout(model: nn.Module, th: Thresholds) -> Check:
    rates = {name: float(m.p) for name, m in model.named_modules() if isinstance(m, _DROPOUTS)}
    high = {name: p for name, p in rates.items() if p > th.dropout}
    return check("model.dropout", not high, max(rates.values(), default=0.0), th.dropout,
                 f"dropout rates above {th.dropout:g} ({SOURCES['dropout']}): {high}; the model underfits and "
                 "validation can beat training" if high else
                 f"dropout rates {sorted(set(rates.values())) or 'none'} (WARN above {th.dropout:g})",
                 "lower the dropout rate to 0.1-0.5 (model.dropout)")


def _batchnorm(model: nn.Module, batch_size: int, th: Thresholds) -> Check:
    if not has_batchnorm(model):
        return Check("model.batchnorm_batch_size", "PASS", batch_size, th.bn_min_batch, "no BatchNorm layers")
    status = "FAIL" if batch_size < 2 else "WARN" if batch_size < th.bn_min_batch else "PASS"
    return Check("model.batchnorm_batch_size", status, batch_size, th.bn_min_batch,
                 f"BatchNorm with batches of {batch_size}: WARN below {th.bn_min_batch} "
                 f"({SOURCES['bn_min_batch']}); batch statistics of few samples are noisy and differ from the "
                 "running statistics used at evaluation", "" if status == "PASS" else
                 "use batches of 32-64 or more, or GroupNorm/LayerNorm (model.norm: layer) instead of BatchNorm")


def _symmetry(model: nn.Module) -> Check:
    layers = [(name, m.weight) for name, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.weight.shape[0] > 1]
    symmetric = []
    for name, weight in layers[:-1]:  # the output layer may start at zero: its gradient rows differ per class
        rows = weight.detach().reshape(weight.shape[0], -1).double()
        spread = (rows - rows[0]).abs().max()
        if float(spread) <= 1e-7 * max(float(rows.abs().max()), 1e-12) or float(rows.abs().max()) == 0.0:
            symmetric.append(name)
    return check("model.symmetry", not symmetric, symmetric, "identical rows",
                 f"every unit of {', '.join(symmetric)} starts with the same weights (constant or zero init): they "
                 "get the same gradient and stay identical (NeuraLint ConstantInit)" if symmetric else
                 f"hidden layers start with distinct units ({len(layers[:-1])} checked)",
                 "initialize weights randomly (init='auto' or 'he'); never with a constant", bad="FAIL")


# ------------------------------------------------------------------------------------------ one batch
def graph_nodes(output: torch.Tensor) -> list[Any]:
    """Autograd nodes behind ``output``, nearest first."""
    nodes, stack, seen = [], [output.grad_fn], set()
    while stack:
        node = stack.pop(0)
        if node is None or node in seen:
            continue
        seen.add(node)
        nodes.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return nodes


def output_activation(output: torch.Tensor) -> Optional[str]:
    node = output.grad_fn
    while node is not None and node.name() in _VIEWS:
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return None if node is None else node.name()


def batch_checks(outputs: torch.Tensor, loss: torch.Tensor, *, reference: float, task: str,
                 num_classes: Optional[int], targets: torch.Tensor, loss_kind: str, model: nn.Module,
                 th: Thresholds) -> list[Check]:
    """Checks of one forward pass (``outputs`` still attached to the graph) and its backward."""
    activation = output_activation(outputs)
    nodes = graph_nodes(outputs)
    dead = dead_fractions(nodes)
    checks = [_init_loss(float(loss.detach()), reference, task, num_classes, targets, th),
              _output_activation(activation, outputs, task, targets, loss_kind, num_classes),
              _dead_units(dead, th), _linear_only(nodes, activation)]
    loss.backward()
    dead_layers = [i + 1 for i, f in enumerate(dead) if f >= th.dead_layer_fail]
    saturating = sorted({_SATURATING[n.name()] for n in nodes if n.name() in _SATURATING})
    checks.append(_gradient_flow(model, th, dead_layers=dead_layers, saturating=saturating))
    return checks


def _init_loss(value: float, reference: float, task: str, num_classes: Optional[int], targets: torch.Tensor,
               th: Thresholds) -> Check:
    what = (f"ln C = ln {num_classes} = {reference:.4g} (uniform predictions)" if task == "classification" else
            f"{reference:.4g}, the loss of predicting the training prior/mean")
    extra = ""
    if task == "classification" and num_classes:
        counts = torch.bincount(targets.reshape(-1).long().clamp(0, num_classes - 1), minlength=num_classes)
        p = counts.double() / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        extra = f"; the class prior's entropy is {entropy:.4g}"
    if not math.isfinite(value):
        return Check("model.init_loss", "FAIL", value, reference, f"the loss at init is {value}",
                     "find the NaN/Inf: check the inputs (data.nonfinite) and the model's forward")
    ratio = value / reference if reference > 0 else math.inf
    ok = ratio <= th.init_loss_ratio
    return check("model.init_loss", ok, value, th.init_loss_ratio * reference,
                 f"loss at init {value:.4g} against {what}{extra}: ratio {ratio:.3g}, WARN above "
                 f"{th.init_loss_ratio:g} ({SOURCES['init_loss_ratio']}). This check cannot see a softmax before "
                 "cross-entropy (its loss at init is still ln C); train.overfit_batch and "
                 "model.output_activation do", "start the output layer small (init='auto' does) or set its "
                 "bias to the class prior / target mean; standardize inputs and regression targets")


def _output_activation(activation: Optional[str], outputs: torch.Tensor, task: str, targets: torch.Tensor,
                       loss_kind: str, num_classes: Optional[int]) -> Check:
    out = outputs.detach().float()
    simplex = (out.dim() == 2 and out.shape[1] > 1 and bool(((out >= 0) & (out <= 1)).all())
               and bool(((out.sum(dim=1) - 1).abs() < 1e-3).all()))
    name = {"SoftmaxBackward0": "softmax", "SigmoidBackward0": "sigmoid"}.get(activation or "", None)
    if task == "classification" and (name or simplex) and loss_kind != "nll":
        name = name or "softmax"
        floor = math.log(1 + ((num_classes or 2) - 1) / math.e)
        return Check("model.output_activation", "FAIL", name, "raw logits",
                     f"the model ends in a {name} but the loss applies its own softmax (cross-entropy takes raw "
                     f"logits): learning slows and the loss cannot fall below log(1 + (C-1)/e) = {floor:.3f} "
                     "(pytorch#55902)", f"remove the final {name}; return the logits")
    if task == "classification" and loss_kind == "nll" and activation != "LogSoftmaxBackward0":
        return Check("model.output_activation", "WARN", activation, "LogSoftmax",
                     "NLLLoss expects log-probabilities but the model does not end in log_softmax",
                     "end the model with nn.LogSoftmax(dim=1), or use CrossEntropyLoss on raw logits")
    if task == "binary" and activation == "SigmoidBackward0":
        return Check("model.output_activation", "FAIL", "sigmoid", "raw logit",
                     "the model ends in a sigmoid but BCEWithLogitsLoss applies its own: predictions are squashed "
                     "twice and the loss cannot reach 0", "remove the final sigmoid; return the logit")
    if task == "regression" and activation in _RANGES:
        low, high = _RANGES[activation]
        y_low, y_high = float(targets.float().min()), float(targets.float().max())
        if y_low < low - 1e-6 or y_high > high + 1e-6:
            return Check("model.output_activation", "FAIL", [low, high], [y_low, y_high],
                         f"the model ends in {activation.replace('Backward0', '').lower()} with outputs in "
                         f"[{low:g}, {high:g}] but the targets span [{y_low:.3g}, {y_high:.3g}]: it cannot reach "
                         "them (DeepDiagnosis out-of-range)", "remove the final activation (a linear output "
                         "for regression), or rescale the targets into its range")
    shown = (activation or "none").replace("Backward0", "")
    return Check("model.output_activation", "PASS", shown, None,
                 f"the output layer ({shown}) suits the loss and the targets")


def dead_fractions(nodes: list[Any]) -> list[float]:
    """Per ReLU layer (nearest the input first), the share of its units inactive on every sample of the batch."""
    fractions = []
    for node in reversed(nodes):  # nearest-the-input first
        if node.name() != "ReluBackward0":
            continue
        try:
            result = node._saved_result
        except RuntimeError:  # modified in place later; it cannot be read back
            continue
        units = result.detach().reshape(result.shape[0], -1) if result.dim() > 1 else result.detach().reshape(1, -1)
        fractions.append(float((units <= 0).all(dim=0).double().mean()))
    return fractions


def _dead_units(fractions: list[float], th: Thresholds) -> Check:
    worst = max(fractions, default=0.0)
    layers = ", ".join(f"{f:.0%}" for f in fractions)
    whole = [i + 1 for i, f in enumerate(fractions) if f >= th.dead_layer_fail]
    status = "FAIL" if whole else "WARN" if worst >= th.dead_fraction else "PASS"
    found = f"share of ReLU units inactive on every sample of a batch, per layer: {layers or 'no ReLUs'}"
    if whole:
        named = ", ".join(f"{i} of {len(fractions)}" for i in whole)
        found += (f". ReLU layer {named} (counted from the input) is dead as a whole: its output is 0 for every "
                  "sample, so no gradient reaches the layers before it and nothing before it learns")
    fix = ("re-initialize (init='he'), lower the lr, standardize the inputs, or use LeakyReLU/GELU" if status == "WARN"
           else "look at the layer feeding that ReLU: a large negative bias or a bad init keeps every pre-activation "
           "below 0 (reset its biases to 0, init='he'), standardize the inputs, lower the lr if training led there; "
           "LeakyReLU/GELU keep a gradient below 0" if whole else "")
    return Check("model.dead_units", status, [round(f, 4) for f in fractions],
                 {"warn": th.dead_fraction, "fail_per_layer": th.dead_layer_fail},
                 f"{found}; WARN at {th.dead_fraction:.0%} ({SOURCES['dead_fraction']}), FAIL when one layer's share "
                 f"reaches {th.dead_layer_fail:.0%} ({SOURCES['dead_layer_fail']})", fix)


def _linear_only(nodes: list[Any], activation: Optional[str]) -> Check:
    names = [n.name() for n in nodes]
    affine = sum(name in _AFFINE for name in names)
    nonlinear = [name for name in names if name not in _LINEAR and name != activation]
    ok = affine < 2 or bool(nonlinear)
    return check("model.linear_only", ok, {"affine_layers": affine, "nonlinearities": len(nonlinear)}, 1,
                 f"{affine} linear/conv layers with no nonlinearity between them: together they are one linear "
                 "map (UMLAUT missing activations, NeuraLint MissingRelus)" if not ok else
                 f"{affine} linear/conv layer(s), {len(nonlinear)} nonlinear op(s) between them",
                 "put an activation (nn.ReLU, nn.GELU) between the layers")


def _gradient_flow(model: nn.Module, th: Thresholds, *, dead_layers: Sequence[int] = (),
                   saturating: Sequence[str] = ()) -> Check:
    """First/last layer gradient norms (AutoTrainer). The fix follows what the model holds: dead ReLU
    layers (``dead_layers``, counted from the input) or saturating activations (``saturating``)."""
    weights = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    if not weights:
        return Check("model.gradient_flow", "PASS", None, None, "no weight matrices to check")
    norms = {name: (float(p.grad.norm()) if p.grad is not None else None) for name, p in weights}
    bad = [name for name, n in norms.items() if n is not None and not math.isfinite(n)]
    if bad:
        return Check("model.gradient_flow", "FAIL", norms, "finite", f"non-finite gradients in {', '.join(bad)}",
                     "find the NaN/Inf: check the inputs, the loss and the lr")
    missing = [name for name, n in norms.items() if n is None or n == 0.0]
    first, last = norms[weights[0][0]] or 0.0, norms[weights[-1][0]] or 0.0
    ratio = first / last if last > 0 else math.inf if first > 0 else 0.0
    value = {"first": first, "last": last, "ratio": ratio, "no_gradient": missing}
    threshold = {"vanishing_ratio": th.vanishing_ratio, "vanishing_norm": th.vanishing_norm,
                 "exploding_ratio": th.exploding_ratio}
    base = f"first/last layer gradient norm {first:.3g}/{last:.3g} = {ratio:.3g}"
    if dead_layers and (missing or ratio < th.vanishing_ratio):
        return Check("model.gradient_flow", "WARN", value, threshold,
                     f"no gradient reaches {', '.join(missing[:5]) or 'the first layers'} ({base}): ReLU layer "
                     f"{', '.join(map(str, dead_layers))} (from the input) is dead on every sample and cuts the graph "
                     "(model.dead_units)", "revive the dead layer: reset the biases feeding it to 0 and re-initialize "
                     "(init='he'), standardize the inputs, lower the lr; LeakyReLU/GELU keep a gradient below 0")
    if missing and len(missing) < len(weights):
        return Check("model.gradient_flow", "WARN", value, threshold,
                     f"no gradient reaches {', '.join(missing[:5])} ({base}): a detached tensor, an unused layer "
                     "or dead units cut the graph", "look for .detach(), .data, .item() or torch.no_grad() in "
                     "forward; freeze layers on purpose with requires_grad_(False)")
    if ratio < th.vanishing_ratio and first < th.vanishing_norm:
        fix = ("add normalization (model.norm: batch) or residual connections, init='auto' (He for ReLU layers); "
               "fewer layers if the stack is deep")
        if saturating:
            fix = f"use ReLU/GELU instead of {'/'.join(saturating)} in deep stacks, " + fix
        return Check("model.gradient_flow", "WARN", value, threshold,
                     f"vanishing gradient: {base}, below {th.vanishing_ratio:g} with a first-layer norm below "
                     f"{th.vanishing_norm:g} ({SOURCES['vanishing_ratio']})"
                     + (f"; the model holds {'/'.join(saturating)} activations, whose gradient vanishes when they "
                        "saturate" if saturating else ""), fix)
    if ratio > th.exploding_ratio:
        return Check("model.gradient_flow", "WARN", value, threshold,
                     f"exploding gradient: {base}, above {th.exploding_ratio:g} ({SOURCES['exploding_ratio']})",
                     "standardize the inputs, clip gradients (train.grad_clip: 1.0), add normalization, lower the lr")
    return Check("model.gradient_flow", "PASS", value, threshold,
                 f"{base}; vanishing below {th.vanishing_ratio:g}, exploding above {th.exploding_ratio:g}")


def loss_kind_of(loss: Any) -> str:
    if isinstance(loss, nn.NLLLoss) or loss is torch.nn.functional.nll_loss:
        return "nll"
    return "other"


def reference_loss(loss_of: Callable, outputs: torch.Tensor, targets: torch.Tensor, weights: Any,
                   task: str) -> float:
    """The loss of a constant prediction: uniform logits, the prior's logit, or the target mean."""
    with torch.no_grad():
        out = outputs.detach().float()
        if task == "classification":
            constant = torch.zeros_like(out)
        elif task == "binary":
            p = float(targets.float().mean())
            p = min(max(p, 1e-4), 1 - 1e-4)
            constant = torch.full_like(out, math.log(p / (1 - p)))
        else:
            y = targets.float().reshape(out.shape) if targets.numel() == out.numel() else targets.float()
            constant = y.mean(dim=0, keepdim=True).expand_as(out).clone() if y.shape == out.shape else out * 0
        return float(loss_of(constant, targets, weights))

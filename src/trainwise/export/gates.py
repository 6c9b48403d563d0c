"""Gates an export must pass, written so that NaN fails them.

``diff > tol`` is False for NaN, so a comparison written that way passes an artifact whose outputs
are NaN. Every check here asks the opposite question (``diff <= tol``, ``isfinite``) and fails
when the answer is not a clear yes. The gates:

- finite outputs, PyTorch's and the artifact's, on every verification row;
- outputs that change across distinct inputs (a trace can bake a constant in);
- every element within ``atol + rtol * |reference|`` (fp32 artifacts);
- int8 against the fp32 outputs, labels or not: top-1 agreement for classification, the RMS error
  relative to the outputs' spread for regression.
"""

from __future__ import annotations

from typing import Any

import torch

from trainwise.errors import ExportError

INT8_MIN_AGREEMENT = 97.0  # percent of rows whose top-1 class int8 keeps (classification)
INT8_MAX_RELATIVE_RMSE = 0.05  # RMS(int8 - fp32) / std(fp32 outputs), regression
CONSTANT_SCALE = 1e-12  # outputs this close (relative to their size) count as identical


def check_finite(outputs: torch.Tensor, *, who: str, fix: str) -> None:
    """Raise naming how many rows hold NaN or Inf (and the first one)."""
    rows = ~torch.isfinite(outputs.reshape(len(outputs), -1)).all(dim=1)
    count = int(rows.sum())
    if count:
        first = int(rows.nonzero()[0, 0])
        raise ExportError(f"{who} NaN or Inf on {count} of {len(outputs)} rows of the verification data (first: row "
                          f"{first}); {fix}")


def check_varies(inputs: torch.Tensor, outputs: torch.Tensor, *, who: str, fix: str) -> None:
    """Raise when distinct inputs all give the same outputs."""
    if len(outputs) < 2:
        return
    flat_in = inputs.reshape(len(inputs), -1)
    if bool((flat_in == flat_in[0]).all()):
        return  # every input is the same: nothing to learn from equal outputs
    flat = outputs.reshape(len(outputs), -1).double()
    spread = float((flat - flat[0]).abs().max())
    if spread <= CONSTANT_SCALE * max(1.0, float(flat.abs().max())):
        raise ExportError(f"{who} the same output for all {len(outputs)} distinct inputs of the verification data; "
                          f"{fix}")


def compare_all(reference: torch.Tensor, artifact: torch.Tensor, *, atol: float, rtol: float,
                label: str) -> dict[str, float]:
    """Every element within ``atol + rtol * |reference|``; the max abs and relative differences."""
    if artifact.shape != reference.shape:
        raise ExportError(f"{label}: outputs of shape {tuple(artifact.shape)}, PyTorch gives "
                          f"{tuple(reference.shape)}; the artifact was removed")
    diff = (artifact.double() - reference.double()).abs()
    relative = diff / reference.double().abs().clamp_min(1e-12)
    within = diff <= atol + rtol * reference.double().abs()
    figures = {"max_abs_diff": float(diff.max()), "max_rel_diff": float(relative.max())}
    if not bool(within.all()):
        rows = ~within.reshape(len(within), -1).all(dim=1)
        worst = int(torch.nan_to_num(diff, nan=float("inf")).reshape(-1).argmax())
        row = worst // max(diff[0].numel(), 1)
        raise ExportError(f"{label} disagrees with the PyTorch model on {int(rows.sum())} of {len(rows)} rows: max abs "
                          f"diff {figures['max_abs_diff']:.3g}, max relative diff {figures['max_rel_diff']:.3g} "
                          f"(worst at row {row}; allowed atol={atol:g}, rtol={rtol:g}); the artifact was removed. "
                          "Raise --atol/--rtol only if this difference is acceptable")
    return figures


def int8_agreement(fp32: torch.Tensor, int8: torch.Tensor, task: str) -> dict[str, Any]:
    """How far int8 is from fp32 with no labels: top-1 agreement (%) or the relative RMS error."""
    if task == "classification":
        if fp32.dim() >= 2 and fp32.shape[-1] > 1:  # (N, classes), or a language model's (N, T, vocab)
            want, got = fp32.argmax(dim=-1), int8.argmax(dim=-1)
        else:
            want, got = fp32.reshape(-1) > 0, int8.reshape(-1) > 0
        return {"int8_agreement": round(100.0 * float((want == got).float().mean()), 3)}
    error = float(((int8.double() - fp32.double()) ** 2).mean().sqrt())
    spread = float(fp32.double().std()) if fp32.numel() > 1 else 0.0
    return {"int8_relative_rmse": error / spread if spread > 0 else (0.0 if error == 0 else float("inf"))}


def check_int8(figures: dict[str, Any]) -> None:
    """Raise when int8 moved too far from fp32 (``int8_agreement`` figures)."""
    agreement = figures.get("int8_agreement")
    if agreement is not None and not agreement >= INT8_MIN_AGREEMENT:
        raise ExportError(f"int8 keeps the fp32 model's top-1 class on {agreement:.2f}% of the verification rows "
                          f"(at least {INT8_MIN_AGREEMENT:g}% needed); the artifact was removed; ship the fp32 onnx "
                          "or torchscript export instead")
    relative = figures.get("int8_relative_rmse")
    if relative is not None and not relative <= INT8_MAX_RELATIVE_RMSE:
        raise ExportError(f"int8 outputs are off the fp32 ones by an RMS of {relative:.3g} of their spread (at most "
                          f"{INT8_MAX_RELATIVE_RMSE:g} allowed); the artifact was removed; ship the fp32 onnx or "
                          "torchscript export instead")

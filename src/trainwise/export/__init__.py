"""Export a trained model to files people can ship, each verified against the model it came from.

Formats: ``onnx`` (torch's default exporter, onnxruntime-checked), ``torchscript`` (``.pt``,
deprecated in PyTorch but loadable from C++), ``pt2`` (``torch.export``), ``safetensors`` (weights
plus config, loaded with no pickle by ``load_model``) and ``int8`` (dynamic quantization).

Example:
    >>> import trainwise
    >>> result = trainwise.export("runs/digits-mlp", format="all")
    >>> print(result.table())
    >>> model = trainwise.load_model("runs/digits-mlp/export/model.safetensors")
"""

from __future__ import annotations

import sys
import types
from typing import Any

from trainwise.export.pipeline import CHOICES, FORMATS, export, load_artifact
from trainwise.export.safetensors_format import load_model
from trainwise.export.table import ExportResult

__all__ = ["CHOICES", "FORMATS", "ExportResult", "export", "load_artifact", "load_model"]


class _CallableModule(types.ModuleType):
    """``trainwise.export`` names both this package and the function: once the package is imported,
    Python binds ``trainwise.export`` to it, so calling the package calls the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExportResult:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

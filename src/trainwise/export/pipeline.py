"""``trainwise.export``: write each asked format, reload it from disk, verify it against the
PyTorch model, and keep them only when all agree (otherwise nothing is left behind): the artifacts
are renamed into place together, export.json last, each recording the checkpoint it came from
(``artifact_set``)."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.checks import check_choice
from trainwise.errors import ConfigError, DataNotFoundError, ExportError
from trainwise.export import artifact_set, gates
from trainwise.export import int8 as int8_format
from trainwise.export import onnx_format, safetensors_format, torchscript_format
from trainwise.export._source import ExportSource, fold_batchnorm, from_module, from_run
from trainwise.export.table import ExportResult, write_json
from trainwise.export.verify import (
    ACCURACY_GAP_POINTS,
    Runner,
    accuracy,
    check_accuracy,
    check_out_path,
    compare_outputs,
    rmse,
    run_all,
)

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx", "torchscript", "pt2", "safetensors", "int8")
CHOICES: tuple[str, ...] = (*FORMATS, "all")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2", "safetensors": ".safetensors"}
Writer = Callable[[nn.Module, torch.Tensor, Path, str], dict[str, Any]]
WRITERS: dict[str, tuple[Writer, Callable[[Path], tuple[Runner, dict[str, Any]]]]] = {
    "onnx": (onnx_format.write_onnx, onnx_format.load_onnx),
    "torchscript": (torchscript_format.write_torchscript, torchscript_format.load_torchscript),
    "pt2": (torchscript_format.write_pt2, torchscript_format.load_pt2),
    "safetensors": (safetensors_format.write_safetensors, safetensors_format.load_safetensors),
}


def export(model_or_run_dir: nn.Module | str | Path, format: str = "onnx", *, example: Optional[torch.Tensor] = None,
           out: Optional[str | Path] = None, atol: float = 1e-4, rtol: float = 1e-3,
           data: Optional[tuple[Any, Any]] = None, checkpoint: str = "best.pt", model_spec: Optional[str] = None,
           normalization: Optional[dict[str, list[float]]] = None, class_names: Optional[list[str]] = None,
           task: str = "classification", max_int8_drop: float = int8_format.MAX_DROP_POINTS) -> ExportResult:
    """Export a run folder's best checkpoint, or your own module, and verify every artifact.

    Each artifact is reloaded from disk and run: outputs on a real batch (sizes 1, 8, 64) within
    ``atol + rtol * |torch output|`` and accuracy within 0.1 point of PyTorch's, else
    ``ExportError`` and nothing is written. Artifacts take raw inputs (normalization is inside).
    They are renamed into place only once all of them passed, ``export.json`` last, and each
    records what it was exported from (``checkpoint``, ``checkpoint_step``, ``checkpoint_sha256``
    from the run's manifest; a module's ``weights_sha256``); a folder left holding artifacts of
    different checkpoints is told with a logged warning.

    Args:
        model_or_run_dir: a run folder, or an ``nn.Module`` (then ``example`` is required).
        format: ``onnx``, ``torchscript``, ``pt2``, ``safetensors``, ``int8`` or ``all``.
        example: a batch of real inputs ``(N, *input_shape)`` for a module.
        out: the file for one format, or a folder (required for ``all``; default
            ``RUN_DIR/export`` or ``./export``), where files are named ``model.<suffix>``.
        data: ``(inputs, targets)`` to verify on (a run's default: its test split).
        normalization: ``{"mean": [...], "std": [...]}`` per channel/feature, folded into a
            module's graph. ``class_names``/``task``: recorded for ``trainwise predict``.
        max_int8_drop: the largest int8 accuracy drop, in points, that is accepted.

    Example:
        >>> result = trainwise.export(model, format="onnx", example=x[:8], out="model.onnx")
        >>> print(result.table())
    """
    check_choice("format", format, CHOICES)
    for name, value in (("atol", atol), ("rtol", rtol), ("max_int8_drop", max_int8_drop)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    formats = list(FORMATS) if format == "all" else [format]
    if isinstance(model_or_run_dir, nn.Module):
        if example is None:
            raise ConfigError("exporting a module needs example=, a batch of real inputs shaped (N, *input_shape)")
        source = from_module(model_or_run_dir, example, data=data, normalization=normalization,
                             class_names=class_names, task=task)
        source.meta.update(artifact_set.weights_identity(source.module))
        default_folder = Path("export")
    else:
        folder = Path(model_or_run_dir)
        if not folder.is_dir():
            raise DataNotFoundError(f"run folder not found: {folder}; pass the folder a training run wrote")
        manifest = _manifest(folder)
        source = from_run(folder, checkpoint=checkpoint, model_spec=model_spec,
                          data=None if data is None else (torch.as_tensor(data[0]), torch.as_tensor(data[1])))
        source.meta.update(artifact_set.checkpoint_identity(folder, source.meta["checkpoint"], manifest))
        default_folder = folder / "export"
    skipped: dict[str, str] = {}
    if format == "all":
        try:
            int8_format.check_quantizable(source.module)
        except ExportError as error:
            formats.remove("int8")
            skipped["int8"] = str(error)
    targets = _targets(source, formats, out, default_folder)
    result = _export_all(source, targets, atol=atol, rtol=rtol, max_int8_drop=max_int8_drop)
    result.skipped = skipped
    note = artifact_set.mixed_note(result.json_path.parent, also=result.paths.values()) if result.json_path else None
    if note:  # a one-format export beside artifacts of an older checkpoint
        logger.warning("warning: %s", note)
    return result


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The checkpoints' manifest entries before the checkpoint is loaded (see ``checkpoint_identity``)."""
    from trainwise.checkpoint import read_manifest

    return read_manifest(folder / "checkpoints")


def _targets(source: ExportSource, formats: list[str], out: Optional[str | Path], default: Path) -> dict[str, Path]:
    """The final path of each format's artifact; folders are checked before anything is written."""
    suffixes = dict(SUFFIXES)
    if "int8" in formats:
        suffixes["int8"] = ".int8" + int8_format.int8_suffix(source.module)
    if out is not None and len(formats) == 1 and not Path(out).is_dir():
        path = Path(out)
        return {formats[0]: check_out_path(path, _final_suffix(suffixes[formats[0]]))}
    folder = Path(out) if out is not None else default
    if folder.suffix and not folder.is_dir():
        raise ConfigError(f"--format all writes several files; --out must be a folder, got {str(folder)!r}")
    if not folder.parent.is_dir():
        raise DataNotFoundError(f"the folder {folder.parent} (of --out {str(folder)!r}) does not exist; create it "
                                "first or choose another --out")
    folder.mkdir(exist_ok=True)
    return {name: folder / f"model{suffixes[name]}" for name in formats}


def _final_suffix(suffix: str) -> str:
    return "." + suffix.rsplit(".", 1)[1]


def _export_all(source: ExportSource, targets: dict[str, Path], *, atol: float, rtol: float,
                max_int8_drop: float) -> ExportResult:
    folded, folded_count = fold_batchnorm(source.module)
    reference = run_all(source.module, source.eval_x)
    fix = "fix the model (a log or division of 0, an overflow) before exporting; nothing was written"
    gates.check_finite(reference, who="the PyTorch model gives", fix=fix)
    gates.check_varies(source.eval_x, reference, who="the PyTorch model gives",
                       fix="it ignores its input, so no export could be checked against it; nothing was written")
    ref_accuracy = accuracy(reference, source.eval_y, source.task)
    result = ExportResult()
    meta, identity = source.meta_json(), artifact_set.identity_of(source.meta)
    with artifact_set.Staging() as staging:  # nothing is renamed into place until every artifact passed
        for name, path in targets.items():
            start = time.perf_counter()
            tmp = staging.path_for(path)
            if name == "int8":
                row = int8_format.write_int8(source, folded, tmp, meta)
                int8_format.check_drop(row, max_int8_drop)
                gates.check_int8(row)
                row.update(pytorch_accuracy=row.get("fp32_accuracy"), artifact_accuracy=row.get("int8_accuracy"),
                           pytorch_rmse=row.get("fp32_rmse"), artifact_rmse=row.get("int8_rmse"))
                row = {key: value for key, value in row.items() if value is not None}
            else:
                row = _export_one(source, name, folded if name != "safetensors" else source.module, tmp, meta,
                                  reference=reference, ref_accuracy=ref_accuracy, atol=atol, rtol=rtol)
                if name != "safetensors":
                    row["batchnorm_folded"] = folded_count
            row.update(bytes=tmp.stat().st_size, seconds=round(time.perf_counter() - start, 2), **identity)
            row["path"] = path
            result.paths[name], result.rows[name] = path, row
        staging.commit()
    folder = next(iter(targets.values())).parent
    result.json_path = write_json(folder, result.rows, {"name": source.name, "verified_on": source.eval_split,
                                                        "samples": len(source.eval_x), **_origin(source)})
    return result


def _export_one(source: ExportSource, name: str, module: nn.Module, tmp: Path, meta: str, *,
                reference: torch.Tensor, ref_accuracy: Optional[float], atol: float, rtol: float) -> dict[str, Any]:
    writer, loader = WRITERS[name]
    facts = writer(module, source.example, tmp, meta)
    if name == "safetensors" and source.user_model is not None:  # a user's class: load into a fresh copy
        runner: Runner = safetensors_format.load_model(tmp, model=copy.deepcopy(source.user_model))
    else:
        runner, _ = loader(tmp)  # reloaded from disk: the file is what gets checked
    label = f"the {name} export"
    diff = compare_outputs(source.module, runner, source.eval_x, atol=atol, rtol=rtol, label=label)
    outputs = run_all(runner, source.eval_x)
    gates.check_finite(outputs, who=f"{label} gives", fix="the artifact was removed")
    gates.check_varies(source.eval_x, outputs, who=f"{label} gives",
                       fix="the export baked values in (a trace of input-dependent code); the artifact was removed")
    figures = gates.compare_all(reference, outputs, atol=atol, rtol=rtol, label=label)
    artifact_accuracy = accuracy(outputs, source.eval_y, source.task)
    check_accuracy(ref_accuracy, artifact_accuracy, label=label, max_gap=ACCURACY_GAP_POINTS)
    row: dict[str, Any] = {"max_abs_diff": diff, "split_max_abs_diff": figures["max_abs_diff"],
                           "split_max_rel_diff": figures["max_rel_diff"],
                           "pytorch_accuracy": ref_accuracy, "artifact_accuracy": artifact_accuracy,
                           "pytorch_rmse": rmse(reference, source.eval_y, source.task),
                           "artifact_rmse": rmse(outputs, source.eval_y, source.task), **facts}
    return {key: value for key, value in row.items() if value is not None}


def _origin(source: ExportSource) -> dict[str, Any]:
    return {key: source.meta[key] for key in ("source", *artifact_set.IDENTITY_KEYS) if key in source.meta}


CODE_FORMATS = {".pt": "torchscript", ".pt2": "pt2"}  # programs: loading them runs what they contain
DATA_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}


def load_artifact(path: str | Path, format: Optional[str] = None,
                  model: Optional[nn.Module] = None) -> tuple[Runner, dict[str, Any]]:
    """Any exported artifact as a tensor → tensor function, with its ``trainwise.json`` metadata.

    ONNX and safetensors are data and load by their suffix. TorchScript (``.pt``) and ``.pt2``
    files are programs (loading one runs what it contains), so they load only when ``format``
    says ``"torchscript"`` or ``"pt2"``: the caller vouches for the file. ``model`` is the
    instance a safetensors file of a user's class loads into (see ``load_model``).

    Example:
        >>> runner, meta = load_artifact("export/model.onnx")
        >>> runner, meta = load_artifact("export/model.pt", format="torchscript")  # a file you trust
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no such artifact: {path}; pass a file trainwise export wrote")
    suffix = path.suffix.lower()
    kind = DATA_FORMATS.get(suffix) or CODE_FORMATS.get(suffix)
    if kind is None:
        raise ConfigError(f"cannot tell the format of {path.name!r}: expected .onnx, .pt (TorchScript), .pt2 or "
                          ".safetensors, or a run folder")
    if format is not None and format != kind:
        raise ConfigError(f"{path.name} is a {kind} file by its suffix, but format {format!r} was asked for; pass "
                          f"format={kind!r} (CLI --format {kind}) or the right file")
    if kind in CODE_FORMATS.values() and format is None:
        raise ConfigError(f"{path.name} is a {kind} program: loading it runs code it contains, so trainwise loads it "
                          f"only when asked for that format; if you trust the file, pass --format {kind} (Python: "
                          f"load_artifact(path, format={kind!r})), else use its .onnx or .safetensors export")
    if kind == "safetensors":
        loaded = safetensors_format.load_safetensors(path, model=model)
    else:
        loaders = {"onnx": onnx_format.load_onnx, "torchscript": torchscript_format.load_torchscript,
                   "pt2": torchscript_format.load_pt2}
        loaded = loaders[kind](path)
    note = artifact_set.mixed_note(path.parent, also=[path])
    if note:  # an export killed while renaming, or one format exported again beside the others
        logger.warning("warning: %s", note)
    return loaded

"""The export's figures: one row per format, printed as a table and kept in ``export.json`` beside
the artifacts (rows of earlier exports to the same folder are kept; a format's row is replaced)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from trainwise.export.verify import write_atomic

JSON_NAME = "export.json"


@dataclass
class ExportResult:
    """What ``trainwise.export`` wrote and measured.

    Attributes:
        paths: the artifact of each format, e.g. ``{"onnx": Path("export/model.onnx")}``.
        rows: per format, the verification figures (``max_abs_diff``, ``pytorch_accuracy``,
            ``artifact_accuracy``, sizes; int8 adds latency and ``accuracy_delta``) and what it was
            exported from (``checkpoint``, ``checkpoint_step``, ``checkpoint_sha256``; a module's
            ``weights_sha256``).
        json_path: the ``export.json`` that holds the rows.
        skipped: formats ``all`` left out, and why (int8 for a model without Linear/LSTM/GRU).
    """

    paths: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    json_path: Optional[Path] = None
    skipped: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        return format_table(self.rows)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: the verification of every format, then int8's before/after figures."""
    rmse = any("pytorch_rmse" in row for row in rows.values())
    metric, show = ("rmse", _plain) if rmse else ("acc", _percent)
    lines = [f"{'format':<12} {'file':<28} {'size':>10} {'max abs diff':>13} {metric + ' torch':>10} "
             f"{metric + ' artifact':>13}"]
    keys = ("pytorch_rmse", "artifact_rmse") if rmse else ("pytorch_accuracy", "artifact_accuracy")
    for name, row in rows.items():
        lines.append(f"{name:<12} {Path(row['path']).name:<28} {_size(row['bytes']):>10} "
                     f"{_number(row.get('max_abs_diff')):>13} {show(row.get(keys[0])):>10} "
                     f"{show(row.get(keys[1])):>13}")
    int8 = rows.get("int8")
    if int8:
        lines += ["", f"int8 ({int8['method']}):",
                  f"  {'':<18} {'fp32':>10} {'int8':>10}",
                  f"  {'size':<18} {_size(int8['fp32_bytes']):>10} {_size(int8['int8_bytes']):>10}",
                  f"  {'latency batch 1':<18} {int8['fp32_ms_batch1']:>8.3f}ms {int8['int8_ms_batch1']:>8.3f}ms",
                  f"  {'latency batch 64':<18} {int8['fp32_ms_batch64']:>8.3f}ms {int8['int8_ms_batch64']:>8.3f}ms"]
        if "accuracy_delta" in int8:
            lines.append(f"  {'accuracy':<18} {_percent(int8['fp32_accuracy']):>10} "
                         f"{_percent(int8['int8_accuracy']):>10}   delta {int8['accuracy_delta']:+.2f} points")
        if "int8_rmse" in int8:
            lines.append(f"  {'rmse':<18} {int8['fp32_rmse']:>10.4g} {int8['int8_rmse']:>10.4g}")
    return "\n".join(lines)


def write_json(folder: Path, rows: dict[str, dict[str, Any]], source: dict[str, Any]) -> Path:
    path = folder / JSON_NAME
    previous: dict[str, Any] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("formats", {})
        except (json.JSONDecodeError, AttributeError):
            previous = {}
    formats = {**previous, **{name: {**row, "path": str(row["path"])} for name, row in rows.items()}}
    write_atomic(path, json.dumps({"source": source, "formats": formats}, indent=2) + "\n")
    return path


def _size(value: int) -> str:
    return f"{value / 1024:.1f} kB" if value < 1024**2 else f"{value / 1024**2:.2f} MB"


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2e}"


def _plain(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4g}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}%"

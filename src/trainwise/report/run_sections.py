"""Report sections read from the run folder's own files: the run's provenance (run.json), the
model (model.json: layers and parameter counts) and the gradients (metrics.csv's ``grad_norm``
and ``clip_fraction`` rows). Each returns "" when its file or rows are absent."""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable, Optional, Sequence

from trainwise.report.formatting import format_value
from trainwise.report.series import Row, epoch_series, step_series
from trainwise.report.svg import Panel, Series, render_chart

MAX_LAYER_ROWS = 60  # rows shown open; the rest of model.json's layers sit in a collapsed list


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in pairs if v not in (None, ""))
    return f'<table class="summary">{cells}</table>'


def _when(stamp: Any) -> Optional[str]:
    if not isinstance(stamp, (int, float)):
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def provenance_section(folder: Path, section: Callable[[str, str], str]) -> str:
    """Who ran it, where and with what: id, host, times, command, git, versions (run.json)."""
    record = _json(folder / "run.json")
    if record is None:
        return ""
    git = record.get("git") or {}
    env = record.get("environment") or {}
    commit = None
    if git.get("commit"):
        commit = git["commit"] + (" (dirty: uncommitted changes, see git.diff)" if git.get("dirty") else "")
    pairs = [("Run id", record.get("id")), ("Status recorded", record.get("status")),
             ("Host", record.get("host")), ("Process id", record.get("pid")),
             ("Started", _when(record.get("started"))), ("Ended", _when(record.get("ended"))),
             ("Command", " ".join(str(part) for part in record.get("command") or [])),
             ("Working directory", record.get("cwd")), ("Git commit", commit or "not a git work tree"),
             ("Git branch", git.get("branch")),
             *((key.capitalize() if key != "cuda" else "CUDA", env.get(key))
               for key in ("python", "torch", "cuda", "cudnn", "device", "gpu", "platform", "trainwise"))]
    return section("Provenance", _rows(pairs))


def model_section(folder: Path, section: Callable[[str, str], str]) -> str:
    """The model's class, parameter counts and its layers (model.json)."""
    model = _json(folder / "model.json")
    if model is None:
        return ""
    layers = [layer for layer in model.get("layers") or [] if isinstance(layer, dict)]
    head = (f'<p>{_e(model.get("class", "model"))}: <strong>{_e(format_value("parameters", model.get("parameters")))}'
            f'</strong> parameters, {_e(format_value("trainable", model.get("trainable")))} trainable, '
            f"{len(layers) + int(model.get('layers_not_listed') or 0)} layers.</p>")

    def table(chunk: list[dict[str, Any]]) -> str:
        body = "".join(f'<tr><td><code>{_e(layer.get("name"))}</code></td><td>{_e(layer.get("type"))}</td>'
                       f'<td class="num">{_e(format_value("parameters", layer.get("parameters")))}</td>'
                       f'<td><code>{_e(layer.get("repr"))}</code></td></tr>' for layer in chunk)
        return ('<div class="scroll"><table class="layers"><thead><tr><th>layer</th><th>type</th>'
                f'<th class="num">parameters</th><th>module</th></tr></thead><tbody>{body}</tbody></table></div>')

    parts = [head, table(layers[:MAX_LAYER_ROWS])] if layers else [head]
    if len(layers) > MAX_LAYER_ROWS:
        parts.append(f"<details><summary>{len(layers) - MAX_LAYER_ROWS} more layers</summary>"
                     f"{table(layers[MAX_LAYER_ROWS:])}</details>")
    if model.get("layers_not_listed"):
        parts.append(f'<p class="muted">{_e(model["layers_not_listed"])} more layers are not listed in model.json.</p>')
    return section("Model", "\n".join(parts))


def gradients_section(rows: Optional[list[Row]], config: Any, section: Callable[[str, str], str]) -> str:
    """Gradient-norm statistics and chart (logged every ``log_every_n_steps`` steps when clipping by
    norm), and the share of steps clipped in each epoch."""
    steps, norms = step_series(rows or [], "train", "grad_norm")
    epochs, clipped = epoch_series(rows or [], "train", "clip_fraction")
    if not norms and not clipped:
        return ""
    train = config.get("train", {}) if isinstance(config, dict) else {}
    threshold = train.get("grad_clip") if isinstance(train, dict) else None
    parts = []
    if norms:
        ordered = sorted(norms)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        stats = [("Clipped at (global norm)", threshold), ("Norms logged", len(norms)), ("Smallest", ordered[0]),
                 ("Median", median(ordered)), ("95th percentile", p95), ("Largest", ordered[-1]), ("Last", norms[-1])]
        parts.append(_rows([(k, format_value("grad_norm", v) if not isinstance(v, str) else v) for k, v in stats]))
        series = [Series("gradient norm (before clipping)", steps, norms, points=len(norms) < 40)]
        if isinstance(threshold, (int, float)):
            series.append(Series("clip threshold", [steps[0], steps[-1]], [threshold, threshold], color="#cf222e",
                                 width=1.2))
        scale = "log" if ordered[0] > 0 and ordered[-1] / ordered[0] >= 10 else "linear"
        panel = Panel(title="gradient norm", series=series, x_label="step", y_label="norm", y_scale=scale)
        parts.append(f'<figure class="chart">{render_chart([panel], title="Gradient norm by step", chart_id="grad")}'
                     "</figure>")
    if clipped:
        cells = "".join(f'<tr><td class="num">{e}</td><td class="num">{_e(format_value("", 100 * c))}%</td></tr>'
                        for e, c in zip(epochs, clipped))
        parts.append('<div class="scroll"><table><thead><tr><th class="num">epoch</th>'
                     f'<th class="num">steps clipped</th></tr></thead><tbody>{cells}</tbody></table></div>')
    return section("Gradients and clipping", "\n".join(parts))

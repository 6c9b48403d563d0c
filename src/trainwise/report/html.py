"""report.html: one self-contained page that tells what a run did.

Everything the page shows is inside the file: the charts as inline SVG (also written beside it as
curves.svg and lr.svg), the confusion matrix as an HTML table, CSS inline, no scripts, fonts or
links to anything outside, so the page can be mailed, archived or opened offline years later.
Writing it imports no matplotlib and takes milliseconds; PNG versions of the figures
(``trainwise report RUN --png``) are linked when they are in the folder. Every piece of text
that came from the run (its name, event messages, the config) is HTML-escaped. A run that crashed before writing summary.json, or that has no
figures, still gets a valid page that says what is missing.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trainwise
from trainwise.report.charts import lr_find_svg
from trainwise.report.confusion import confusion_table
from trainwise.report.doctor_section import doctor_section
from trainwise.report.formatting import format_value, is_number
from trainwise.report.lr_text import lr_finder_text
from trainwise.report.run_contents import FIGURE_CAPTIONS, RunContents, load_run
from trainwise.report.run_files import run_folder
from trainwise.report.run_sections import gradients_section, model_section, provenance_section
from trainwise.report.series import EVENT_SPLIT, Row, final_epochs, final_metrics
from trainwise.report.style import PAGE_CSS, STATUS_COLORS, UNKNOWN_STATUS_COLOR, WARNING_COLOR
from trainwise.report.timing_section import timing_section

REPORT_NAME = "report.html"
# The charts of the page, each also written beside it as an SVG file.
CHART_CAPTIONS = {
    "curves.svg": "Loss and main metric per epoch",
    "lr.svg": "Learning rate by step",
}
# The summary table's order and labels; other keys follow in file order, labelled from the key.
SUMMARY_LABELS = {
    "status": "Status", "stop_reason": "Stop reason", "task": "Task",
    "epochs_run": "Epochs run", "steps": "Optimizer steps", "best_epoch": "Best epoch",
    "best_val_loss": "Best val loss", "best_val_accuracy": "Best val accuracy",
    "best_val_exact_match": "Best val exact match", "best_val_macro_f1": "Best val macro F1",
    "best_val_rmse": "Best val RMSE", "test_accuracy": "Test accuracy", "test_exact_match": "Test exact match",
    "test_macro_f1": "Test macro F1",
    "test_rmse": "Test RMSE", "test_mae": "Test MAE", "test_r2": "Test R²",
    "lr": "Learning rate used", "final_lr": "Final learning rate",
    "wall_seconds": "Wall time", "train_seconds": "Training time",
    "train_samples_per_second": "Train throughput (samples)",
    "loss_spikes": "Loss spikes", "nonfinite_rollbacks": "Non-finite rollbacks",
    "nonfinite_skipped": "Non-finite batches skipped",
}
# Shown elsewhere on the page, or too big for a table cell.
_NOT_IN_SUMMARY_TABLE = frozenset({"events", "confusion_matrix", "class_names", "message", "name",
                                   "warnings", "lr_finder", "timings"})
LR_FIND_FIGURE = "lr_find.png"


def write_report(run_dir: str | os.PathLike[str], *, task: str | None = None) -> Path:
    """Write the run's report.html (and curves.svg, lr.svg beside it) and return its path.

    The page holds: the run name and a status badge, warnings first; the figures of
    summary.json; the events (early stop, rollbacks, loss spikes, the lr finder's choice); the
    curves (loss and the main metric per epoch, the best epoch marked) and the lr by step as
    inline SVG; the confusion matrix as a table; links to PNG versions of the figures found in
    the folder; the range test's curve and suggestion; each split's metrics at its last epoch
    from metrics.csv; the resolved config.yaml. Each file is written to a temporary name and
    renamed, so a reader never sees half a page. No matplotlib is imported.

    Args:
        run_dir: the run folder (see the run-folder contract in docs/DESIGN.md).
        task: ``"classification"``, ``"binary"`` or ``"regression"`` (picks accuracy or rmse); None reads it
            from summary.json or data.json, else from the metrics logged.

    Returns:
        ``run_dir / "report.html"``.

    Raises:
        DataNotFoundError: ``run_dir`` is not a folder.
        ConfigError: ``task`` is none of the three.

    Example:
        >>> write_report("runs/digits-mlp")  # doctest: +SKIP
        PosixPath('runs/digits-mlp/report.html')
    """
    run = load_run(run_folder(run_dir), task)
    for name, svg in run.charts.items():
        _write_atomically(run.folder / name, svg)
    return _write_atomically(run.folder / REPORT_NAME, _render(run))


def render_report(run_dir: str | os.PathLike[str], *, task: str | None = None) -> str:
    """The report page of a run folder as an HTML string, without writing anything."""
    return _render(load_run(run_folder(run_dir), task))


def _write_atomically(target: Path, text: str) -> Path:
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    return target


def _render(run: RunContents) -> str:
    name = _run_name(run)
    sections = [
        _header(run, name),
        _section("Summary", _summary_table(run.summary)),
        _section("Events", _events_table(_events(run))),
        _section("Figures", _figures(run)),
        gradients_section(run.rows, run.config, _section),
        _lr_finder_section(run),
        model_section(run.folder, _section),
        timing_section(run.summary),
        doctor_section(run.folder),
        _section("Final metrics (last epoch of each split)", _final_metrics_table(run.rows)),
        provenance_section(run.folder, _section),
        _section("Config", _config_block(run)),
        f'<footer class="muted">Generated by trainwise {_escape(trainwise.__version__)}</footer>',
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(name)} — trainwise report</title>\n<style>{PAGE_CSS}</style>\n"
        "</head>\n<body>\n" + "\n".join(section for section in sections if section)
        + "\n</body>\n</html>\n"
    )


def _run_name(run: RunContents) -> str:
    for source in (run.config, run.summary):
        if isinstance(source, dict) and source.get("name") not in (None, ""):
            return str(source["name"])
    return run.folder.resolve().name


def _header(run: RunContents, name: str) -> str:
    status = str(run.summary.get("status", "unknown")) if run.summary else "unknown"
    warnings = _warnings(run.summary)
    color = STATUS_COLORS.get(status, UNKNOWN_STATUS_COLOR)
    badge = status
    if warnings:  # never the green of a clean run
        badge = f"{status}, {len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
        color = color if color != STATUS_COLORS["completed"] else WARNING_COLOR
    parts = [
        f'<header><h1>{_escape(name)} <span class="badge" style="background:{color}">'
        f"{_escape(badge)}</span></h1>",
        f'<p class="muted">run folder {_escape(run.folder.resolve().name)}</p></header>',
    ]
    if warnings:
        items = "".join(f"<li>{_escape(warning)}</li>" for warning in warnings)
        parts.append(f'<div class="warnings" role="alert"><strong>Warning{"s" if len(warnings) > 1 else ""}'
                     f"</strong><ul>{items}</ul></div>")
    if run.summary and run.summary.get("message"):
        message = _escape(str(run.summary["message"]))
        parts.append(f'<div class="message"><pre>{message}</pre></div>')
    if run.notes:
        items = "".join(f"<li>{_escape(note)}</li>" for note in run.notes)
        parts.append(f'<div class="note"><strong>Missing or unreadable</strong>'
                     f"<ul>{items}</ul></div>")
    return "\n".join(parts)


def _warnings(summary: dict[str, Any] | None) -> list[str]:
    """summary.json's ``warnings``: things a person must know before trusting the figures."""
    warnings = (summary or {}).get("warnings") or []
    if isinstance(warnings, str):
        warnings = [warnings]
    return [str(warning) for warning in warnings if warning]


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{_escape(title)}</h2>\n{body}\n</section>"


def _summary_table(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return '<p class="muted">No summary.json, so no final figures.</p>'
    keys = [key for key in SUMMARY_LABELS if key in summary]
    keys += [key for key in summary
             if key not in SUMMARY_LABELS and key not in _NOT_IN_SUMMARY_TABLE]
    rows = []
    for key in keys:
        value = summary[key]
        cell_class = ' class="num"' if is_number(value) else ""
        label = SUMMARY_LABELS.get(key) or key.replace("_", " ").capitalize()
        rows.append(f'<tr><th scope="row">{_escape(label)}</th>'
                    f"<td{cell_class}>{_escape(format_value(key, value))}</td></tr>")
    return f'<table class="summary">\n{"".join(rows)}\n</table>'


def _events(run: RunContents) -> list[dict[str, Any]]:
    """summary.json's events; without a summary, the event rows of metrics.csv."""
    if run.summary is not None:
        events = run.summary.get("events") or []
        return [event for event in events if isinstance(event, dict)]
    return [
        {"step": row["step"], "epoch": row["epoch"], "kind": row["metric"],
         "message": "" if math.isnan(row["value"]) else f"value {format_value('', row['value'])}"}
        for row in run.rows or [] if row["split"] == EVENT_SPLIT
    ]


def _events_table(events: Sequence[dict[str, Any]]) -> str:
    if not events:
        return '<p class="muted">No events recorded.</p>'
    head = ('<tr><th class="num">step</th><th class="num">epoch</th>'
            "<th>kind</th><th>message</th></tr>")
    rows = "".join(
        f'<tr><td class="num">{_escape(format_value("step", event.get("step")))}</td>'
        f'<td class="num">{_escape(format_value("epoch", event.get("epoch")))}</td>'
        f'<td><code>{_escape(str(event.get("kind", "")))}</code></td>'
        f'<td>{_escape(str(event.get("message", "")))}</td></tr>'
        for event in events
    )
    return f'<table class="events">\n<thead>{head}</thead>\n<tbody>{rows}</tbody>\n</table>'


def _figures(run: RunContents) -> str:
    """The charts inline, the confusion matrix table, and links to PNG versions in the folder."""
    parts = []
    if run.charts:
        parts.append('<div class="charts">' + "\n".join(
            f'<figure class="chart">{svg}<figcaption>{_escape(CHART_CAPTIONS[name])} '
            f'<span class="muted">({_escape(name)})</span></figcaption></figure>'
            for name, svg in run.charts.items()) + "</div>")
    else:
        parts.append('<p class="muted">No metrics logged, so no curves to draw.</p>')
    matrix = (run.summary or {}).get("confusion_matrix")
    if matrix:
        parts.append(confusion_table(matrix, (run.summary or {}).get("class_names")))
    pngs = [path for path in run.figures if path.name != LR_FIND_FIGURE]
    if pngs:
        links = ", ".join(f'<a href="{_escape(path.name)}">{_escape(path.name)}</a>'
                          + (f' <span class="muted">({_escape(FIGURE_CAPTIONS[path.name])})</span>'
                             if path.name in FIGURE_CAPTIONS else "") for path in pngs)
        parts.append(f'<p class="png-links">PNG versions in the run folder: {links}</p>')
    else:
        parts.append('<p class="muted">PNG versions of these figures: <code>trainwise report '
                     f"{_escape(run.folder.name)} --png</code>.</p>")
    return "\n".join(parts)


def _figure(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = FIGURE_CAPTIONS.get(path.name, path.name)
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{_escape(caption)}">'
            f"<figcaption>{_escape(caption)} <span class=\"muted\">({_escape(path.name)})</span>"
            "</figcaption></figure>")


def _lr_finder_section(run: RunContents) -> str:
    """The LR range test: its choice in words (summary.json's ``lr_finder``, else lr_find.json)
    and its curve, drawn from lr_find.json (else lr_find.png embedded); no section when the run
    did not run one."""
    info = (run.summary or {}).get("lr_finder") or run.lr_find
    plot = next((path for path in run.figures if path.name == LR_FIND_FIGURE), None)
    curve = lr_find_svg(run.lr_find) if run.lr_find else None
    if not isinstance(info, dict) and plot is None and curve is None:
        return ""
    text = lr_finder_text(info) if isinstance(info, dict) else "The range test's result was not recorded."
    body = f'<p class="lr-finder">{_escape(text)}</p>'
    if curve is not None:
        body += (f'\n<figure class="chart">{curve}<figcaption>Learning-rate range test '
                 '<span class="muted">(lr_find.json)</span></figcaption></figure>')
    elif plot is not None:
        body += "\n" + _figure(plot)
    return _section("Learning-rate range test", body)


def _final_metrics_table(rows: list[Row] | None) -> str:
    table = final_metrics(rows or [])
    if not table:
        return '<p class="muted">No per-epoch metrics logged.</p>'
    splits = list(table)
    epochs = final_epochs(rows or [])
    metrics = list(dict.fromkeys(metric for split in splits for metric in table[split]))
    split_headers = "".join(f'<th class="num">{_escape(split)} <span class="muted">(epoch '
                            f'{_escape(format_value("epoch", epochs[split]))})</span></th>'
                            for split in splits)
    head = f"<tr><th>metric</th>{split_headers}</tr>"
    body = []
    for metric in metrics:
        cells = "".join(
            f'<td class="num">{_escape(format_value(metric, table[split].get(metric)))}</td>'
            for split in splits
        )
        body.append(f"<tr><th scope=\"row\">{_escape(metric)}</th>{cells}</tr>")
    return (f'<table class="metrics">\n<thead>{head}</thead>\n'
            f'<tbody>{"".join(body)}</tbody>\n</table>')


def _config_block(run: RunContents) -> str:
    if run.config_text is None:
        return '<p class="muted">No config.yaml in the run folder.</p>'
    return f'<pre class="config">{_escape(run.config_text.rstrip())}</pre>'


def _escape(text: str) -> str:
    return html.escape(text, quote=True)

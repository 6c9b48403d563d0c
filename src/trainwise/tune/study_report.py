"""The study's report.html: one self-contained page (PNG plots embedded as data URIs, CSS inline,
no scripts or links) with the best trials, every trial's state, value, epochs and parameters,
and the plots. Every string from the study (names, parameter values, errors) is HTML-escaped."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from trainwise.tune.plots import PLOTS
from trainwise.tune.results import counts_line, ranked, short_text

CAPTIONS = {
    "history": "Optimization history: each finished trial's value and the best so far",
    "importance": "Parameter importance (fANOVA over the finished trials)",
    "parallel": "Parallel coordinates: parameters of the finished trials, coloured by value",
    "intermediate": "Intermediate values: the metric per epoch of every trial; pruned trials stop early",
    "lineage": "PBT lineage: each trial's metric per epoch; a dashed line joins a perturbed trial to the checkpoint "
               "of the trial it continued from",
}
_CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}th{background:#f3f3f3}.pruned{color:#8a5a00}.failed{color:#b00020}.complete{color:#1b5e20}"
        "img{max-width:100%;border:1px solid #eee}figure{margin:1.5em 0}")


def write_study_report(study_name: str, rows: list[dict[str, Any]], images: dict[str, Path], path: Path, *,
                       maximize: bool, metric: str) -> Path:
    e = html.escape
    best = ranked(rows, maximize)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>study {e(study_name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Study {e(study_name)}</h1>",
             f"<p>{e(counts_line(rows))}. Metric: <b>{e(metric)}</b> ({'higher' if maximize else 'lower'} is better)."
             "</p>"]
    if best:
        b = best[0]
        params = ", ".join(f"{e(str(k))} = {e(short_text(v))}" for k, v in b["params"].items())
        parts.append(f"<p>Best: trial {b['number']}, {e(metric)} {b['value']:.6g} — {params}. "
                     "Its complete config is <code>best.yaml</code>.</p>")
    parts.append(_trials_table(rows))
    for name in (*PLOTS, "lineage"):
        if name in images and images[name].is_file():
            data = base64.b64encode(images[name].read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{e(name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(CAPTIONS[name])}</figcaption></figure>")
    parts.append("</body></html>")
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path


def _trials_table(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    names = sorted({name for r in rows for name in r["params"]})
    head = "".join(f"<th>{e(h)}</th>" for h in ["trial", "state", "value", "epochs", "pruned at", *names])
    body = []
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.6g}"
        cells = [str(r["number"]), r["state"], value, short_text(r["epochs"]), short_text(r["pruned_at_epoch"]),
                 *[short_text(r["params"].get(n)) for n in names]]
        title = f" title='{e(r['error'])}'" if r.get("error") else ""
        body.append(f"<tr class='{e(r['state'])}'{title}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"

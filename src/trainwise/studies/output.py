"""The study folder's own files: ``study.json`` (everything measured), ``study.md`` (the table
and the verdict), the PNGs and ``report.html`` (one self-contained page: every string escaped,
the PNGs inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Optional

from trainwise.runfolder.files import write_json
from trainwise.studies.plots import draw_all

COLUMNS = ("variant", "final {m}", "95% CI of the mean", "best {m}", "test {t}", "steps to {m} {cmp} target", "wall s",
           "failed (epoch)", "notes")


def _pm(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "—"
    spread = stats.get("std") if stats.get("n", 2) > 1 else None  # one seed has no spread to show
    return f"{stats['mean']:.4f}" + (f" ± {spread:.4f}" if spread is not None else " (one seed)")


def _interval(stats: dict[str, Any]) -> str:
    ci = stats.get("ci")
    if not ci:
        return "—"
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" + (" clipped to [0, 1]" if stats.get("ci_clipped") else "")


CLIPPED_NOTE = ("An interval marked clipped reached past [0, 1], where no {m} can be: the t-interval of a few "
                "seeds' mean is cut at the bound.")


def _failures(variant: dict[str, Any]) -> str:
    """``1/3 (diverged at epoch 1)``: runs that diverged or failed are results, shown with their epoch."""
    failures = variant["failures"]
    where = ", ".join(f"{f['status']} at epoch {f['epoch']} (seed {f['seed']})" for f in failures)
    return f"{len(failures)}/{len(variant['statuses'])}" + (f": {where}" if where else "")


def _seconds(stats: dict[str, Any]) -> str:
    return "—" if stats["mean"] is None else f"{stats['mean']:.1f}"


def _steps(variant: dict[str, Any]) -> str:
    s = variant["steps_to_target"]
    if s["mean"] is None:
        return f"not reached (0/{s['of']})"
    return f"{s['mean']:.0f} ({s['reached']}/{s['of']})"


def _notes(variant: dict[str, Any]) -> str:
    """Gradient-norm spread at step 0 and activation figures, where the study measured them."""
    notes = []
    norms = list(variant["grad_norms_init"].values())
    if norms and min(norms) > 0:
        notes.append(f"grad norm first/last layer at step 0: {norms[0]:.3g}/{norms[-1]:.3g}")
    for when in ("init", "end"):
        acts = variant[f"activations_{when}"]
        if acts:
            stds = [a["std"] for a in acts.values()]
            zeros = max(a["zeros"] for a in acts.values())
            notes.append(f"activation std {when} {stds[0]:.3g}→{stds[-1]:.3g}, dead ≤ {zeros:.0%}")
    if variant["nonfinite_rollbacks"]:
        notes.append(f"{variant['nonfinite_rollbacks']} non-finite rollbacks")
    return "; ".join(notes)


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    return [[v["label"], _pm(v["final"]), _interval(v["final"]), _pm(v["best"]), _pm(v["test"]), _steps(v),
             _seconds(v["wall_seconds"]), _failures(v), _notes(v)] for v in results["variants"]]


def _header(results: dict[str, Any]) -> list[str]:
    test = "accuracy" if results["mode"] == "max" else "loss"
    return [c.format(m=results["metric"], t=test, cmp="≥" if results["mode"] == "max" else "≤") for c in COLUMNS]


def _budget_line(results: dict[str, Any]) -> str:
    b = results["budget"]
    length = f"{b['steps']} steps" if b["steps"] else f"{b['epochs']} epochs"
    samples = f", first {b['train_samples']} training samples" if b["train_samples"] else ""
    lrs = sorted(set(results["lrs"].values()))
    lr = f"; lr from the range test: {', '.join(f'{x:.3g}' for x in lrs)}" if lrs else ""
    rule = f"; {results['budget_rule']}" if results.get("budget_rule") else ""
    return (f"{b['seeds']} seed{'s' if b['seeds'] != 1 else ''} × {len(results['variants'])} variants, {length} each{samples}, "
            f"early stopping off, data split seed {results['data_seed']}{lr}{rule}")


def _cost_line(results: dict[str, Any]) -> str:
    wall = results.get("wall_seconds_this_call")
    return (f"{results['cpu_seconds']:.0f} CPU seconds of training in all runs"
            + (f"; this call took {wall:.0f} s of wall time" if wall is not None else ""))


def summary_lines(results: dict[str, Any]) -> list[str]:
    comparisons = results["comparisons"]
    real = [c for c in comparisons if c["verdict"] == "real"]
    if not comparisons:
        return ["Nothing to compare (fewer than two variants finished)."]
    head = (f"{len(real)} of {len(comparisons)} differences hold across seeds; the rest are within noise."
            if real else f"All {len(comparisons)} differences are within noise: no variant is reliably better "
                         "at this budget and seed count.")
    failed = results.get("failures", 0)
    runs = sum(len(v["statuses"]) for v in results["variants"])
    tail = [f"{failed} of {runs} runs diverged or failed; the comparisons score them as the worst outcome."] \
        if failed else []
    return [head, *tail]


def study_markdown(results: dict[str, Any]) -> str:
    target = "none" if results["target"] is None else f"{results['target']:.4g}"
    lines = [f"# Study: {results['study']}", "", results["question"], "",
             f"Budget: {_budget_line(results)}.", f"Cost: {_cost_line(results)}.", f"Metric: {results['metric']} on the validation split "
             f"(final = last epoch, best = best epoch; test = the test split after the last epoch); target {target}.", "",
             "| " + " | ".join(_header(results)) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows(results)]
    if any(v["final"].get("ci_clipped") for v in results["variants"]):
        lines += ["", CLIPPED_NOTE.format(m=results["metric"])]
    lines += ["", "## Verdict", "", *summary_lines(results), "", f"Test: {results['test']}.", ""]
    lines += [f"- {s}" for s in results["verdict"]]
    lines += ["", f"The guides' claim: {results['claim']}.", ""]
    return "\n".join(lines)


def report_html(results: dict[str, Any], pngs: list[Path]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in _header(results))
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in table_rows(results))
    images = "".join(f'<figure><img alt="{e(p.stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{e(p.name)}</figcaption></figure>'
                     for p in pngs)
    verdict = "".join(f"<li>{e(s)}</li>" for s in results["verdict"])
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>study {e(results['study'])}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Study: {e(results['study'])}</h1><p>{e(results['question'])}</p>"
            f"<p>Budget: {e(_budget_line(results))}.</p><p>Cost: {e(_cost_line(results))}.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<h2>Verdict</h2><p>{e(' '.join(summary_lines(results)))}</p><p>Test: {e(results['test'])}.</p>"
            f"<ul>{verdict}</ul><p>The guides' claim: {e(results['claim'])}.</p>{images}</body></html>\n")


def write_outputs(results: dict[str, Any], out: Path, pngs: Optional[list[Path]] = None) -> list[Path]:
    """Write study.json, study.md, the PNGs and report.html into ``out``; return the files."""
    write_json(out / "study.json", results)
    (out / "study.md").write_text(study_markdown(results))
    pngs = draw_all(results, out) if pngs is None else pngs
    (out / "report.html").write_text(report_html(results, pngs))
    return [out / "study.json", out / "study.md", *pngs, out / "report.html"]

"""The report page's inline CSS and status colours; no fonts or files from outside."""

from __future__ import annotations

# Badge colours; all pass WCAG AA contrast with white text.
STATUS_COLORS = {
    "completed": "#1a7f37",
    "stopped_early": "#0969da",
    "diverged": "#cf222e",
    "failed": "#cf222e",
    "interrupted": "#9a6700",
    "pruned": "#8250df",
    "crashed": "#cf222e",
}
UNKNOWN_STATUS_COLOR = "#57606a"
WARNING_COLOR = "#9a6700"  # a finished run with warnings: not the green of a clean one

PAGE_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1f2328; max-width: 1120px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin: 0; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; padding-bottom: .25rem;
     border-bottom: 1px solid #d0d7de; }
.badge { display: inline-block; padding: .1rem .7rem; border-radius: 1rem; color: #fff;
         font-size: .9rem; font-weight: 600; vertical-align: middle; }
.muted { color: #59636e; }
header p { margin: .25rem 0 1rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .3rem .9rem; border-bottom: 1px solid #e6eaef; text-align: left;
         vertical-align: top; }
thead th { border-bottom: 2px solid #d0d7de; }
table.summary th { font-weight: 500; color: #424a53; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6eaef; }
.charts { display: flex; flex-wrap: wrap; gap: 0 1.5rem; }
figure.chart svg { display: block; max-width: 100%; height: auto; border: 1px solid #e6eaef; }
table.confusion { margin: .5rem 0 1rem; }
table.confusion caption { caption-side: top; text-align: left; font-weight: 600; white-space: nowrap;
                          padding-bottom: .3rem; }
.confusion-legend { font-size: .9rem; margin: 1rem 0 0; color: #59636e; }
table.confusion td { border: 1px solid #ffffff; padding: .2rem .55rem; min-width: 2.2rem; text-align: center; }
table.confusion th { padding: .2rem .55rem; }
table.confusion thead th { border-bottom: 1px solid #d0d7de; font-weight: 500; }
figcaption { font-size: .9rem; margin-top: .25rem; }
pre { background: #f6f8fa; padding: .8rem 1rem; border-radius: 6px; overflow: auto;
      font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .5rem 1rem;
        margin: 1rem 0; }
.note ul { margin: .25rem 0; padding-left: 1.25rem; }
.warnings { background: #fff1e5; border-left: 6px solid #bc4c00; padding: .6rem 1rem;
            margin: 1rem 0; font-size: 1.05rem; }
.warnings ul { margin: .25rem 0; padding-left: 1.25rem; }
.message pre { background: #ffebe9; border-left: 4px solid #cf222e; white-space: pre-wrap; }
footer { margin: 2.5rem 0 1rem; font-size: .85rem; }
.scroll { overflow-x: auto; max-width: 100%; }
details summary { cursor: pointer; margin: .5rem 0; }
@media (max-width: 640px) { body { margin: 1rem auto; font-size: 14px; } th, td { padding: .25rem .45rem; } }
"""

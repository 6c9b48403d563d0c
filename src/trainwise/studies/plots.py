"""A study's PNGs (matplotlib, Agg): val-metric curves overlaid per variant with a band over the
seeds, lr curves (schedules), a heat map for a two-factor grid (normalization × batch size) and
per-layer gradient norms (init). Each function returns the file it wrote, or None when the study
has nothing to draw there."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import matplotlib
import numpy as np

from trainwise.report.figures import agg_figure


def _seed_band(curves: dict[Any, list[tuple[int, float]]]) -> Optional[tuple[np.ndarray, ...]]:
    """Steps, mean, min and max over the seeds, on the steps every seed logged."""
    usable = [c for c in curves.values() if c]
    if not usable:
        return None
    length = min(len(c) for c in usable)
    steps = np.array([s for s, _ in usable[0][:length]])
    values = np.array([[v for _, v in c[:length]] for c in usable])
    return steps, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def samples_axis(results: dict[str, Any]) -> bool:
    """Variants that train at different batch sizes are drawn against samples seen, not steps: a
    step of batch 512 is 64 steps of batch 8 in data."""
    return len({v.get("batch_size") for v in results["variants"]}) > 1


def curves_png(results: dict[str, Any], out: Path) -> Optional[Path]:
    fig, ax = agg_figure(figsize=(8, 5))
    by_samples = samples_axis(results)
    cmap = matplotlib.colormaps["tab20" if len(results["variants"]) > 10 else "tab10"]
    for i, variant in enumerate(results["variants"]):
        band = _seed_band(variant["curves"])
        if band is None:
            continue
        steps, mean, low, high = band
        if by_samples:
            steps = steps * (variant.get("batch_size") or 1)
        color = cmap(i % cmap.N)
        ax.plot(steps, mean, label=variant["label"], color=color, marker="o", markersize=3)
        ax.fill_between(steps, low, high, color=color, alpha=0.15)
    if results["target"] is not None:
        ax.axhline(results["target"], color="grey", linestyle=":", linewidth=1, label="target")
    ax.set_xlabel("training samples seen (steps × batch size)" if by_samples else "optimizer step")
    ax.set_ylabel(results["metric"])
    ax.set_title(f"study {results['study']}: mean over seeds, band = min..max")
    ax.legend(fontsize=7, ncol=2 if len(results["variants"]) > 8 else 1)
    return _save(fig, out / "curves.png")


def lr_png(results: dict[str, Any], out: Path) -> Optional[Path]:
    drawn = [v for v in results["variants"] if v["lr_curve"]]
    if results["study"] != "schedules" or not drawn:
        return None
    fig, ax = agg_figure(figsize=(8, 4.5))
    for variant in drawn:
        steps, lrs = zip(*variant["lr_curve"])
        ax.plot(steps, lrs, label=variant["label"], linestyle="--" if "warmup" in variant["name"] else "-")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr")
    ax.set_title("lr schedules (seed 0)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "lr.png")


def heatmap_png(results: dict[str, Any], out: Path) -> Optional[Path]:
    grid = results.get("grid")
    if not grid:
        return None
    rows_key, cols_key = grid
    rows = list(dict.fromkeys(v["overrides"][rows_key] for v in results["variants"]))
    cols = list(dict.fromkeys(v["overrides"][cols_key] for v in results["variants"]))
    table = np.full((len(rows), len(cols)), np.nan)
    for v in results["variants"]:
        if v["final"]["mean"] is not None:
            table[rows.index(v["overrides"][rows_key]), cols.index(v["overrides"][cols_key])] = v["final"]["mean"]
    fig, ax = agg_figure(figsize=(1.3 * len(cols) + 2, 0.8 * len(rows) + 1.8))
    image = ax.imshow(table, cmap="viridis" if results["mode"] == "max" else "viridis_r", aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(cols_key)
    ax.set_ylabel(rows_key)
    for (i, j), value in np.ndenumerate(table):
        if not math.isnan(value):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, label=f"final {results['metric']} (mean over seeds)")
    return _save(fig, out / "heatmap.png")


def grad_norms_png(results: dict[str, Any], out: Path) -> Optional[Path]:
    drawn = [v for v in results["variants"] if v["grad_norms_init"]]
    if not drawn:
        return None
    fig, (left, right) = agg_figure(1, 2, figsize=(11, 4.5))
    for variant in drawn:
        layers = list(variant["grad_norms_init"])
        left.plot(range(len(layers)), list(variant["grad_norms_init"].values()), marker="o", label=variant["label"])
        rows = variant["grad_norms"]
        if rows:
            totals = [math.sqrt(sum(n * n for n in row["norms"].values())) for row in rows]
            right.plot([row["step"] for row in rows], totals, label=variant["label"])
    left.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
    left.set_yscale("log")
    left.set_xlabel("layer (input → output)")
    left.set_ylabel("weight gradient L2 norm")
    left.set_title("per layer at step 0 (one batch, unclipped; mean over seeds)")
    right.set_yscale("log")
    right.set_xlabel("optimizer step")
    right.set_ylabel("global gradient norm (after clipping)")
    right.set_title("during training (seed 0)")
    left.legend(fontsize=7)
    return _save(fig, out / "grad_norms.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def draw_all(results: dict[str, Any], out: Path) -> list[Path]:
    made = [draw(results, out) for draw in (curves_png, lr_png, heatmap_png, grad_norms_png)]
    return [p for p in made if p is not None]

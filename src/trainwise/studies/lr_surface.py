"""``trainwise study lr-surface``: gradient descent with momentum on a 2-D loss surface with a
tiny, a good and a too-large lr, and with a decaying schedule: a static PNG and an animated GIF.

The surface is an ill-conditioned bowl (curvature 1 along one axis, 10 along the other) with a
gentle ripple, the shape that makes the lr matter: heavy-ball momentum (β = 0.5) is stable while
``lr < 2(1 + β) / 10 = 0.3`` along the steep axis. Tiny (0.003) crawls, good (0.08) settles,
too large (0.35) blows up, and a schedule that starts near the edge (0.29) and decays (cosine)
first bounces across the valley, then settles. No data, no torch: it runs in a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainwise.runfolder.files import write_json

START = (-2.5, 1.6)
STEPS = 80
MOMENTUM = 0.5
CURVATURE = (1.0, 10.0)
RIPPLE = 0.3
BLOWUP = 1e6  # a path is cut where the loss passes this: it diverged


def loss(x: np.ndarray | float, y: np.ndarray | float) -> Any:
    a, b = CURVATURE
    return 0.5 * a * x**2 + 0.5 * b * y**2 + RIPPLE * (1 - np.cos(2 * x))


def gradient(x: float, y: float) -> tuple[float, float]:
    a, b = CURVATURE
    return a * x + 2 * RIPPLE * math.sin(2 * x), b * y


def descend(lr_at: Callable[[int], float], steps: int = STEPS, momentum: float = MOMENTUM) -> list[tuple[float, float]]:
    """The path of heavy-ball momentum from ``START``: ``v = β v + g; p = p - lr_t v``. It stops
    early when the loss passes ``BLOWUP`` (diverged)."""
    x, y = START
    vx = vy = 0.0
    path = [(x, y)]
    for step in range(steps):
        gx, gy = gradient(x, y)
        vx, vy = momentum * vx + gx, momentum * vy + gy
        lr = lr_at(step)
        x, y = x - lr * vx, y - lr * vy
        path.append((x, y))
        if not math.isfinite(x) or not math.isfinite(y) or loss(x, y) > BLOWUP:
            break
    return path


def cosine(start: float, steps: int = STEPS) -> Callable[[int], float]:
    return lambda step: 0.5 * start * (1 + math.cos(math.pi * step / steps))


RUNS: tuple[tuple[str, Callable[[int], float]], ...] = (
    ("tiny lr 0.003", lambda step: 0.003),
    ("good lr 0.08", lambda step: 0.08),
    ("too large lr 0.35", lambda step: 0.35),
    ("decaying 0.29 → 0 (cosine)", cosine(0.29)),
)


def paths() -> list[dict[str, Any]]:
    out = []
    for label, lr_at in RUNS:
        path = descend(lr_at)
        final = float(loss(*path[-1]))
        out.append({"label": label, "path": path, "final_loss": final,
                    "diverged": len(path) < STEPS + 1 or final > BLOWUP / 10})
    return out


def _figure(runs: list[dict[str, Any]], upto: int | None = None) -> Any:
    from trainwise.report.figures import agg_figure

    fig, (ax, curve) = agg_figure(1, 2, figsize=(10, 4.2))
    xs, ys = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-2, 2, 200))
    ax.contour(xs, ys, loss(xs, ys), levels=np.geomspace(0.05, 40, 14), cmap="Greys", linewidths=0.7)
    colors = ("tab:blue", "tab:green", "tab:red", "tab:purple")
    for run, color in zip(runs, colors):
        path = np.array(run["path"][: None if upto is None else upto + 1])
        ax.plot(path[:, 0], path[:, 1], "-o", color=color, markersize=2, linewidth=1, label=run["label"])
        losses = [float(loss(px, py)) for px, py in path]
        curve.plot(range(len(losses)), losses, color=color, label=run["label"])
    ax.plot(*START, "k*", markersize=10)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-2, 2)
    ax.set_title(f"momentum {MOMENTUM} on a bowl with curvatures {CURVATURE[0]:g} and {CURVATURE[1]:g}")
    ax.legend(fontsize=7, loc="lower right")
    curve.set_yscale("log")
    curve.set_ylim(1e-8, 1e3)
    curve.set_xlim(0, STEPS)
    curve.set_xlabel("step")
    curve.set_ylabel("loss")
    fig.tight_layout()
    return fig


def _frame(runs: list[dict[str, Any]], upto: int) -> Any:
    """One GIF frame: the figure with each path drawn up to step ``upto``, as a Pillow image."""
    from PIL import Image

    fig = _figure(runs, upto=upto)
    fig.set_dpi(70)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("P", palette=Image.Palette.ADAPTIVE)
    return image


def draw_lr_surface(out: Path, *, frames: int = 24) -> dict[str, Any]:
    """Write ``lr_surface.png``, ``lr_surface.gif`` (``frames`` frames, Pillow) and
    ``lr_surface.json`` (each run's final loss and whether it diverged) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    runs = paths()
    fig = _figure(runs)
    fig.savefig(out / "lr_surface.png", dpi=110)
    images = [_frame(runs, int(stop)) for stop in np.linspace(0, STEPS, frames).round()]
    images[0].save(out / "lr_surface.gif", save_all=True, append_images=images[1:], duration=120, loop=0)
    summary = {"runs": [{k: v for k, v in r.items() if k != "path"} for r in runs], "start": START,
               "momentum": MOMENTUM, "curvature": CURVATURE, "steps": STEPS}
    write_json(out / "lr_surface.json", summary)
    return {**summary, "files": [out / "lr_surface.png", out / "lr_surface.gif", out / "lr_surface.json"]}

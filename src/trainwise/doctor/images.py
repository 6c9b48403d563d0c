"""For image data: a PNG grid of training samples, one row per class, to look at what the model sees."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)
PER_CLASS = 8
MAX_CLASSES = 20


def write_samples_grid(x: torch.Tensor, y: torch.Tensor, path: Path) -> Optional[Path]:
    """Up to 8 samples of each of the first 20 classes (each image scaled to its own range).
    Returns the path, or None for inputs that are not 1- or 3-channel images."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        return None
    from trainwise.report.figures import agg_figure

    labels = y.reshape(-1).long()
    classes = sorted(set(labels.tolist()))[:MAX_CLASSES]
    fig, axes = agg_figure(len(classes), PER_CLASS, figsize=(PER_CLASS * 0.9, len(classes) * 0.9 + 0.3),
                             squeeze=False)
    for row, cls in enumerate(classes):
        index = (labels == cls).nonzero().reshape(-1)[:PER_CLASS]
        for col in range(PER_CLASS):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(index):
                image = x[int(index[col])].detach().float().cpu()
                image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)
                ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray")
        axes[row][0].set_title(f"class {cls}", fontsize=7, loc="left")
    fig.suptitle("training samples per class (trainwise doctor)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path

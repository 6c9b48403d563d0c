"""Config → data read from disk: a text corpus (``data.dataset: text``) or a folder of images
(``data.dataset: imagefolder``)."""

from __future__ import annotations

import os

from trainwise.config.schema import RunConfig
from trainwise.data.bundle import DataBundle
from trainwise.errors import ConfigError


def load_disk_bundle(cfg: RunConfig, *, pin_memory: bool) -> DataBundle:
    d = cfg.data
    if isinstance(d.batch_size, str):
        raise ConfigError(f"data.batch_size=auto needs data held in memory, got data.dataset={d.dataset!r}; give "
                          "data.batch_size a number")
    if d.dataset == "text":
        from trainwise.data.text_data import load_text

        if d.path is None:
            raise ConfigError("dataset 'text' needs data.path: a .txt file, a folder of .txt files, or builtin:pydoc")
        return load_text(d.path, tokenizer=d.tokenizer, block_size=d.block_size, batch_size=d.batch_size,
                         val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=cfg.seed,
                         pin_memory=pin_memory)
    from trainwise.data.image_folder import load_image_folder

    if d.root is None:
        raise ConfigError("dataset 'imagefolder' needs data.root: a folder holding one folder of images per class")
    return load_image_folder(d.root, image_size=d.image_size, channels=d.channels, strict=d.strict,
                             val_fraction=d.val_fraction, test_fraction=d.test_fraction, normalize=d.normalize,
                             augment=d.augment, cache=d.cache, num_workers=num_workers_of(cfg), seed=cfg.seed)


def num_workers_of(cfg: RunConfig) -> int:
    """``data.num_workers``; ``auto``: one per core up to 8 (none for data already in memory)."""
    workers = cfg.data.num_workers
    if workers != "auto":
        return int(workers)
    if cfg.data.dataset != "imagefolder":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, max(cores - 1, 1)) if cores > 1 else 0


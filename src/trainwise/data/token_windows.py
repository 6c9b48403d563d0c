"""Token ids on disk and the windows a language model trains on (nanoGPT's ``prepare.py`` way).

The ids of a corpus are written once to ``tokens.bin`` (``uint16`` up to 65,536 ids, else
``uint32``) under a cache key made of the text's SHA-256 and the tokenizer, then read through
``np.memmap``, opened lazily in each process that reads it. The splits are contiguous: train
first, then validation, then test at the tail. A window is ``block_size`` input ids and the same
ids shifted by one as targets, and never crosses its split's end: training windows start at
random offsets (``RandomWindowSampler``, drawn again each epoch from the seed and the epoch), and
validation/test windows tile their split without overlap.

Example:
    >>> windows = TokenWindows(path, dtype="uint16", start=0, end=1000, block_size=8)
    >>> x, y = windows[0]          # ids 0..7 and 1..8
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from trainwise.errors import DataError

CACHE_VERSION = 1


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "uint32"


def write_token_cache(ids: list[int], *, key_parts: dict[str, Any], vocab_size: int, cache_dir: Path) -> Path:
    """The cached ``tokens.bin`` for ``key_parts`` (written now when absent or damaged)."""
    key_text = json.dumps({**key_parts, "version": CACHE_VERSION}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    folder = cache_dir / "tokens" / key
    path = folder / "tokens.bin"
    dtype = token_dtype(vocab_size)
    expected = len(ids) * np.dtype(dtype).itemsize
    if path.is_file() and path.stat().st_size == expected:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"tokens.bin.{os.getpid()}.tmp"
    np.asarray(ids, dtype=dtype).tofile(temporary)
    os.replace(temporary, path)  # readers see the whole file or none: several runs may share the cache
    meta = {"key": key_parts, "tokens": len(ids), "dtype": dtype, "version": CACHE_VERSION}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def split_bounds(total: int, *, block_size: int, val_fraction: float,
                 test_fraction: float) -> dict[str, tuple[int, int]]:
    """``{split: (start, end)}`` of contiguous token ranges: train, then val, then test.

    Raises:
        DataError: a text shorter than two blocks, or a ``block_size`` that leaves a split without one
            whole window (the message gives the largest block size that fits).
    """
    if total < 2 * (block_size + 1):
        raise DataError(f"the text holds {total} tokens, fewer than two blocks of data.block_size={block_size} (+1 "
                        f"for the shifted targets); use a longer text or a smaller data.block_size")
    n_test = int(total * test_fraction)
    n_val = int(total * val_fraction)
    n_train = total - n_val - n_test
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, total)}
    bounds = {name: span for name, span in bounds.items() if span[1] > span[0]}
    shortest = min(bounds.items(), key=lambda item: item[1][1] - item[1][0])
    largest = shortest[1][1] - shortest[1][0] - 1
    if largest < block_size:
        raise DataError(f"data.block_size={block_size} is larger than the text allows: the {shortest[0]} split holds "
                        f"{largest + 1} tokens, so the largest block size is {max(largest, 0)}; use a smaller "
                        "data.block_size, a larger split fraction, or a longer text")
    return bounds


class TokenWindows(Dataset):
    """Windows of ``block_size`` ids from ``[start, end)`` of a token file: ``(x, y)`` with ``y`` the
    next id of each position. ``random_starts``: item ``i`` starts at ``start + i`` (every offset; a
    ``RandomWindowSampler`` picks them); else the windows tile the range without overlap."""

    def __init__(self, path: str | Path, *, dtype: str, start: int, end: int, block_size: int,
                 random_starts: bool = False) -> None:
        self.path, self.dtype = str(path), dtype
        self.start, self.end, self.block_size = start, end, block_size
        self.random_starts = random_starts
        self._tokens: Optional[np.memmap] = None  # opened in the process that reads (each DataLoader worker)

    def __len__(self) -> int:
        span = self.end - self.start
        return span - self.block_size if self.random_starts else (span - 1) // self.block_size

    @property
    def tokens(self) -> np.memmap:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._tokens

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} of {len(self)}")
        first = self.start + (index if self.random_starts else index * self.block_size)
        chunk = torch.from_numpy(self.tokens[first:first + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokens": None}  # workers open their own memmap

    @property
    def tokens_per_epoch(self) -> int:
        return len(self) * self.block_size


class RandomWindowSampler(Sampler[int]):
    """``per_epoch`` window offsets drawn uniformly with replacement from ``num_offsets``, a
    different draw each epoch, fixed by ``(seed, epoch)`` so a resumed run draws the same."""

    def __init__(self, num_offsets: int, per_epoch: int, seed: int) -> None:
        if num_offsets <= 0 or per_epoch <= 0:
            raise DataError(f"no training window fits: {num_offsets} offsets, {per_epoch} windows per epoch")
        self.num_offsets, self.per_epoch, self.seed = num_offsets, per_epoch, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randint(self.num_offsets, (self.per_epoch,), generator=generator).tolist())

    def __len__(self) -> int:
        return self.per_epoch

"""``load_text``: a corpus as the three splits a language model trains and is judged on.

Example:
    >>> bundle = load_text("builtin:pydoc", tokenizer="char", block_size=64, batch_size=32)
    >>> bundle.num_outputs, bundle.input_shape          # vocabulary, block
    (103, (64,))
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

from torch.utils.data import DataLoader

from trainwise.checks import check_int
from trainwise.data.builtin import default_cache_dir
from trainwise.data.bundle import DataBundle
from trainwise.data.splits import check_fraction
from trainwise.data.text import build_tokenizer, read_corpus
from trainwise.data.token_windows import (RandomWindowSampler, TokenWindows, split_bounds, token_dtype,
                                          write_token_cache)

logger = logging.getLogger(__name__)


def load_text(path: str | Path, *, tokenizer: str = "char", block_size: int = 128, batch_size: int = 64,
              val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, pin_memory: bool = False,
              cache_dir: Optional[Path] = None) -> DataBundle:
    """Read, tokenize and cache a corpus; return its splits as window data sets.

    Args:
        path: a ``.txt`` file, a folder of ``.txt`` files, or ``builtin:pydoc``.
        tokenizer: ``char`` (the text's own characters; vocabulary saved with the run) or ``byte``.
        block_size: ids per window: the context the model sees.
        batch_size: windows per training batch.
        val_fraction, test_fraction: shares of the ids held out, as contiguous tail splits (test last).
        seed: draws the training windows (a new draw each epoch).
        pin_memory: pin the training batches (for a CUDA device).
        cache_dir: where the token file goes (default ``~/.cache/trainwise``).

    Returns:
        A bundle whose ``train`` is a ``DataLoader`` of random windows (an epoch: as many windows as
        the train split has blocks), and ``val``/``test`` window data sets that tile their splits.

    Raises:
        DataNotFoundError, DataError: no text there, binary or empty text, a text shorter than two
            blocks, or a block size the splits cannot hold.
    """
    check_int("data.block_size", block_size, 1)
    check_int("data.batch_size", batch_size, 1)
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    corpus = read_corpus(path)
    coder = build_tokenizer(tokenizer, corpus.text)
    ids = coder.encode(corpus.text)
    bounds = split_bounds(len(ids), block_size=block_size, val_fraction=val_fraction, test_fraction=test_fraction)
    token_file = write_token_cache(ids, key_parts={"text_sha256": corpus.sha256, "tokenizer": coder.to_dict()},
                                   vocab_size=coder.vocab_size, cache_dir=cache_dir or default_cache_dir())
    dtype = token_dtype(coder.vocab_size)

    def windows(split: str, random_starts: bool = False) -> Optional[TokenWindows]:
        if split not in bounds:
            return None
        start, end = bounds[split]
        return TokenWindows(token_file, dtype=dtype, start=start, end=end, block_size=block_size,
                            random_starts=random_starts)

    train_windows = windows("train", random_starts=True)
    per_epoch = max(1, (bounds["train"][1] - 1) // block_size)
    sampler = RandomWindowSampler(len(train_windows), per_epoch, seed)
    train = DataLoader(train_windows, batch_size=batch_size, sampler=sampler, pin_memory=pin_memory)
    chars_per_token = len(corpus.text) / len(ids)
    details = {"corpus": corpus.describe(), "tokenizer": coder.kind, "vocab_size": coder.vocab_size,
               "block_size": block_size, "token_file": str(token_file), "chars_per_token": chars_per_token,
               "tokens": {name: end - start for name, (start, end) in bounds.items()},
               "train_windows_per_epoch": per_epoch}
    logger.info("loaded %s: %d tokens (%s, vocabulary %d): %s", corpus.source, len(ids), coder.kind,
                coder.vocab_size, ", ".join(f"{k} {v}" for k, v in details["tokens"].items()))
    return DataBundle(train=train, val=windows("val"), test=windows("test"), task="classification",
                      num_classes=coder.vocab_size, num_outputs=coder.vocab_size, input_shape=(block_size,),
                      normalization=None, class_names=None, name=Path(corpus.source).stem if "/" in corpus.source
                      else corpus.source, details=details, tokenizer=coder)


def bits_per_char(loss_nats: float, chars_per_token: float) -> float:
    """Bits per character of a per-token loss in nats (one char per token for ``char``; bytes per
    character make a byte tokenizer's figure larger than its bits per byte)."""
    return loss_nats / math.log(2) / chars_per_token

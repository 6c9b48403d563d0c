"""Text corpora: tokenizers, the token cache, windows that never cross a split, bad input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from trainwise.data.text import ByteTokenizer, CharTokenizer, build_tokenizer, read_corpus, tokenizer_from_dict
from trainwise.data.text_data import bits_per_char, load_text
from trainwise.data.token_windows import RandomWindowSampler, TokenWindows, split_bounds
from trainwise.errors import ConfigError, DataError, DataNotFoundError

TEXT = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_char_tokenizer_round_trip_and_unknown_character():
    tokenizer = build_tokenizer("char", "hello world")
    assert tokenizer.vocabulary == sorted(set("hello world"))
    assert tokenizer.decode(tokenizer.encode("low doll")) == "low doll"
    with pytest.raises(DataError, match=r"character 'z' \(U\+007A\) at position 2 is not in the run's vocabulary"):
        tokenizer.encode("hez")
    assert tokenizer_from_dict(tokenizer.to_dict()).vocabulary == tokenizer.vocabulary


def test_byte_tokenizer_covers_everything():
    tokenizer = build_tokenizer("byte", "")
    assert isinstance(tokenizer, ByteTokenizer) and tokenizer.vocab_size == 256
    assert tokenizer.encode("é") == [0xC3, 0xA9]
    assert tokenizer.decode(tokenizer.encode("naïve ☃")) == "naïve ☃"


def test_bundled_corpus_is_cpythons_pydoc_topics():
    corpus = read_corpus("builtin:pydoc")
    assert len(corpus.text) > 100_000
    assert corpus.describe()["python"]
    with pytest.raises(ConfigError, match="did you mean 'builtin:pydoc'"):
        read_corpus("builtin:pydocs")


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_no_window_crosses_a_split(text_file, tmp_path, block_size):
    bundle = load_text(text_file, block_size=block_size, batch_size=4, val_fraction=0.1, test_fraction=0.1,
                       cache_dir=tmp_path / "cache")
    ids = torch.tensor(CharTokenizer(sorted(set(TEXT))).encode(TEXT))
    bounds = split_bounds(len(ids), block_size=block_size, val_fraction=0.1, test_fraction=0.1)
    assert bounds == {"train": (0, 800), "val": (800, 900), "test": (900, 1000)}
    train = bundle.train.dataset
    for split, windows in (("train", train), ("val", bundle.val), ("test", bundle.test)):
        start, end = bounds[split]
        for index in range(len(windows)):
            x, y = windows[index]
            first = windows.start + (index if windows.random_starts else index * block_size)
            assert start <= first and first + block_size + 1 <= end  # the targets too stay inside
            assert torch.equal(x, ids[first:first + block_size]) and torch.equal(y, ids[first + 1:first + block_size + 1])
    assert len(train) == 800 - block_size  # every offset whose window fits
    assert len(bundle.val) == (100 - 1) // block_size  # tiles, no overlap
    with pytest.raises(IndexError):
        bundle.val[len(bundle.val)]


def test_training_windows_are_drawn_again_each_epoch_and_reproducibly(text_file, tmp_path):
    bundle = load_text(text_file, block_size=8, batch_size=4, cache_dir=tmp_path / "cache", seed=3)
    sampler = bundle.train.sampler
    assert isinstance(sampler, RandomWindowSampler) and len(sampler) == (800 - 1) // 8
    first = list(sampler)
    assert first == list(sampler)  # the same epoch draws the same windows (exact resume)
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and max(first + second) < len(bundle.train.dataset)
    batch_x, batch_y = next(iter(bundle.train))
    assert batch_x.shape == (4, 8) and batch_x.dtype == torch.int64


def test_tokens_are_written_once_under_a_cache_key(text_file, tmp_path):
    cache = tmp_path / "cache"
    bundle = load_text(text_file, block_size=8, cache_dir=cache)
    token_file = bundle.details["token_file"]
    assert np.fromfile(token_file, dtype=np.uint16).tolist()[:5] == CharTokenizer(sorted(set(TEXT))).encode(TEXT[:5])
    mtime = os.stat(token_file).st_mtime_ns
    assert load_text(text_file, block_size=16, cache_dir=cache).details["token_file"] == token_file
    assert os.stat(token_file).st_mtime_ns == mtime
    other = load_text(text_file, tokenizer="byte", block_size=8, cache_dir=cache).details["token_file"]
    assert other != token_file


def test_a_folder_of_text_files_is_one_corpus(tmp_path):
    (tmp_path / "b.txt").write_text("second " * 40)
    (tmp_path / "a.txt").write_text("first " * 40)
    (tmp_path / "skip.md").write_text("not read")
    corpus = read_corpus(tmp_path)
    assert corpus.text.startswith("first ") and "second" in corpus.text and "not read" not in corpus.text


@pytest.mark.parametrize("content, block_size, message", [
    ("abcdefgh" * 2, 8, "fewer than two blocks of data.block_size=8"),
    ("abcdefgh" * 20, 32, r"data.block_size=32 is larger than the text allows: the val split holds 16 tokens, "
                          r"so the largest block size is 15"),
])
def test_text_too_short_for_the_blocks(tmp_path, content, block_size, message):
    path = tmp_path / "short.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text(path, block_size=block_size, cache_dir=tmp_path / "cache")


def test_binary_or_missing_text_is_refused(tmp_path):
    binary = tmp_path / "weights.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="binary file .* not text"):
        read_corpus(binary)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_corpus(latin)
    with pytest.raises(DataNotFoundError, match="text file not found"):
        read_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="holds no .txt file"):
        read_corpus(tmp_path / "empty")


def test_bits_per_char():
    assert bits_per_char(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_char(math.log(4), 0.5) == pytest.approx(4.0)  # two bytes per character


def test_windows_pickle_without_their_memmap(text_file, tmp_path):
    import pickle

    windows = TokenWindows(load_text(text_file, block_size=8, cache_dir=tmp_path / "c").details["token_file"],
                           dtype="uint16", start=0, end=100, block_size=8)
    windows[0]
    clone = pickle.loads(pickle.dumps(windows))
    assert clone._tokens is None and torch.equal(clone[3][0], windows[3][0])


@pytest.mark.parametrize("content, overrides, message", [
    ("abcdefgh" * 2, [], r"the text holds 16 tokens, fewer than two blocks of data.block_size=8"),
    (bytes(range(256)), [], r"is a binary file \(it holds NUL bytes\), not text"),
    ("abcdefgh" * 20, ["data.block_size=32"], r"data.block_size=32 is larger than the text allows"),
])
def test_bad_text_gets_one_line_from_the_cli_and_nothing_is_written(tmp_path, capsys, content, overrides, message):
    import re

    from trainwise.cli import main

    path = tmp_path / "corpus.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "c.yaml").write_text("data: {dataset: text, path: corpus.txt, block_size: 8}\nmodel: {name: gpt}\n")
    code = main(["train", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()

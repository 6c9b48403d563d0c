"""Text for language models: reading a corpus, and the char and byte tokenizers.

A corpus is a ``.txt`` file, a folder of them (read in sorted order, joined by a blank line), or a
bundled one: ``builtin:pydoc`` is CPython's own ``pydoc_data.topics`` (the help texts of the
language reference, about 465,000 characters; it differs between Python versions, so the run
records the Python version and the text's SHA-256).

Example:
    >>> tokenizer = build_tokenizer("char", "hello")
    >>> tokenizer.encode("hello"), tokenizer.decode([3, 1])
    ([3, 1, 2, 2, 4], 'le')
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwise.checks import check_choice
from trainwise.errors import ConfigError, DataError, DataNotFoundError

TOKENIZERS = ("char", "byte")
BUILTIN_CORPORA = ("builtin:pydoc",)
# A file with NUL bytes, or one that is not UTF-8, is not text (an image, an archive, a model).
_BINARY_PROBE = 8192


@dataclass
class Corpus:
    """The text of a corpus and where it came from (recorded in data.json)."""

    text: str
    source: str
    files: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, Any]:
        described = {"source": self.source, "characters": len(self.text), "sha256": self.sha256,
                     "files": len(self.files) or 1}
        if self.source.startswith("builtin:"):
            described["python"] = sys.version.split()[0]
        return described


def read_corpus(path: str | Path) -> Corpus:
    """The text at ``path``: a ``.txt`` file, a folder of ``.txt`` files, or ``builtin:pydoc``.

    Raises:
        DataNotFoundError: nothing at ``path``, or a folder with no ``.txt`` file.
        DataError: a binary or non-UTF-8 file given as text, or an empty text.
    """
    name = str(path)
    if name.startswith("builtin:"):
        check_choice("data.path", name, BUILTIN_CORPORA)
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[key].strip() for key in sorted(topics))
        return Corpus(text, name)
    location = Path(path).expanduser()
    if location.is_dir():
        files = sorted(p for p in location.rglob("*.txt") if p.is_file())
        if not files:
            raise DataNotFoundError(f"folder {location} holds no .txt file; give data.path a .txt file or a folder "
                                    "of them")
        text = "\n\n".join(_read_text_file(p) for p in files)
        corpus = Corpus(text, str(location), [str(p) for p in files])
    elif location.is_file():
        corpus = Corpus(_read_text_file(location), str(location), [str(location)])
    else:
        raise DataNotFoundError(f"text file not found: {location}; give data.path a .txt file, a folder of them, or "
                                f"{' or '.join(BUILTIN_CORPORA)}")
    if not corpus.text:
        raise DataError(f"{location} holds no text (0 characters); give data.path a text with some content")
    return corpus


def _read_text_file(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:_BINARY_PROBE]:
        raise DataError(f"{path} is a binary file (it holds NUL bytes), not text; give data.path a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); give data.path a "
                        "UTF-8 text file, or convert it (iconv -t utf-8)") from None


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order (nanoGPT's char level).

    A character outside the vocabulary cannot be encoded: ``encode`` names it.
    """

    kind = "char"

    def __init__(self, vocabulary: list[str]) -> None:
        if not vocabulary:
            raise DataError("a char vocabulary needs at least one character, got none")
        self.vocabulary = list(vocabulary)
        self.ids = {char: index for index, char in enumerate(self.vocabulary)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        ids = self.ids
        try:
            return [ids[char] for char in text]
        except KeyError as exc:
            char = exc.args[0]
            raise DataError(f"character {char!r} (U+{ord(char):04X}) at position {text.index(char)} is not in the "
                            f"run's vocabulary of {self.vocab_size} characters; leave it out") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocabulary[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "vocabulary": self.vocabulary}


class ByteTokenizer:
    """The UTF-8 bytes of the text: 256 ids, nothing is ever unknown."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")  # a sample may cut a character in half

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size}


Tokenizer = CharTokenizer | ByteTokenizer


def build_tokenizer(kind: str, text: str) -> Tokenizer:
    """``char``: the vocabulary of ``text``; ``byte``: UTF-8 bytes."""
    check_choice("data.tokenizer", kind, TOKENIZERS)
    return CharTokenizer(sorted(set(text))) if kind == "char" else ByteTokenizer()


def tokenizer_from_dict(saved: dict[str, Any]) -> Tokenizer:
    """The tokenizer a run saved (``tokenizer.json``)."""
    kind = saved.get("kind")
    if kind == "char" and isinstance(saved.get("vocabulary"), list):
        return CharTokenizer(saved["vocabulary"])
    if kind == "byte":
        return ByteTokenizer()
    raise ConfigError(f"tokenizer.json describes an unknown tokenizer {kind!r}; expected one of {TOKENIZERS}")

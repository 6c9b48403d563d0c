"""Reading a YAML file that may be anything: every way it can be wrong is one ``ConfigError`` line.

A config given on the command line or a run folder's config.yaml may be a binary file (a
checkpoint passed by mistake), another encoding, truncated, or nested beyond what the parser
takes; ``yaml.safe_load`` builds plain data only (no tags that construct objects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainwise.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024  # a config is a few kB; a bigger file is not one


def read_yaml_mapping(path: Path, *, what: str = "config file") -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``{}`` for an empty file).

    Raises:
        ConfigError: not readable, not UTF-8 text, binary, not valid YAML (with line and column),
            or not a mapping; one line naming the file and the fix.
    """
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{what} {path} is {size / 1e6:.0f} MB, not a YAML config (at most "
                              f"{MAX_BYTES // 2**20} MB); pass the config file")
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                          "is it the YAML file? save it as UTF-8") from None
    if "\x00" in text:
        raise ConfigError(f"{what} {path} holds NUL bytes: it is a binary file, not YAML; pass the config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(error)}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deeply to be a config; pass the config file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _one_line(error: yaml.YAMLError) -> str:
    """The parser's problem and where (line, column), without its multi-line excerpt."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(error, "context", None)
    text = f"{problem}{where}" + (f" ({context})" if context else "")
    return " ".join(text.split())[:300]

"""Reading a YAML file that may be anything: every way it can be wrong is one ``ConfigError`` line.

A config given on the command line or a run folder's config.yaml may be a binary file (a
checkpoint passed by mistake), another encoding, truncated, or nested beyond what the parser
takes, empty, or hold a key twice (PyYAML keeps the last one in silence: a section written twice
would lose the first). The loader is ``yaml.SafeLoader``'s: plain data only, no tags that construct
objects, so a config file never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from trainwise.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024  # a config is a few kB; a bigger file is not one


class DuplicateKeyError(yaml.YAMLError):
    """A mapping holds the same key twice; the message names the key and both lines."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping, at any level.

    Example:
        >>> yaml.load("train: {epochs: 1}\\ntrain: {epochs: 2}", Loader=UniqueKeyLoader)
        Traceback (most recent call last):
        trainwise.config.yaml_file.DuplicateKeyError: key 'train' is written twice, at line 1 and line 2; YAML would keep only the last one: merge them into one
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths: dict[int, str] = {}
        self._name_mappings(node, "")
        return super().construct_document(node)

    def _name_mappings(self, node: yaml.Node, path: str) -> None:
        """Record each mapping's dotted path (``train.early_stopping``) for the messages."""
        if isinstance(node, yaml.MappingNode):
            if id(node) in self._paths:  # an alias seen before (anchors may nest)
                return
            self._paths[id(node)] = path
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                self._name_mappings(value_node, f"{path}.{key}" if path else str(key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._name_mappings(item, f"{path}[{index}]")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        path = getattr(self, "_paths", {}).get(id(node), "")
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges a mapping; it is not a key
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                return
            if first is not None:
                name = f"{path}.{key}" if path else str(key)
                where = f"twice on line {line}" if first == line else f"twice, at line {first} and line {line}"
                raise DuplicateKeyError(f"key {name!r} is written {where}; YAML would keep only the last one: "
                                        "merge them into one")
            seen[key] = line


def read_yaml_mapping(path: Path, *, what: str = "config file",
                      empty: Optional[str] = None) -> dict[str, Any]:
    """The mapping in the YAML file ``path``.

    Args:
        path: the file.
        what: how messages name it.
        empty: the fix an empty file's error names (an empty file, or one holding only comments,
            is an error); None reads it as ``{}``.

    Raises:
        ConfigError: not readable, not UTF-8 text, binary, not valid YAML (with line and column),
            a key written twice (both lines named), empty (with ``empty``), or not a mapping; one
            line naming the file and the fix.
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
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as error:
        raise ConfigError(f"{what} {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(error)}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deeply to be a config; pass the config file") from None
    if data is None and empty is not None:
        raise ConfigError(f"{what} {path} is empty{'' if not text.strip() else ' (only comments)'}; {empty}")
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

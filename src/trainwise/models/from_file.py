"""Models named by a file: only the built-in registry, never an import.

A safetensors file's metadata or a run folder's config.yaml is data someone else may have written.
A name read from it selects a built-in model (``MODEL_NAMES``, a closed set) or nothing: a user's
``package.module:factory`` is imported only when the user types it (``--model`` on the command
line, ``model=``/``model_spec=`` in Python). See DESIGN.md, "Files are data".
"""

from __future__ import annotations

from typing import Any

from trainwise.errors import ConfigError
from trainwise.models.factory import MODEL_NAMES

SHOWN_CHARACTERS = 80  # a name from a file is shown escaped and cut: it may hold control characters


def shown(value: Any) -> str:
    """``value`` as it may be printed on one line: escaped (``repr``) and at most 80 characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."


def builtin_name_from_file(name: Any, *, where: str, fix: str) -> str:
    """``name`` when it is a built-in model's; a ``ConfigError`` naming ``fix`` otherwise.

    Args:
        name: the model name as read from the file (anything: the file is not trusted).
        where: the file, for the message (``"model.safetensors's metadata"``).
        fix: how the user names the model themselves (``"pass --model package.module:factory"``).

    Example:
        >>> builtin_name_from_file("mlp", where="x", fix="y")
        'mlp'
    """
    if isinstance(name, str) and name in MODEL_NAMES:
        return name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} does not say which model it holds (model name {shown(name)}); {fix}")
    if name.startswith("__main__:"):
        raise ConfigError(f"{where} names the model {shown(name)}, a class defined in the script that trained it, "
                          f"which cannot be imported; {fix}")
    if ":" in name:
        raise ConfigError(f"{where} names the model {shown(name)}; trainwise never imports code a file names (the "
                          f"file may come from anyone); if you trust that code, {fix}")
    raise ConfigError(f"{where} names the model {shown(name)}, which is not a built-in one "
                      f"({', '.join(MODEL_NAMES)}); {fix}")

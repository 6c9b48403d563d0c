"""data.json checked as data from a stranger: a run folder (or a safetensors file's metadata) may
come from anyone, and a field out of range would otherwise surface later as a wrong message about
the user's inputs (``the model expects (-1, 8, 8)``). Kept apart from ``saved`` so that
``trainwise.load_model`` checks a file without importing the config schema.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from trainwise.models.from_file import shown

PYTHON_DATASET = "python"  # data.dataset of a run made with the Python API (its data is not on disk)
TASKS_ON_FILE = ("classification", "regression", "binary")  # binary: a Python run's one-logit classifier


def description_problem(description: Mapping[str, Any], *, required: tuple[str, ...] = ()) -> Optional[str]:
    """What is wrong with data.json (or an artifact's copy of it), as ``"input_shape [-1, 8, 8] is not
    valid: ..."`` (the key, the value, the rule), or None. The file may come from anyone: a size
    that is not a positive integer, class names or statistics that do not fit the shapes, would
    otherwise surface later as a wrong message about the user's inputs.

    Args:
        description: the parsed JSON object.
        required: keys that must be there (data.json always has task, input_shape, num_outputs).

    Example:
        >>> description_problem({"input_shape": [-1, 8, 8], "num_outputs": 10})
        'input_shape [-1, 8, 8] is not valid: it must be a list of integers > 0, one per dimension of a sample'
    """
    for key in required:
        if key not in description:
            return f"the key {key!r} is missing"
    python_run = description.get("dataset") == PYTHON_DATASET

    def bad(key: str, rule: str) -> str:
        return f"{key} {shown(description[key])} is not valid: {rule}"

    task: Any = description.get("task")
    shape: Any = description.get("input_shape")
    outputs: Any = description.get("num_outputs")
    classes: Any = description.get("num_classes")
    if "task" in description and task not in TASKS_ON_FILE and not (python_run and task is None):
        return bad("task", f"it must be one of {', '.join(TASKS_ON_FILE)}")
    if "input_shape" in description and not _sizes(shape) and not (python_run and shape in (None, [])):
        return bad("input_shape", "it must be a list of integers > 0, one per dimension of a sample")
    if "num_outputs" in description and not _size(outputs):
        return bad("num_outputs", "it must be an integer > 0")
    if classes is not None and not _size(classes):
        return bad("num_classes", "it must be an integer > 0, or null")
    if not python_run and task == "classification" and classes is not None and classes != outputs:
        return bad("num_classes", f"a classifier has one output per class, and num_outputs is {shown(outputs)}")
    names = description.get("class_names")
    if names is not None and not (isinstance(names, list) and all(_name(name) for name in names)):
        return bad("class_names", "it must be a list of names, or null")
    if names is not None and not python_run and classes is not None and len(names) != classes:
        return bad("class_names", f"it must name num_classes={classes} classes, got {len(names)}")
    channels = [shape[0]] if _sizes(shape) else []  # one statistic per channel (per feature for a table)
    for key, counts in (("normalization", channels), ("target_normalization", [1, outputs] if _size(outputs) else [])):
        rule = _statistics_problem(description.get(key), counts)
        if rule is not None:
            return bad(key, rule)
    feature_names = description.get("feature_names")
    if feature_names is not None and not (isinstance(feature_names, list) and all(map(_name, feature_names))):
        return bad("feature_names", "it must be a list of column names, or null")
    for key in ("vocab_size", "block_size", "channels"):
        if description.get(key) is not None and not _size(description[key]):
            return bad(key, "it must be an integer > 0, or null")
    size = description.get("image_size")
    if size is not None and not (_sizes(size) and len(size) == 2):
        return bad("image_size", "it must be [height, width], integers > 0")
    return None


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _sizes(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_size(size) for size in value)


def _name(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _statistics_problem(statistics: Any, counts: list[int]) -> Optional[str]:
    """Why ``{"mean": [...], "std": [...]}`` is not valid (None, ``{}`` or absent: no statistics)."""
    if not statistics:
        return None
    if not isinstance(statistics, dict) or not all(isinstance(statistics.get(key), list) for key in ("mean", "std")):
        return "it must be {'mean': [...], 'std': [...]}, lists of numbers"
    mean, std = statistics["mean"], statistics["std"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in mean + std)
    if not numbers or any(v <= 0 for v in std):
        return "its means must be finite numbers and its stds finite numbers > 0"
    if len(mean) != len(std) or (counts and len(mean) not in counts):
        wanted = " or ".join(str(count) for count in dict.fromkeys(counts)) or "as many"
        return f"it must hold {wanted} means and as many stds, got {len(mean)} and {len(std)}"
    return None

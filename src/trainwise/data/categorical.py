"""Text columns of a table as one-hot features (a CSV's ``city``: ``paris``, ``rome``, ...).

A feature column whose values are all text (none parses as a number) and that holds at most
``MAX_CATEGORIES`` distinct values is categorical: each category becomes one 0/1 feature, in
sorted order, in the column's place. The categories are read from the whole file (the vocabulary,
not the labels: nothing of the validation or test targets leaks), recorded in data.json
(``categorical``) and applied as they are to the inputs ``predict`` and ``evaluate`` read. A value
the run never saw is refused there with the known categories: an all-zero row would be a silent guess.

Example:
    >>> categories = column_categories("city", ["rome", "paris", "rome"], where="t.csv")
    >>> categories, one_hot(["paris", "rome"], categories, "city", where="t.csv").tolist()
    (['paris', 'rome'], [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from trainwise.errors import DataError

MAX_CATEGORIES = 50  # more distinct texts than this is an id or free text, not a category


def is_number(text: str) -> bool:
    """``text`` reads as a float (``nan`` and ``inf`` too: the data checks name those)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def column_categories(name: str, values: Sequence[str], *, where: str,
                      lines: Optional[Sequence[int]] = None) -> Optional[list[str]]:
    """The sorted categories of a text column; None for a numeric one. A column that mixes numbers
    and text, or holds too many distinct texts, is refused with what to do."""
    numeric = [is_number(value) for value in values]
    if all(numeric):
        return None
    if any(numeric):
        row = numeric.index(False)
        line = f" on line {lines[row]}" if lines is not None else ""
        raise DataError(f"{where}: feature column {name!r} holds numbers and the text {values[row]!r}{line} (a "
                        "missing-value marker?); fill in or drop those rows, or make the whole column text to "
                        "one-hot encode it")
    categories = sorted(set(values))
    if len(categories) > MAX_CATEGORIES:
        raise DataError(f"{where}: feature column {name!r} is text with {len(categories)} distinct values, more than "
                        f"the {MAX_CATEGORIES} one-hot encoding takes (an id or free text?); drop the column or "
                        "encode it as numbers")
    return categories


def one_hot(values: Sequence[str], categories: Sequence[str], name: str, *, where: str) -> np.ndarray:
    """``(N, len(categories))`` float32 0/1 columns of ``values``; a value outside ``categories`` is refused."""
    index = {category: position for position, category in enumerate(categories)}
    unknown = sorted({value for value in values if value not in index})
    if unknown:
        raise DataError(f"{where}: column {name!r} holds {', '.join(map(repr, unknown[:5]))}, which the model never "
                        f"saw in training (its categories: {', '.join(categories)}); map them to one of those or "
                        "retrain with them")
    encoded = np.zeros((len(values), len(categories)), dtype=np.float32)
    encoded[np.arange(len(values)), [index[value] for value in values]] = 1.0
    return encoded


def encoded_names(columns: Sequence[str], categorical: dict[str, list[str]],
                  filled: Sequence[str] = ()) -> list[str]:
    """The name of each feature after encoding: ``age``, ``city=paris``, ``city=rome``, ..., and after
    each column in ``filled`` (gaps filled: ``data/missing.py``) its indicator, ``age_missing``."""
    names: list[str] = []
    for name in columns:
        if name in categorical:
            names.extend(f"{name}={category}" for category in categorical[name])
        else:
            names.append(name)
            if name in filled:
                names.append(f"{name}_missing")
    return names


# ---------------------------------------------------------------------------------- pandas tables (Python API)
@dataclass(frozen=True)
class TableEncoding:
    """How a DataFrame's columns become the model's features: every column by name, in training order,
    the text ones one-hot with these categories (fitted on the training frame). Recorded in data.json,
    so ``trainwise predict RUN new.csv`` encodes the same way."""

    columns: list[str]
    categorical: dict[str, list[str]]

    def describe(self) -> dict[str, Any]:
        return {"feature_names": list(self.columns), "categorical": dict(self.categorical)}


def _is_frame(value: Any) -> bool:
    return hasattr(value, "dtypes") and hasattr(value.dtypes, "items") and hasattr(value, "columns")


def _texts(frame: Any, name: Any, what: str) -> list[str]:
    column = frame[name]
    if bool(column.isna().any()):
        raise DataError(f"{what}: column {str(name)!r} has missing values; fill them in (a category of their own, "
                        "e.g. frame[col].fillna('missing')) or drop those rows")
    return [str(value) for value in column.tolist()]


def fit_table_encoding(frame: Any) -> Optional[TableEncoding]:
    """The encoding of a training DataFrame: its columns by name (a later frame's are matched by name,
    never by position), the text (object, string or category) ones one-hot; None for anything else
    (arrays, tensors): those go in as they are."""
    if not _is_frame(frame):
        return None
    text = [name for name, dtype in frame.dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"]
    categorical = {}
    for name in text:
        categories = column_categories(str(name), _texts(frame, name, "inputs"), where="inputs")
        if categories is not None:  # numbers stored as text: read as numbers
            categorical[str(name)] = categories
    return TableEncoding([str(name) for name in frame.columns], categorical)


def encode_inputs(data: Any, encoding: Optional[TableEncoding]) -> Any:
    """``data`` (a DataFrame, or a tuple whose inputs are one) with the DataFrame encoded as in training;
    anything else unchanged."""
    if encoding is None:
        return data
    if isinstance(data, tuple) and data and _is_frame(data[0]):
        return (encode_inputs(data[0], encoding), *data[1:])
    if not _is_frame(data):
        return data
    names = {str(name): name for name in data.columns}
    missing = [name for name in encoding.columns if name not in names]
    if missing:
        raise DataError(f"inputs lack the column(s) {', '.join(map(repr, missing))} the model was trained on "
                        f"(found: {', '.join(names)})")
    extra = [name for name in names if name not in encoding.columns]
    if extra:  # a target or an id left in, or another table: never dropped in silence
        raise DataError(f"inputs have the column(s) {', '.join(map(repr, extra))}, which the model was not trained "
                        f"on (its columns: {', '.join(encoding.columns)}); drop them, e.g. frame[{encoding.columns!r}]")
    parts = []
    for name in encoding.columns:
        if name in encoding.categorical:
            parts.append(one_hot(_texts(data, names[name], "inputs"), encoding.categorical[name], name, where="inputs"))
        else:
            parts.append(np.asarray(data[names[name]].to_numpy(), dtype=np.float32).reshape(-1, 1))
    return np.concatenate(parts, axis=1)


def encode_tables(train: Any, val: Any, test: Any, encoding: Optional[TableEncoding]
                  ) -> tuple[Any, Any, Any, Optional[TableEncoding]]:
    """``(inputs, targets)`` splits whose inputs are DataFrames with text columns, encoded by the training
    frame's categories (a later ``fit`` keeps the first one's); the encoding, or None."""
    if encoding is None and isinstance(train, tuple) and train:
        encoding = fit_table_encoding(train[0])
    return (*(encode_inputs(split, encoding) for split in (train, val, test)), encoding)

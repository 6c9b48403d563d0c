"""User data from files: a CSV table or an ``.npz`` archive of arrays."""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from trainwise.data.bundle import RawData
from trainwise.data.categorical import column_categories, one_hot
from trainwise.data.missing import MISSING_CATEGORY, is_missing, numeric_with_gaps, text_with_gaps
from trainwise.checks import closest
from trainwise.errors import ConfigError, DataError, DataNotFoundError

logger = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t", "|")  # what may stand between a CSV's columns
SNIFF_CHARS = 64 * 1024  # the start of the file the delimiter is read from
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def _check_file(path: Path, kind: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{kind} file {path} is a folder, not a file; give the .{kind} file inside it "
                          "(or data.dataset: imagefolder for a folder of images)")
    if not path.is_file():
        raise DataNotFoundError(f"{kind} file {path} does not exist; check path (data.path)")


def csv_delimiter(path: Path) -> str:
    """The character between the columns of the CSV file ``path``: ``,`` (tab for ``.tsv``) unless
    that does not split the first lines evenly and another of ``, ; tab |`` does (``csv.Sniffer``'s
    guess first). Evenly: the header has at least 2 columns and every line as many values. In doubt,
    the default: a file that no delimiter splits evenly keeps it, and its errors name the lines.

    Example:
        >>> csv_delimiter(Path("table.csv"))  # doctest: +SKIP
        ';'
    """
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(SNIFF_CHARS)
    except (OSError, UnicodeDecodeError):
        return default  # reading the file proper reports it
    if len(sample) == SNIFF_CHARS:
        sample = sample[:sample.rfind("\n") + 1]  # whole lines only
    if _splits_evenly(sample, default):
        return default
    try:
        guess = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        guess = default
    for candidate in dict.fromkeys([guess, *DELIMITERS]):
        if candidate != default and _splits_evenly(sample, candidate):
            return candidate
    return default


def _splits_evenly(sample: str, delimiter: str) -> bool:
    try:
        rows = [row for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if any(v.strip() for v in row)]
    except csv.Error:
        return False
    return bool(rows) and len(rows[0]) >= 2 and all(len(row) == len(rows[0]) for row in rows)


def _delimiter_hint(header: list[str], delimiter: str) -> str:
    """``; the header looks like it uses ';' between columns ...`` for a header read as one column."""
    seen = [d for d in DELIMITERS if d != delimiter and len(header) == 1 and d in header[0]]
    if not seen:
        return ""
    return (f"; the header looks like it uses {seen[0]!r} between columns, but the lines do not all split "
            f"into as many values with it: give every line one value per column")


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_rows(path: Path, allow_empty: bool = False) -> tuple[list[str], list[list[str]], list[int], str]:
    """Header, the data rows as stripped text, each row's line number in the file, and the delimiter.
    ``allow_empty``: empty cells are missing values to fill (``data.missing: fill``), not an error."""
    delimiter = csv_delimiter(path)
    if delimiter != ("\t" if path.suffix.lower() == ".tsv" else ","):
        logger.info("%s: columns separated by %r", path.name, delimiter)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            numbered = [(number, row) for number, row in enumerate(reader, start=1)
                        if any(value.strip() for value in row)]
        except csv.Error as error:  # e.g. a cell over csv.field_size_limit(), 131072 characters
            raise DataError(
                f"csv file {path}, line {reader.line_num}: {error}; a table's cells hold numbers or short "
                "category names: shorten that value or leave its column out of the file"
            ) from None
    if not numbered:
        raise DataError(f"csv file {path} is empty; it needs a header line and rows of data")
    header = [name.strip() for name in numbered[0][1]]
    if all(_parse_float(name) is not None for name in header):
        raise DataError(
            f"csv file {path} has no header: its first line is all numbers; add a first line "
            "with the column names"
        )
    if len(numbered) == 1:
        raise DataError(f"csv file {path} has a header but no rows of data")
    for number, row in numbered[1:]:
        if len(row) != len(header):
            raise DataError(
                f"csv file {path}, line {number}: {len(row)} values but the header has "
                f"{len(header)} columns; every line needs one value per column{_delimiter_hint(header, delimiter)}"
            )
        empty = [name for name, value in zip(header, row, strict=True) if not value.strip()]
        if empty and not allow_empty:
            raise DataError(
                f"csv file {path}, line {number}: empty value in column {empty[0]!r}; fill in "
                "or drop the rows with missing values, or set data.missing: fill (the training median and a "
                "missing-value indicator)"
            )
    rows = [[value.strip() for value in row] for _, row in numbered[1:]]
    return header, rows, [number for number, _ in numbered[1:]], delimiter


def _feature_matrix(
    header: list[str], rows: list[list[str]], lines: list[int], target_column: int, path: Path, fill: bool = False
) -> tuple[np.ndarray, dict[str, list[str]], dict[str, int]]:
    """The feature columns as float32, text columns one-hot encoded in their place
    (``data/categorical.py``), the categories of each text column, and — with ``fill`` — the position
    of each numeric column that has gaps (NaN there, filled after the split: ``data/missing.py``),
    its missing indicator right after it."""
    table = np.array(rows, dtype=str)
    parts, categorical, gaps = [], {}, {}
    width = 0
    for column in range(len(header)):
        if column == target_column:
            continue
        values = table[:, column].tolist()
        _refuse_decimal_commas(header[column], values, lines, path)
        known = [value for value in values if not (fill and is_missing(value))]
        categories = column_categories(header[column], known or values, where=f"csv file {path}", lines=lines)
        if categories is None and fill and len(known) < len(values):
            numbers, indicator = numeric_with_gaps(values)
            gaps[header[column]] = width
            parts += [numbers.astype(np.float32)[:, None], indicator[:, None]]
            width += 2
        elif categories is None:
            parts.append(table[:, column].astype(np.float64).astype(np.float32)[:, None])
            width += 1
        else:
            if fill and len(known) < len(values):
                values, categories = text_with_gaps(values), sorted({*categories, MISSING_CATEGORY})
            categorical[header[column]] = categories
            parts.append(one_hot(values, categories, header[column], where=f"csv file {path}"))
            width += len(categories)
    features = np.concatenate(parts, axis=1) if parts else np.empty((len(rows), 0), dtype=np.float32)
    return features, categorical, gaps


def _refuse_decimal_commas(name: str, values: list[str], lines: list[int], path: Path) -> None:
    """``1,5`` (a decimal comma, or ``1,000``) would read as text, and the column as mixing numbers and text."""
    row = next((i for i, value in enumerate(values) if _DECIMAL_COMMA.match(value)), None)
    if row is not None:
        raise DataError(f"csv file {path}, line {lines[row]}: column {name!r} holds {values[row]!r}, a number "
                        "with a comma, which reads as text; write numbers with a decimal point and no thousands "
                        "separator (1.5, 1000), e.g. pandas.read_csv(path, sep=';', decimal=',')"
                        ".to_csv(new_path, index=False)")


def _target_to_tensor(
    values: list[str], task: str | None, *, column: str, path: Path
) -> tuple[torch.Tensor, str, list[str] | None]:
    numbers = [_parse_float(value) for value in values]
    numeric = all(number is not None for number in numbers)
    if task is None:
        task = "regression" if numeric and not all(map(_is_int, values)) else "classification"
    if task == "regression":
        if not numeric:
            bad = values[numbers.index(None)]
            raise DataError(
                f"csv file {path}: target column {column!r} has the non-numeric value {bad!r}; "
                "regression needs numbers, or use task='classification'"
            )
        return torch.tensor(numbers, dtype=torch.float32), task, None
    # Classes sorted by value (numerically when numeric), indexed 0..K-1; names keep the text.
    if numeric:
        classes = sorted(set(values), key=lambda value: (float(value), value))
    else:
        classes = sorted(set(values))
    index = {name: position for position, name in enumerate(classes)}
    labels = torch.tensor([index[value] for value in values], dtype=torch.int64)
    return labels, task, classes


def load_csv(path: Path, *, target: str | None, task: str | None, drop: list[str] | None = None,
             missing: str = "refuse") -> RawData:
    """A table with a header line: feature columns and one target column. A text feature column
    is one-hot encoded (``data/categorical.py``; its categories go to data.json).

    The target defaults to the last column. Classification when the target text is integer
    or not numeric (each distinct value becomes a class, ``class_names`` keep the text);
    regression when it is a float. ``task`` overrides the guess.

    Raises:
        DataNotFoundError: The file does not exist.
        ConfigError: ``target`` is not a column.
        DataError: Ragged or empty rows, a feature column mixing numbers and text or with too
            many distinct texts, a non-numeric target for regression.
    """
    _check_file(path, "csv")
    fill = missing == "fill"
    header, rows, lines, delimiter = _read_rows(path, allow_empty=fill)
    target = header[-1] if target is None else target
    if target not in header:
        match = closest(target, header) if len(header) > 1 else None
        hint = f"did you mean {match!r}? " if match else ""
        raise ConfigError(
            f"target column {target!r} is not in {path}; {hint}columns: {', '.join(header)}"
            f"{_delimiter_hint(header, delimiter)}"
        )
    target_column = header.index(target)
    dropped = _dropped_columns(header, drop or [], target, path)
    if dropped:
        header, rows = ([name for column, name in enumerate(header) if column not in dropped],
                        [[value for column, value in enumerate(row) if column not in dropped] for row in rows])
        target_column = header.index(target)
    _note_row_counters(header, rows, target_column, path)
    unlabelled = next((line for line, row in zip(lines, rows) if is_missing(row[target_column])), None) if fill \
        else None
    if unlabelled is not None:  # a gap in the target is never filled: the row has nothing to learn from
        raise DataError(f"csv file {path}, line {unlabelled}: the target column {target!r} is missing; drop the "
                        "rows without a target (data.missing: fill fills feature columns only)")
    features, categorical, gaps = _feature_matrix(header, rows, lines, target_column, path, fill)
    y, task, class_names = _target_to_tensor(
        [row[target_column] for row in rows], task, column=target, path=path
    )
    return RawData(
        x=torch.from_numpy(features),
        y=y,
        task=task,
        num_classes=None if class_names is None else len(class_names),
        class_names=class_names,
        name=path.stem,
        details={"feature_names": [name for name in header if name != target], "target": target,
                 **({"dropped_columns": list(drop)} if drop else {}),
                 **({"missing_positions": gaps} if gaps else {}),
                 **({"categorical": categorical} if categorical else {})},
    )


def _dropped_columns(header: list[str], drop: list[str], target: str, path: Path) -> set[int]:
    """The positions of ``data.drop_columns``: each must be a column, and not the target."""
    for name in drop:
        if name not in header:
            match = closest(name, header)
            raise ConfigError(f"data.drop_columns names {name!r}, which is not a column of {path}"
                              f"{f'; did you mean {match!r}?' if match else ''} (columns: {', '.join(header)})")
        if name == target:
            raise ConfigError(f"data.drop_columns names {name!r}, the target column (data.target); drop another")
    return {header.index(name) for name in drop}


def _note_row_counters(header: list[str], rows: list[list[str]], target_column: int, path: Path) -> None:
    """A feature column that counts the rows (1, 2, 3, ... or 0, 1, 2, ...) is an identifier: it tells the
    model where a row sits in the file, nothing about it. Said once, with the key that drops it."""
    for column, name in enumerate(header):
        if column == target_column or len(rows) < 3 or not all(_is_int(row[column]) for row in rows):
            continue
        values = [int(row[column]) for row in rows]
        if values == list(range(values[0], values[0] + len(values))) and values[0] in (0, 1):
            logger.warning("csv file %s: column %r counts the rows (%d, %d, %d, ...): an identifier, not a feature; "
                           "leave it out with data.drop_columns: [%s]", path, name, *values[:3], name)


def _npz_pair(
    arrays: dict[str, np.ndarray], suffix: str, path: Path
) -> tuple[np.ndarray, np.ndarray] | None:
    x_name, y_name = f"x{suffix}", f"y{suffix}"
    if x_name not in arrays and y_name not in arrays:
        return None
    if x_name not in arrays or y_name not in arrays:
        raise DataError(
            f"npz file {path} has only one of {x_name!r} and {y_name!r}; give both or neither"
        )
    return arrays[x_name], arrays[y_name]


def _npz_tensors(
    pair: tuple[np.ndarray, np.ndarray], task: str, path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = pair
    if x.ndim == 1:  # one feature per sample
        x = x.reshape(len(x), 1)
    for name, values in (("x", x), ("y", y)):
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise DataError(f"npz file {path}: {name} must be numeric, got dtype {values.dtype}")
    if task == "regression":
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    if np.issubdtype(y.dtype, np.inexact) and not np.array_equal(y, np.round(y)):
        raise DataError(
            f"npz file {path}: task is classification but y holds non-integer values "
            f"(dtype {y.dtype}); use integer class indices or task='regression'"
        )
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def load_npz(path: Path, *, task: str | None) -> RawData:
    """Arrays ``x`` and ``y`` from an ``.npz`` file written by ``numpy.savez``.

    Optional ``x_val``/``y_val`` and ``x_test``/``y_test`` are used as official splits, and an
    optional ``class_names`` array of strings names the classes. Classification when every
    ``y`` is integer (or bool), regression otherwise; ``task`` overrides. ``x`` keeps its
    layout: ``(N, F)`` tables, ``(N, C, L)`` sequences, ``(N, C, H, W)`` images.

    Raises:
        DataNotFoundError: The file does not exist.
        DataError: It is not a readable npz, lacks ``x``/``y``, or has half of a split pair.
    """
    _check_file(path, "npz")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"cannot read npz file {path}: {error}; write it with numpy.savez(path, x=..., y=...)"
        ) from error
    if "x" not in arrays or "y" not in arrays:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"npz file {path} needs arrays 'x' and 'y', found: {found}")
    train_pair = (arrays["x"], arrays["y"])
    val_pair, test_pair = _npz_pair(arrays, "_val", path), _npz_pair(arrays, "_test", path)
    if task is None:
        targets = [pair[1] for pair in (train_pair, val_pair, test_pair) if pair is not None]
        integer = all(np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_ for y in targets)
        task = "classification" if integer else "regression"
    x, y = _npz_tensors(train_pair, task, path)
    x_val, y_val = (None, None) if val_pair is None else _npz_tensors(val_pair, task, path)
    x_test, y_test = (None, None) if test_pair is None else _npz_tensors(test_pair, task, path)
    class_names = [str(name) for name in arrays["class_names"]] if "class_names" in arrays else None
    num_classes = None
    if task == "classification":
        present = [split_y for split_y in (y, y_val, y_test) if split_y is not None]
        largest = max((int(split_y.max()) for split_y in present if split_y.numel()), default=-1)
        num_classes = len(class_names) if class_names is not None else largest + 1
    return RawData(
        x=x,
        y=y,
        task=task,
        num_classes=num_classes,
        class_names=class_names,
        name=path.stem,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
    )

"""Files in and out of ``predict`` and ``evaluate --data``: inputs as ``.npz`` or ``.csv``, and
predictions written as ``.npz`` or ``.csv``.

Inputs are raw, as the training data was before normalization: the run's statistics from
data.json are applied here. CSV columns are matched by name to the columns the model was
trained on; text labels are encoded with the run's ``class_names``, so a label means the same
class it meant in training.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from trainwise.runfolder.saved import SavedRun, training_columns
from trainwise.data import apply_normalization
from trainwise.data.categorical import one_hot
from trainwise.data.missing import MISSING_CATEGORY, is_missing, numeric_with_gaps, text_with_gaps
from trainwise.errors import ConfigError, DataError, DataNotFoundError

INPUT_SUFFIXES = (".npz", ".csv", ".tsv")
OUTPUT_SUFFIXES = (".npz", ".csv")


def check_output_path(out: str) -> Path:
    """``--out`` as a Path, refused unless it ends in .npz or .csv."""
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out must end in .npz or .csv, got {out!r}; e.g. --out predictions.csv")
    return path


def read_inputs(path: Path, run: SavedRun) -> torch.Tensor:
    """Model inputs from an .npz (array ``x``) or a CSV; any target column is ignored."""
    _check_input_file(path)
    if path.suffix.lower() == ".npz":
        arrays = _read_npz(path)
        x = arrays.get("x", next(iter(arrays.values()), None))
        if x is None:
            raise DataError(f"{path} holds no arrays; write the inputs with numpy.savez(path, x=inputs)")
        return _prepare(_numeric(x, "x", path), run, path)
    columns, target = training_columns(run)
    header, rows = _read_csv(path)
    return _prepare(_features(header, rows, columns, target, path, run.description.get("categorical"),
                      run.description.get("missing_fill")), run, path)


def read_labelled(path: Path, run: SavedRun, target: Optional[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for ``evaluate --data``: .npz with ``x`` and ``y``, or a CSV whose
    target column is ``target`` (default the run's ``data.target``)."""
    _check_input_file(path)
    if path.suffix.lower() == ".npz":
        arrays = _read_npz(path)
        missing = [name for name in ("x", "y") if name not in arrays]
        if missing:
            raise DataError(f"{path} needs arrays 'x' and 'y', found: {', '.join(sorted(arrays)) or 'none'}; "
                            "write it with numpy.savez(path, x=inputs, y=targets)")
        x, labels = _numeric(arrays["x"], "x", path), arrays["y"]
    else:
        columns, trained_target = training_columns(run)
        target = target or trained_target
        header, rows = _read_csv(path)
        if target is None or target not in header:
            given = "no target column named" if target is None else f"no target column {target!r}"
            raise ConfigError(f"{path}: {given}; name it with --target COLUMN (columns: {', '.join(header)})")
        x = _features(header, rows, columns, target, path, run.description.get("categorical"),
                      run.description.get("missing_fill"))
        labels = np.array([row[header.index(target)] for row in rows])
    y = _targets(labels, run, path)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} inputs but {len(y)} targets; give one target per input")
    return _prepare(x, run, path), y


def write_predictions(out: Path, outputs: torch.Tensor, run: SavedRun,
                      files: Optional[list[str]] = None) -> None:
    """Write ``outputs`` (logits, or regression values in original units) as .npz or .csv; ``files``:
    the image each row predicts (a first ``file`` column)."""
    table = prediction_table(outputs, run)
    if files is not None:
        table = {"file": np.array(files), **table}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".npz":
            np.savez(out, **table)
        else:
            _write_csv(out, table, run)
    except OSError as error:
        raise DataError(f"cannot write {out}: {error.strerror or error}; choose a folder you can write to") from error


def _write_csv(out: Path, table: dict[str, np.ndarray], run: SavedRun) -> None:
    outputs = table["outputs"]
    if run.task == "classification":
        labels = run.class_names or [str(index) for index in range(outputs.shape[1])]
        header = ["prediction", *(f"probability_{label}" for label in labels)]
        columns = [table["predictions"][:, None], table["probabilities"]]
        if "file" in table:
            header, columns = ["file", *header], [table["file"][:, None], *columns]
    else:
        values = table["predictions"].reshape(len(outputs), -1)
        header = ["prediction"] if values.shape[1] == 1 else [f"prediction_{i}" for i in range(values.shape[1])]
        columns = [values]
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for parts in zip(*columns):
            writer.writerow([_cell(value) for part in parts for value in part])


def prediction_table(outputs: torch.Tensor, run: SavedRun) -> dict[str, np.ndarray]:
    """``predictions`` (class names when the run has them), plus ``class_index`` and
    ``probabilities`` for classification, and the raw ``outputs``."""
    table = {"outputs": outputs.numpy()}
    if run.task == "classification":
        index = outputs.argmax(dim=1).numpy()
        names = run.class_names
        table["predictions"] = np.array(names)[index] if names else index
        table["class_index"] = index
        table["probabilities"] = torch.softmax(outputs, dim=1).numpy()
    else:
        table["predictions"] = outputs.squeeze(1).numpy() if outputs.shape[1] == 1 else outputs.numpy()
    return table


def _cell(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def _check_input_file(path: Path) -> None:
    if not path.is_file():
        raise DataNotFoundError(f"input file not found: {path}; pass the path of an .npz or .csv file")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise ConfigError(f"input file must be .npz or .csv, got {path.name!r}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read npz file {path}: {error}; write it with numpy.savez(path, x=...)") from error


def _numeric(values: np.ndarray, name: str, path: Path) -> torch.Tensor:
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(f"{path}: array {name!r} must be numeric, got dtype {values.dtype}")
    refuse_nonfinite(values, f"{path}: array {name!r}")
    return torch.as_tensor(values.astype(np.float32))


def refuse_nonfinite(values: np.ndarray, what: str) -> None:
    """NaN or Inf in inputs (or targets) would give outputs, and figures, that mean nothing: one line
    naming how many and the first row, as a CSV's missing value is."""
    if not np.issubdtype(values.dtype, np.floating) or values.size == 0:
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)) if values.ndim else ~np.isfinite(values.reshape(1, 1))
    rows = np.flatnonzero(bad.any(axis=1))
    if len(rows):
        raise DataError(f"{what} holds NaN or Inf in {len(rows)} of {len(values) if values.ndim else 1} rows (the "
                        f"first: row {rows[0]}); the model's outputs for them would mean nothing: fill them in or "
                        "drop those rows")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows (stripped text); ragged or header-less files are refused."""
    from trainwise.data.tabular import csv_delimiter  # training's rule: , ; tab | read from the first lines

    delimiter = csv_delimiter(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = [row for row in csv.reader(handle, delimiter=delimiter) if any(value.strip() for value in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read csv file {path}: {error}; save it as UTF-8 text with one header line") from error
    if len(lines) < 2:
        raise DataError(f"csv file {path} needs a header line and at least one row of data")
    header = [name.strip() for name in lines[0]]
    if all(_is_number(name) for name in header):
        raise DataError(f"csv file {path} has no header: its first line is all numbers; "
                        "add a first line with the column names")
    for number, row in enumerate(lines[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"csv file {path}, row {number}: {len(row)} values but the header has "
                            f"{len(header)} columns; every row needs one value per column")
    return header, [[value.strip() for value in row] for row in lines[1:]]


def _features(header: list[str], rows: list[list[str]], columns: Optional[list[str]],
              target: Optional[str], path: Path, categorical: Optional[dict[str, list[str]]] = None,
              fill: Optional[dict[str, float]] = None) -> torch.Tensor:
    """The feature columns as floats, in training order, text columns one-hot encoded with the run's
    categories (data.json ``categorical``), gaps filled as training filled them (``missing_fill``: the
    training median and its indicator; a text column's ``(missing)`` category); the target is skipped."""
    categorical, fill = categorical or {}, fill or {}
    if columns is None:
        columns = [name for name in header if name != target]
    missing = [name for name in columns if name not in header]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(map(repr, missing))} the model was trained on "
                        f"(found: {', '.join(header)}); add them (the target column may be left out)")
    parts = []
    for name in columns:
        texts = [row[header.index(name)] for row in rows]
        if name in categorical:
            if MISSING_CATEGORY in categorical[name]:
                texts = text_with_gaps(texts)
            parts.append(one_hot(texts, categorical[name], name, where=str(path)))
            continue
        if name in fill:  # gaps get the training median, and the indicator the model was trained with
            bad = next((i for i, text in enumerate(texts) if not (is_missing(text) or _is_number(text))), None)
            if bad is not None:
                raise DataError(f"{path}, row {bad + 2}: column {name!r} holds {texts[bad]!r}, not a number; "
                                "fill in or drop that row")
            numbers, indicator = numeric_with_gaps(texts)
            parts += [np.where(np.isnan(numbers), fill[name], numbers).astype(np.float32)[:, None], indicator[:, None]]
            continue
        values = np.empty((len(rows), 1), dtype=np.float32)
        for i, text in enumerate(texts):
            if not _is_number(text):
                raise DataError(f"{path}, row {i + 2}: column {name!r} holds {text!r}, not a number; "
                                "fill in or drop that row")
            values[i, 0] = float(text)
        parts.append(values)
    return torch.from_numpy(np.concatenate(parts, axis=1) if parts else np.empty((len(rows), 0), np.float32))


def _targets(labels: np.ndarray, run: SavedRun, path: Path) -> torch.Tensor:
    """Targets in the units the run reports: class indices, or regression values as given."""
    if run.task == "regression":
        if not all(_is_number(str(value)) for value in labels.ravel()):
            raise DataError(f"{path}: regression targets must be numbers, got dtype {labels.dtype}")
        return torch.as_tensor(labels.astype(np.float32))
    names = run.class_names
    text = [str(value) for value in labels.ravel()]
    if names and not np.issubdtype(labels.dtype, np.number):
        unknown = sorted(set(text) - set(names))
        if unknown:
            raise DataError(f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of this run; "
                            f"its classes are {', '.join(names)}")
        return torch.tensor([names.index(value) for value in text], dtype=torch.int64)
    num_classes = int(run.description["num_outputs"])
    bad = [value for value in text if not _is_class_index(value, num_classes)]
    if bad:
        raise DataError(f"{path}: labels must be class indices 0..{num_classes - 1}, got {bad[0]!r}")
    return torch.tensor([int(float(value)) for value in text], dtype=torch.int64)


def _prepare(x: torch.Tensor, run: SavedRun, path: Path) -> torch.Tensor:
    """Reshape flat samples to the model's input shape and apply the run's normalization."""
    shape = run.input_shape
    if tuple(x.shape[1:]) != shape:
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise DataError(f"{path}: inputs have shape {tuple(x.shape[1:])} per sample, the model expects "
                            f"{shape} ({math.prod(shape)} values); give inputs shaped like the training data")
        x = x.reshape(len(x), *shape)
    if run.description.get("normalization"):
        x = apply_normalization(x, run.description["normalization"])
    return x


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_class_index(text: str, num_classes: int) -> bool:
    return _is_number(text) and float(text) == int(float(text)) and 0 <= int(float(text)) < num_classes

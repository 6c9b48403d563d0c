"""``trainwise export RUN_DIR --format ...``: the run's best checkpoint as verified artifacts, the
figures printed as a table and kept in export.json."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainwise.errors import DataError, DataNotFoundError


def export_command(args: argparse.Namespace) -> int:
    from trainwise.cli.inference import cli_checkpoint_errors
    from trainwise.export import export

    data = _read_data(Path(args.data)) if args.data else None
    with cli_checkpoint_errors():
        result = export(args.run_dir, format=args.format, out=args.out, atol=args.atol, rtol=args.rtol, data=data,
                        checkpoint=args.checkpoint, model_spec=args.model, max_int8_drop=args.max_int8_drop)
    print(result.table())
    for name in result.skipped:
        print(f"skipped {name}: {result.skipped[name]}")
    print(f"figures: {result.json_path}")
    return 0


def _read_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unnormalized) inputs ``x`` (token ids, integers, for a language model) and targets ``y``
    from an .npz file."""
    if not path.is_file() or path.suffix.lower() != ".npz":
        raise DataNotFoundError(f"--data must be an existing .npz file with arrays x and y, got {str(path)!r}")
    with np.load(path, allow_pickle=False) as arrays:
        if "x" not in arrays or "y" not in arrays:
            raise DataError(f"{path} needs arrays 'x' and 'y', found: {', '.join(arrays.files) or 'none'}")
        x = arrays["x"]
        return (x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)), arrays["y"]

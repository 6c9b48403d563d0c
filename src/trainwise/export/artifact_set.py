"""An export's artifacts as one set, and what tells a folder whose artifacts do not form one.

An export writes and verifies every artifact under a temporary name first (``Staging``); only once
all of them passed are they renamed into place, one ``os.replace`` each, and ``export.json`` is
written last. A kill while they are written or verified leaves the folder as it was (plus
temporary files that ``trainwise runs gc`` removes once their writer is gone); a kill in the
moment between two renames, or a one-format export beside older artifacts, leaves a folder
holding artifacts of two checkpoints. So each artifact, and each row of ``export.json``, records
the identity of what it was exported from: for a run, the checkpoint's name, step and SHA-256 from
the checkpoints' ``manifest.json``; for a module, the SHA-256 of its weights. ``mixed_note`` reads
those identities back (as data: TorchScript and ``.pt2`` archives are read as zip files, nothing
in them is run) and says, in one line, which files come from which checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import nn

from trainwise.errors import ExportError
from trainwise.export.table import JSON_NAME
from trainwise.export.verify import temporary_path

IDENTITY_KEYS = ("checkpoint", "checkpoint_step", "checkpoint_sha256", "weights_sha256")
META_NAME = "trainwise.json"  # the metadata every artifact carries (ONNX metadata_props, zip extra file, header)
ARTIFACT_SUFFIXES = (".onnx", ".pt", ".pt2", ".safetensors")


class Staging:
    """Temporary files for an export's artifacts, renamed into place together by ``commit``.

    Used as a context manager: whatever was not committed (an error, a failed check) is removed
    on exit, with the ``.data`` sidecar an ONNX exporter may leave beside it.

    Example:
        >>> with Staging() as staging:
        ...     write(staging.path_for(Path("export/model.onnx")))
        ...     staging.commit()
    """

    def __init__(self) -> None:
        self.files: dict[Path, Path] = {}  # final path -> temporary path

    def path_for(self, final: Path) -> Path:
        self.files[final] = temporary_path(final)
        return self.files[final]

    def commit(self) -> None:
        """Rename every temporary file over its final name (with the permissions a plain file gets)."""
        umask = os.umask(0)
        os.umask(umask)
        for final, tmp in self.files.items():
            os.chmod(tmp, 0o666 & ~umask)  # some writers create 0600 files
            os.replace(tmp, final)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for tmp in self.files.values():
            for leftover in (tmp, Path(f"{tmp}.data")):
                leftover.unlink(missing_ok=True)


def checkpoint_identity(run_folder: Path, name: str, before: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``checkpoint_step`` and ``checkpoint_sha256`` of ``checkpoints/<name>`` from its manifest entry,
    which must be the one read before the checkpoint was loaded (``before``): a training run that
    replaced the file meanwhile would leave the identity of other weights in the artifacts."""
    from trainwise.checkpoint import read_manifest

    entry = read_manifest(run_folder / "checkpoints").get(name)
    if entry is None or entry != before.get(name):
        raise ExportError(f"{run_folder / 'checkpoints' / name} changed while the export read it (a training run "
                          "saving into this folder?); nothing was written; export again once it is done")
    return {"checkpoint_step": entry["step"], "checkpoint_sha256": entry["sha256"]}


def weights_identity(module: nn.Module) -> dict[str, Any]:
    """``weights_sha256``: the SHA-256 of a module's state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        flat = (tensor.int_repr() if tensor.is_quantized else tensor).detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return {"weights_sha256": digest.hexdigest()}


def identity_of(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: meta[key] for key in IDENTITY_KEYS if key in meta}


def read_identity(path: Path) -> Optional[dict[str, Any]]:
    """The identity an artifact records (``{}`` for one written before identities were recorded),
    or None when the file cannot be read. Nothing in the file is run."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from trainwise.export.safetensors_format import read_metadata

            return identity_of(read_metadata(path))
        if suffix in (".pt", ".pt2"):
            with zipfile.ZipFile(path) as archive:
                names = [name for name in archive.namelist() if name.endswith(f"/extra/{META_NAME}")]
                text = archive.read(names[0]).decode("utf-8") if names else ""
        elif suffix == ".onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            text = next((entry.value for entry in model.metadata_props if entry.key == META_NAME), "")
        else:
            return None
        meta = json.loads(text) if text else {}
    except ImportError:  # no onnx installed: that artifact cannot be told
        return None
    except Exception:  # a damaged file of any kind (zip, protobuf, header, JSON) tells nothing
        return None
    return identity_of(meta) if isinstance(meta, dict) else None


def describe(identity: dict[str, Any]) -> str:
    """``best.pt at step 252 (sha256 30903ee82be8)``, ``weights sha256 ...``, or that none is recorded."""
    if identity.get("checkpoint_sha256"):
        return (f"{identity.get('checkpoint', 'a checkpoint')} at step {identity.get('checkpoint_step')} "
                f"(sha256 {str(identity['checkpoint_sha256'])[:12]})")
    if identity.get("weights_sha256"):
        return f"weights sha256 {str(identity['weights_sha256'])[:12]}"
    return "a checkpoint not recorded (an older trainwise)"


def mixed_note(folder: Path, also: Iterable[Path] = ()) -> Optional[str]:
    """One line naming the files of an export folder that come from different checkpoints, or None.

    The files looked at are those ``export.json`` lists, ``export.json`` itself (its figures are
    of the export that wrote it last) and ``also`` (an artifact being loaded); a folder of files
    none of which records its checkpoint cannot be told apart, and gives None.
    """
    names = {path.name for path in also}
    listed: Optional[dict[str, Any]] = None
    try:
        listed = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    groups: dict[str, tuple[str, list[str]]] = {}  # by the SHA-256 recorded: one checkpoint may have two names
    recorded, json_identity = False, None
    if isinstance(listed, dict):
        formats = listed.get("formats")
        rows = formats.values() if isinstance(formats, dict) else []
        names |= {Path(str(row.get("path", ""))).name for row in rows if isinstance(row, dict)}
        source = listed.get("source")
        json_identity = identity_of(source) if isinstance(source, dict) else {}
    for name in sorted(name for name in names if name.endswith(ARTIFACT_SUFFIXES)):
        identity = read_identity(folder / name) if (folder / name).is_file() else None
        if identity is not None:
            recorded = recorded or bool(identity)
            _group(groups, identity).append(name)
    if json_identity is not None:
        recorded = recorded or bool(json_identity)
        _group(groups, json_identity).append(JSON_NAME)
    if len(groups) < 2 or not recorded:
        return None
    parts = "; ".join(f"{', '.join(members)} from {what}" for what, members in groups.values())
    return (f"{folder} holds artifacts of different checkpoints: {parts}; export again with --format all (or "
            "delete the stale files) to make them one set")


def _group(groups: dict[str, tuple[str, list[str]]], identity: dict[str, Any]) -> list[str]:
    key = str(identity.get("checkpoint_sha256") or identity.get("weights_sha256") or "")
    return groups.setdefault(key, (describe(identity), []))[1]

"""Checkpoint files: atomic write, checksum manifest, safe load, retention.

A checkpoint folder holds checkpoint files and one ``manifest.json`` listing each file
with its SHA-256, size, step, epoch, format version and time of saving. The rules:

- A file is written under a hidden temporary name in the same folder, flushed, fsynced
  and renamed over its final name; the folder is fsynced; the manifest is written last,
  the same way. An entry is taken out of the manifest before its file is replaced, so a
  ``kill -9`` at any instant leaves a manifest that is valid JSON and whose every entry
  matches its file byte for byte. A file renamed into place but never recorded is
  "unverified"; resuming skips it and says so. A save commits its step file, its links and
  retention together: one manifest write, or two when it replaces recorded links (the
  first already records the new step file, see ``_commit``).
- Files are never modified in place, so ``last.pt`` and ``best.pt`` are hard links to a
  step-numbered file and cost no extra disk or time.
- Loading checks size and SHA-256 first, then uses ``torch.load(weights_only=True)`` and
  never falls back to unpickling arbitrary objects.
- One process writes a folder (rank 0).

Example:
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = folder / step_checkpoint_name(120)
    >>> sha256 = save_checkpoint({"model": {"w": torch.ones(2)}}, path, step=120, epoch=3,
    ...                          links=["last.pt"], keep_last=3)
    >>> find_resumable(folder)
    (PosixPath('.../step-00000120.pt'), [])
    >>> load_checkpoint(folder / "last.pt")["format_version"]
    1
"""

from __future__ import annotations

from trainwise.checkpoint._files import (
    CheckpointVerificationError,
    find_resumable,
    link_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoint_name,
)
from trainwise.checkpoint._manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    read_manifest,
    remove_stale_tmp_files,
)
from trainwise.checkpoint._retention import apply_retention
from trainwise.checkpoint._rng import capture_rng_state, restore_rng_state

__all__ = [
    "CheckpointVerificationError",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "apply_retention",
    "capture_rng_state",
    "find_resumable",
    "link_checkpoint",
    "load_checkpoint",
    "read_manifest",
    "remove_stale_tmp_files",
    "restore_rng_state",
    "save_checkpoint",
    "step_checkpoint_name",
]

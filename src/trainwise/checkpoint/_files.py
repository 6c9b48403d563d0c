"""Saving, linking, loading, finding and pruning checkpoint files."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from trainwise.checkpoint._commit import commit
from trainwise.checkpoint._manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    TMP_SUFFIX,
    content_problem,
    entry_problem,
    link_or_copy_to_tmp,
    manifest_entry,
    read_manifest,
    remove_quietly,
    remove_stale_tmp_files,
    verify_file,
    write_error,
    write_tmp,
)
from trainwise.checkpoint._retention import (
    STEP_NAME_PATTERN,
    check_keep_last,
    delete_unrecorded,
    doomed_files,
    step_files,
)
from trainwise.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

LAST_NAME = "last.pt"


class CheckpointVerificationError(CheckpointError):
    """A checkpoint whose size or SHA-256 does not match its manifest entry (or that has none).

    The message names what to do both on the command line and in Python, since the loader cannot
    tell who called it; a command that can say more precisely (``trainwise evaluate`` naming the
    newest checkpoint that verifies) reads ``path`` and ``problem`` and says it itself.

    Attributes:
        path: the checkpoint file that failed.
        problem: what is wrong with it, e.g. ``"truncated: 1000 bytes on disk, ..."``.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(
            f"checkpoint {path} failed verification: {problem}; use another checkpoint of the "
            "run that verifies (command line: --checkpoint FILE for evaluate, predict, export and "
            "generate; train --resume auto takes the newest one that verifies; Python: "
            "find_resumable(folder) finds it); only for a file you trust, Python's "
            "load_checkpoint(path, verify=False) skips the check"
        )


def step_checkpoint_name(step: int) -> str:
    """Return the file name of the checkpoint taken at optimizer step ``step``.

    Example:
        >>> step_checkpoint_name(120)
        'step-00000120.pt'
    """
    _check_count("step", step)
    return f"step-{step:08d}.pt"


def save_checkpoint(
    state: dict[str, Any],
    path: str | Path,
    *,
    step: int,
    epoch: int,
    fsync: bool = True,
    links: Sequence[str] = (),
    keep_last: int | None = None,
    protect: Iterable[Path] = (),
) -> str:
    """Write ``state`` to ``path`` atomically and record it in the folder's manifest.

    The state is serialized once into memory, hashed, written to a temporary file in the
    same folder, flushed, fsynced and renamed over ``path``; the manifest is written last.
    ``"format_version"`` is added to the saved dict (``state`` itself is not changed).
    ``links`` and retention (``keep_last``) are committed with the file: one manifest write
    when no recorded name is replaced, two when one is (it is dropped from the manifest
    before its bytes change), instead of one or two writes per link and one for retention.

    Args:
        state: Tensors, numbers, strings, lists and dicts; anything else is refused,
            because ``torch.load(weights_only=True)`` could never load it back.
        path: The checkpoint file; its folder is created when missing.
        step: Optimizer steps taken when the state was captured.
        epoch: Epochs completed when the state was captured.
        fsync: Force the bytes to disk before renaming; turn off only where durability
            across a power cut does not matter (a kill of the process is safe either way).
        links: Plain file names (``"last.pt"``, ``"best.pt"``) made hard links of ``path``
            (copies where the file system has none), as ``link_checkpoint`` would.
        keep_last: Apply retention in the same commit, as ``apply_retention`` would; the
            new file is never deleted. None: no retention.
        protect: Paths retention keeps (the checkpoint resumed from).

    Returns:
        The SHA-256 of the written file, as hex.

    Example:
        >>> path = folder / step_checkpoint_name(trainer_step)
        >>> save_checkpoint({"model": model.state_dict()}, path, step=trainer_step, epoch=2)
        '5f0c...'

    Raises:
        CheckpointError: The state holds an object that cannot be loaded safely, or the
            file cannot be written (disk full, read-only folder, permissions). The
            folder then still holds a valid manifest listing only complete files, and
            no temporary file. A file that replaced an older one of the same name when
            the manifest could not be written is left unrecorded.
    """
    path = Path(path)
    if isinstance(links, (str, bytes)):
        raise ConfigError(f"checkpoint links must be a list of file names, e.g. ['last.pt'], got {links!r}")
    links = tuple(links)
    for name in (path.name, *links):
        _check_file_name(name)
    if path.name in links or len(set(links)) != len(links):
        raise ConfigError(f"checkpoint links must be distinct names other than {path.name!r}, got {list(links)}")
    _check_count("step", step)
    _check_count("epoch", epoch)
    if keep_last is not None:
        check_keep_last(keep_last)
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint state must be a dict, got {type(state).__name__}")
    payload = {**state, "format_version": FORMAT_VERSION}
    _check_weights_only_loadable(payload, "state", set())
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with buffer.getbuffer() as data:
        sha256 = hashlib.sha256(data).hexdigest()
        entry = manifest_entry(sha256, data.nbytes, step=step, epoch=epoch)
        try:
            _write_and_commit(path, data, entry, links, keep_last, protect, fsync=fsync)
        except OSError as error:
            raise write_error(path, error) from error
    logger.debug("saved %s (step %d, %d bytes, sha256 %s)", path, step, entry["size"], sha256)
    return sha256


def _write_and_commit(path: Path, data: memoryview, entry: dict[str, Any], links: Sequence[str],
                      keep_last: int | None, protect: Iterable[Path], *, fsync: bool) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp_files(folder)
    checkpoints = read_manifest(folder)
    doomed = [] if keep_last is None else doomed_files(
        folder, keep_last, checkpoints, protect=protect, adding=path.name)
    tmps = {path.name: write_tmp(path, data, fsync=fsync)}
    try:
        for name in links:  # links of the temporary file: the same bytes, renamed in after it
            tmps[name] = link_or_copy_to_tmp(tmps[path.name], folder / name)
    except OSError:
        for tmp in tmps.values():
            remove_quietly(tmp)
        raise
    commit(folder, tmps, {name: dict(entry) for name in tmps}, checkpoints, doomed=doomed, fsync=fsync)
    delete_unrecorded(doomed, note=" (the new checkpoint is saved and recorded)")


def link_checkpoint(src: Path, dst_name: str) -> None:
    """Make ``dst_name`` in the folder of ``src`` hold the same bytes, without rewriting them.

    A hard link to a temporary name is renamed over ``dst_name`` (a copy is made where
    the file system has no hard links), and recorded in the manifest with the entry of
    ``src``. Safe because checkpoint files are never modified in place.

    Args:
        src: A checkpoint recorded in its folder's manifest.
        dst_name: A plain file name such as ``"last.pt"`` or ``"best.pt"``.

    Raises:
        CheckpointError: ``src`` is not recorded, or the link cannot be written.

    Example:
        >>> link_checkpoint(folder / "step-00000120.pt", "best.pt")
    """
    src = Path(src)
    _check_file_name(dst_name)
    dst = src.parent / dst_name
    checkpoints = read_manifest(src.parent)
    if src.name not in checkpoints:
        raise CheckpointError(
            f"cannot link {dst_name} to {src}: it is not recorded in "
            f"{src.parent / MANIFEST_NAME}; save it with save_checkpoint first"
        )
    try:
        tmp = link_or_copy_to_tmp(src, dst)
        commit(src.parent, {dst_name: tmp}, {dst_name: dict(checkpoints[src.name])}, checkpoints, fsync=True)
    except OSError as error:
        raise write_error(dst, error) from error


def load_checkpoint(
    path: str | Path, *, map_location: Any = "cpu", verify: bool = True
) -> dict[str, Any]:
    """Verify a checkpoint against its manifest and load it with ``weights_only=True``.

    Args:
        path: The checkpoint file.
        map_location: Passed to ``torch.load``.
        verify: Check size and SHA-256 against the manifest first. Turn off only for a
            file you trust that is not recorded in a manifest.

    Returns:
        The saved dict, ``"format_version"`` included.

    Raises:
        CheckpointVerificationError: The file is unrecorded, truncated or corrupted.
        CheckpointError: The file is missing, holds Python objects that could run code
            when unpickled, or was written by a newer trainwise.

    Example:
        >>> state = load_checkpoint(folder / "last.pt")
        >>> model.load_state_dict(state["model"])
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {error.strerror or error}; check the path"
        ) from error
    if verify:
        entry = read_manifest(path.parent).get(path.name)
        problem = entry_problem(entry) or content_problem(
            entry, len(data), hashlib.sha256(data).hexdigest()
        )
        if problem is not None:
            raise CheckpointVerificationError(path, problem)
    state = _load_weights_only(data, path, map_location)
    version = state.get("format_version") if isinstance(state, dict) else None
    if not isinstance(version, int):
        raise CheckpointError(
            f"{path} is not a trainwise checkpoint: expected a dict with an int "
            f"'format_version', got {type(state).__name__} without one"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than the {FORMAT_VERSION} this "
            "trainwise reads; upgrade trainwise to load it"
        )
    return state


def find_resumable(folder: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """Find the newest checkpoint in ``folder`` whose checksum verifies.

    Candidates are the step-numbered files and ``last.pt``, newest first: highest step
    in the manifest, then latest ``saved_at``, and a step-numbered file before
    ``last.pt`` that holds the same step. An unrecorded ``last.pt`` counts as newest.

    Returns:
        The checkpoint to resume from (``None`` when no candidate verifies), and the
        ``(path, reason)`` of every newer candidate that was skipped: truncated,
        checksum mismatch, not in the manifest, missing or unreadable.

    Example:
        >>> path, skipped = find_resumable("runs/digits/checkpoints")
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None, []
    checkpoints = read_manifest(folder)
    skipped: list[tuple[Path, str]] = []
    for path in _resume_candidates(folder, checkpoints):
        reason = verify_file(path, checkpoints.get(path.name))
        if reason is None:
            return path, skipped
        skipped.append((path, reason))  # reported by the caller, once
    return None, skipped


_LOADABLE_LEAF_TYPES = frozenset(
    {str, bytes, bytearray, int, float, complex, bool, type(None), torch.Tensor,
     torch.nn.Parameter, torch.Size, torch.dtype, torch.device, torch.layout}
)  # fmt: skip
_LOADABLE_MAPPING_TYPES = frozenset({dict, OrderedDict, Counter})
_LOADABLE_SEQUENCE_TYPES = frozenset({list, tuple, set})


def _check_weights_only_loadable(value: Any, where: str, seen: set[int]) -> None:
    """Refuse, at save time, any object ``torch.load(weights_only=True)`` would refuse."""
    kind = type(value)
    if kind in _LOADABLE_LEAF_TYPES or id(value) in seen:
        return
    if kind in _LOADABLE_MAPPING_TYPES:
        seen.add(id(value))
        for key, item in value.items():
            _check_weights_only_loadable(key, f"a key of {where}", seen)
            _check_weights_only_loadable(item, f"{where}[{key!r}]", seen)
    elif kind in _LOADABLE_SEQUENCE_TYPES:
        seen.add(id(value))
        for index, item in enumerate(value):
            _check_weights_only_loadable(item, f"{where}[{index}]", seen)
    elif kind not in _registered_safe_types():
        raise CheckpointError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}, which "
            "torch.load(weights_only=True) refuses, so the checkpoint could never be loaded; "
            "store tensors, numbers, strings, lists or dicts instead (float(x) for a NumPy "
            "scalar, torch.from_numpy(a) for an array)"
        )


def _registered_safe_types() -> set[Any]:
    """Types the user allowlisted with ``torch.serialization.add_safe_globals``."""
    registered = getattr(torch.serialization, "get_safe_globals", list)()
    return {item[0] if isinstance(item, tuple) else item for item in registered}


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an int >= 0, got {value!r}")


def _check_file_name(name: str) -> None:
    reserved = name in ("", ".", "..", MANIFEST_NAME) or name.endswith(TMP_SUFFIX)
    if reserved or "/" in name or os.sep in name:
        raise ConfigError(
            f"checkpoint file name must be a plain file name other than {MANIFEST_NAME!r} "
            f"and not ending in {TMP_SUFFIX!r}, got {name!r}"
        )


def _resume_candidates(folder: Path, checkpoints: dict[str, dict[str, Any]]) -> list[Path]:
    """Step-numbered files and ``last.pt``, on disk or in the manifest, newest first."""
    names = {path.name for _, path in step_files(folder)} | {
        name for name in checkpoints if STEP_NAME_PATTERN.fullmatch(name)
    }
    if (folder / LAST_NAME).is_file() or LAST_NAME in checkpoints:
        names.add(LAST_NAME)

    def newness(name: str) -> tuple[float, str, bool]:
        entry = checkpoints.get(name)
        is_step_file = name != LAST_NAME
        if entry is not None:
            return float(entry["step"]), entry["saved_at"], is_step_file
        match = STEP_NAME_PATTERN.fullmatch(name)
        return (float(match.group(1)) if match else math.inf), "", is_step_file

    return [folder / name for name in sorted(names, key=newness, reverse=True)]


def _load_weights_only(data: bytes, path: Path, map_location: Any) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it contains Python objects that could run code when "
            f"unpickled ({_unpickler_reason(error)}); trainwise never falls back to unsafe "
            "loading. Re-save it holding only tensors, numbers, strings, lists and dicts"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint ({error}); it is truncated or corrupted"
        ) from error


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The sentence of torch's message that names what was refused, without its advice."""
    cause = error.__cause__ or error.__context__
    text = str(cause) if cause is not None else str(error).rpartition("WeightsUnpickler error:")[2]
    sentence = text.strip().split("\n")[0].split(". ")[0].rstrip(".")
    return sentence or "the weights-only unpickler refused it"

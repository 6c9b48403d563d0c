"""One commit: files renamed into place and recorded in the manifest, with the fewest writes.

A save puts a step-numbered file and its links (``last.pt``, ``best.pt``) into place and drops the
files retention deletes. Each name is one atomic rename; the manifest is one more file, so the two
can never change together. The order below keeps the manifest's promise at every instant a kill
can land: every entry matches its file byte for byte. A name the manifest does not describe yet
is renamed in first (nothing can disagree with it); a name it describes is first dropped from the
manifest, then replaced, then recorded again. So a save that replaces ``last.pt`` (and
``best.pt``) writes the manifest twice. The first write never loses the only record of some bytes:
when a dropped name's bytes are recorded nowhere else (``best.pt`` whose step file retention has
deleted), it records the new step file, so while the links are unrecorded a resume finds the
newest checkpoint and its best epoch's checkpoint under their step names.

fsyncs of a save (``fsync=True``): the step file; each manifest's temporary file and the folder
after its rename; the folder after the links' renames; the folder before a manifest that records
a file renamed since the last one. A first save costs 4; a save that replaces ``last.pt`` 6, and 7
when it moves ``best.pt`` away from bytes recorded nowhere else (it was 11 and 16 with one
manifest write per link, two per replaced link, and one for retention).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainwise.checkpoint._manifest import fsync_folder, remove_quietly, write_manifest


def commit(
    folder: Path,
    tmps: dict[str, Path],
    entries: dict[str, dict[str, Any]],
    checkpoints: dict[str, Any],
    *,
    doomed: Iterable[Path] = (),
    fsync: bool,
) -> None:
    """Rename each ``tmps[name]`` over ``folder / name``, record ``entries[name]``, drop ``doomed``.

    ``tmps`` is in order: a link's temporary file comes after the file it links to. ``doomed``
    files are dropped from the manifest in its last write; the caller deletes them after it (a
    kill before that leaves unrecorded files, which retention deletes first).

    On OSError nothing recorded is left describing other bytes: before the first manifest write
    the new names renamed in are removed again; after it, the manifest that lists only complete
    files stays; a name it dropped is recorded again when its old bytes are still there (and
    the disk allows), and left unrecorded when they were replaced. No temporary file is left.
    The OSError is raised again.
    """
    replaced = [name for name in tmps if name in checkpoints]
    fresh = [name for name in tmps if name not in checkpoints]
    doomed = [path for path in doomed if path.name not in tmps]
    existed = {name: os.path.lexists(folder / name) for name in fresh}
    done: list[str] = []
    manifest = checkpoints
    try:
        for name in fresh:
            _rename(tmps[name], folder / name)
            done.append(name)
        if replaced:
            dropped = {k: v for k, v in checkpoints.items() if k not in replaced}
            if _only_record_lost(checkpoints, dropped):  # then the new files stand in for it
                dropped.update((name, entries[name]) for name in fresh)
                fsync_folder(folder, fsync=fsync)  # the files it records are on disk before it is
            write_manifest(folder, dropped, fsync=fsync)
            manifest = dropped
            for name in replaced:
                _rename(tmps[name], folder / name)
                done.append(name)
        fsync_folder(folder, fsync=fsync)
        final = {k: v for k, v in {**manifest, **entries}.items() if k not in {p.name for p in doomed}}
        write_manifest(folder, final, fsync=fsync)
    except OSError:
        _undo(folder, tmps, entries, manifest, checkpoints, done, existed, fsync=fsync)
        raise


def _only_record_lost(checkpoints: dict[str, Any], kept: dict[str, Any]) -> bool:
    """Whether dropping the entries ``kept`` lacks loses the only record of some bytes.

    A dropped ``last.pt`` is the newest step file's bytes, still recorded under its step name, so
    the step file it is being moved to can stay unrecorded until the last write. A dropped
    ``best.pt`` whose step file retention has deleted is recorded nowhere else: then the first
    write records the new step file, so a run resumed from the window finds its best epoch's
    checkpoint under its step name (a resume repairs best.pt from it).
    """
    still = {(entry["sha256"], entry["size"]) for entry in kept.values()}
    return any((entry["sha256"], entry["size"]) not in still
               for name, entry in checkpoints.items() if name not in kept)


def _rename(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    if os.path.lexists(tmp):  # tmp and path were links to one file: rename() did nothing
        remove_quietly(tmp)


def _undo(
    folder: Path,
    tmps: dict[str, Path],
    entries: dict[str, dict[str, Any]],
    manifest: dict[str, Any],
    checkpoints: dict[str, Any],
    done: list[str],
    existed: dict[str, bool],
    *,
    fsync: bool,
) -> None:
    for tmp in tmps.values():
        remove_quietly(tmp)
    if manifest is checkpoints:  # the manifest was never rewritten: take the new names out again
        for name in done:
            if not existed.get(name, True):
                remove_quietly(folder / name)
        return
    # A replaced name whose rename did not happen still holds its old bytes: record them again.
    back = {name: checkpoints[name] for name in checkpoints if name in tmps and name not in done}
    if back:
        with contextlib.suppress(OSError):
            write_manifest(folder, {**manifest, **back}, fsync=fsync)

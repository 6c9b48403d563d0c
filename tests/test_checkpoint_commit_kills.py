"""A save commits its step file, ``last.pt``, ``best.pt`` and retention in one or two manifest writes
(checkpoint/_commit.py). A real SIGKILL lands before each os call of such a save, in a forked writer
(a real process, a real signal, no cleanup); after each, the folder must hold a manifest whose every
entry matches its file, a checkpoint to resume from, and, for that checkpoint's best step, a best
checkpoint that verifies (``best.pt`` itself, or the step file a resume relinks it to). The number of
fsyncs each kind of save costs is checked too: it is what the commit is for."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from trainwise.checkpoint import (
    MANIFEST_NAME,
    find_resumable,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
    step_checkpoint_name,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
OS_CALLS = ("fsync", "replace", "link", "unlink")


def state(step: int, best_step: int) -> dict[str, Any]:
    return {"weights": torch.full((64,), float(step)), "run_state": {"step": step, "best_step": best_step}}


def save(folder: Path, step: int, best_step: int, keep_last: int = 1) -> None:
    """A Checkpointer's save: the step file, last.pt, best.pt when this step is the best, retention."""
    links = ("last.pt", "best.pt") if best_step == step else ("last.pt",)
    save_checkpoint(state(step, best_step), folder / step_checkpoint_name(step), step=step, epoch=step,
                    links=links, keep_last=keep_last)


def counting(calls: list[str], before: Callable[[int], None]) -> Callable[[], None]:
    """Patch the os calls a save makes to run ``before(n)`` ahead of the n-th; return the undo."""
    originals = {name: getattr(os, name) for name in OS_CALLS}

    def wrap(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            before(len(calls))
            return originals[name](*args, **kwargs)
        return call

    for name in OS_CALLS:
        setattr(os, name, wrap(name))
    return lambda: [setattr(os, name, function) for name, function in originals.items()]


def calls_of(folder: Path, step: int, best_step: int, keep_last: int) -> list[str]:
    calls: list[str] = []
    undo = counting(calls, lambda n: None)
    try:
        save(folder, step, best_step, keep_last)
    finally:
        undo()
    return calls


def killed_at(folder: Path, point: int, step: int, best_step: int, keep_last: int) -> None:
    """Fork a writer that SIGKILLs itself just before its ``point``-th os call of the save."""
    pid = os.fork()
    if pid == 0:  # the writer: never returns
        try:
            counting([], lambda n: os.kill(os.getpid(), signal.SIGKILL) if n == point else None)
            save(folder, step, best_step, keep_last)
        finally:
            os._exit(3)  # not reached when the kill landed
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def assert_consistent(folder: Path) -> tuple[int, int] | None:
    """What no kill may break; returns (resumed step, its best step), None when nothing is saved yet."""
    checkpoints = read_manifest(folder)
    for name, entry in checkpoints.items():
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"]), name
    resumable, _ = find_resumable(folder)
    if resumable is None:
        assert not any(name.startswith("step-") for name in checkpoints)
        return None
    run_state = load_checkpoint(resumable)["run_state"]
    best_step = run_state["best_step"]
    try:  # a resume reads best.pt, or relinks it to the best step's file when best.pt is unrecorded
        best = load_checkpoint(folder / "best.pt")["run_state"]
        assert best["step"] == best_step
    except Exception:  # noqa: BLE001 - then the best step's own file must verify
        best = load_checkpoint(folder / step_checkpoint_name(best_step))["run_state"]
        assert best["step"] == best_step
    return run_state["step"], best_step


# Each case: the saves before (step, best step), then the save that is killed, keep_last, and the
# fsyncs that save costs.
CASES = {
    "first save": ([], (1, 1), 1, 4),
    "last.pt moves": ([(1, 1), (2, 1)], (3, 1), 3, 6),
    "best.pt moves, old best still kept": ([(1, 1), (2, 2)], (3, 3), 3, 6),
    "best.pt moves, old best's step file gone": ([(1, 1), (2, 1), (3, 1)], (4, 4), 1, 7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_kill_before_any_os_call_of_a_save_leaves_last_and_best_verified(tmp_path: Path, case: str) -> None:
    before, (step, best_step), keep_last, fsyncs = CASES[case]
    template = tmp_path / "template"
    template.mkdir()
    for earlier, earlier_best in before:
        save(template, earlier, earlier_best, keep_last)
    dry = tmp_path / "dry"
    shutil.copytree(template, dry)
    calls = calls_of(dry, step, best_step, keep_last)
    assert calls.count("fsync") == fsyncs
    assert assert_consistent(dry) == (step, best_step)
    outcomes = set()
    for point in range(1, len(calls) + 1):
        folder = tmp_path / f"killed-{point}"
        shutil.copytree(template, folder)
        killed_at(folder, point, step, best_step, keep_last)
        outcomes.add(assert_consistent(folder))
        save(folder, step + 1, step + 1, keep_last)  # the next save cleans up and records everything
        after = read_manifest(folder)
        assert after["last.pt"] == after["best.pt"] == after[step_checkpoint_name(step + 1)]
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".trainwise-tmp")]
        assert assert_consistent(folder) == (step + 1, step + 1)
    previous = (before[-1][0], before[-1][1]) if before else None
    assert outcomes <= {previous, (step, best_step)}  # the old state or the new one, never a mix
    assert (step, best_step) in outcomes and len(outcomes) == 2  # the kills did land on both sides


def test_a_save_that_moves_best_records_its_step_file_before_best_pt_is_dropped(tmp_path: Path) -> None:
    """The hard case by itself: the old best's step file is gone (keep_last=1), so best.pt's old bytes
    are recorded only as best.pt; the first manifest write must record the new step file."""
    for step, best_step in ((1, 1), (2, 1), (3, 1)):
        save(tmp_path, step, best_step)
    manifests: list[dict[str, Any]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if Path(dst).name == MANIFEST_NAME:
            manifests.append(json.loads(Path(dst).read_text())["checkpoints"])

    os.replace = replace
    try:
        save(tmp_path, 4, 4)
    finally:
        os.replace = real_replace
    first, last = manifests
    assert sorted(first) == ["step-00000003.pt", "step-00000004.pt"]  # links dropped, the new file in
    assert sorted(last) == ["best.pt", "last.pt", "step-00000004.pt"]  # retention dropped step 3
    assert last["best.pt"] == last["last.pt"] == last["step-00000004.pt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"links": "last.pt"}, r"checkpoint links must be a list of file names, e\.g\. \['last\.pt'\], got 'last\.pt'"),
        ({"links": ["last.pt", "last.pt"]}, r"links must be distinct names other than 'step-00000001\.pt'"),
        ({"links": ["step-00000001.pt"]}, r"links must be distinct names other than 'step-00000001\.pt'"),
        ({"links": ["manifest.json"]}, r"plain file name other than 'manifest\.json'"),
        ({"keep_last": -1}, r"keep_last must be an int >= 0, got -1"),
    ],
)
def test_bad_links_or_keep_last_are_refused_before_anything_is_written(tmp_path: Path, kwargs: dict[str, Any],
                                                                     message: str) -> None:
    from trainwise.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        save_checkpoint(state(1, 1), tmp_path / step_checkpoint_name(1), step=1, epoch=1, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_retention_delete_that_fails_says_so_and_leaves_the_new_checkpoint_recorded(tmp_path: Path) -> None:
    from trainwise.errors import CheckpointError

    save(tmp_path, 1, 1)
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == step_checkpoint_name(1):
            raise PermissionError(13, "Permission denied")
        real_unlink(path, *args, **kwargs)

    os.unlink = unlink
    try:
        message = (r"cannot delete old checkpoint .*step-00000001\.pt: Permission denied; check the folder's "
                   r"permissions \(the new checkpoint is saved")
        with pytest.raises(CheckpointError, match=message):
            save(tmp_path, 2, 1)
    finally:
        os.unlink = real_unlink
    assert assert_consistent(tmp_path) == (2, 1)
    assert sorted(read_manifest(tmp_path)) == ["best.pt", "last.pt", "step-00000002.pt"]

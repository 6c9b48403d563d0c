"""Tests for trainwise.checkpoint: atomic writes, manifest, safe load, retention, RNG state."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trainwise.checkpoint import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    apply_retention,
    capture_rng_state,
    find_resumable,
    link_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    step_checkpoint_name,
)
from trainwise.errors import CheckpointError, ConfigError

RESUME_CANDIDATE = re.compile(r"step-\d{8}\.pt|last\.pt")


# --- helpers ------------------------------------------------------------------------------


def tiny_cnn_and_adam() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        take_step(model, optimizer)
    return model, optimizer


def take_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    inputs = torch.linspace(-1.0, 1.0, 4 * 36).reshape(4, 1, 6, 6)
    optimizer.zero_grad(set_to_none=True)
    model(inputs).square().mean().backward()
    optimizer.step()


def assert_same(actual: Any, expected: Any) -> None:
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected):
            assert_same(actual_item, expected_item)
    else:
        assert actual == expected


def state_at(step: int) -> dict[str, Any]:
    return {"step": step, "weights": torch.full((8,), float(step))}


def save_steps(folder: Path, steps: list[int]) -> list[Path]:
    paths = [folder / step_checkpoint_name(step) for step in steps]
    for step, path in zip(steps, paths):
        save_checkpoint(state_at(step), path, step=step, epoch=step // 10)
    return paths


def manifest_of(folder: Path) -> dict[str, dict[str, Any]]:
    return json.loads((folder / MANIFEST_NAME).read_text())["checkpoints"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder``, hidden temporary files included, with its bytes."""
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def assert_folder_is_consistent(folder: Path) -> int | None:
    """Check what no crash may break; return the step a resume would continue from."""
    manifest_path = folder / MANIFEST_NAME
    checkpoints = manifest_of(folder) if manifest_path.exists() else {}
    for name, entry in checkpoints.items():
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    resumable, skipped = find_resumable(folder)
    assert all("not in manifest.json" in reason for _, reason in skipped), skipped
    candidate_steps = [e["step"] for n, e in checkpoints.items() if RESUME_CANDIDATE.fullmatch(n)]
    if resumable is None:
        assert candidate_steps == []
        return None
    state = load_checkpoint(resumable)
    assert state["step"] == checkpoints[resumable.name]["step"] == max(candidate_steps)
    return state["step"]


# --- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("fsync", [True, False])
def test_round_trip_keeps_every_value_and_records_the_file(tmp_path: Path, fsync: bool) -> None:
    model, optimizer = tiny_cnn_and_adam()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": capture_rng_state(),
        "data_generator": torch.Generator().manual_seed(7).get_state(),
        "trainer": {
            "step": 7,
            "epoch": 2,
            "history": [0.5, 0.25],
            "name": "digits",
            "nested": {"flags": [True, None, "x"], "lr": 1e-3, "shape": (2, 3)},
        },
    }
    path = tmp_path / "checkpoints" / step_checkpoint_name(7)

    sha256 = save_checkpoint(state, path, step=7, epoch=2, fsync=fsync)
    loaded = load_checkpoint(path)

    assert loaded.pop("format_version") == FORMAT_VERSION == 1
    assert "format_version" not in state
    assert_same(loaded, state)
    data = path.read_bytes()
    assert sha256 == hashlib.sha256(data).hexdigest()
    entry = manifest_of(path.parent)[path.name]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", entry.pop("saved_at"))
    assert entry == {
        "sha256": sha256, "size": len(data), "step": 7, "epoch": 2, "format_version": 1
    }
    assert sorted(p.name for p in path.parent.iterdir()) == [MANIFEST_NAME, path.name]


def test_restored_model_and_optimizer_continue_bit_for_bit(tmp_path: Path) -> None:
    model, optimizer = tiny_cnn_and_adam()
    path = tmp_path / "last.pt"
    save_checkpoint(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path, step=2, epoch=0
    )
    torch.manual_seed(99)
    resumed = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    loaded = load_checkpoint(path)
    resumed.load_state_dict(loaded["model"])
    resumed_optimizer.load_state_dict(loaded["optimizer"])

    take_step(model, optimizer)
    take_step(resumed, resumed_optimizer)

    for original, restored in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(original, restored)


def test_step_checkpoint_name_pads_to_eight_digits() -> None:
    assert step_checkpoint_name(120) == "step-00000120.pt"
    assert step_checkpoint_name(0) == "step-00000000.pt"


# --- damaged, unrecorded and foreign files ------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_one_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (truncate, r"truncated: \d+ bytes on disk, manifest.json says \d+"),
        (flip_one_bit, r"checksum mismatch: sha256 [0-9a-f]{16}\.\.\. on disk"),
    ],
)
def test_damaged_checkpoint_is_refused_and_resume_falls_back(
    tmp_path: Path, damage: Callable[[Path], None], reason: str
) -> None:
    paths = save_steps(tmp_path, [1, 2, 3])
    link_checkpoint(paths[2], "last.pt")
    damage(paths[2])  # last.pt is a hard link to the same, now damaged, bytes

    with pytest.raises(CheckpointError, match=rf"step-00000003\.pt failed verification: {reason}"):
        load_checkpoint(paths[2])
    with pytest.raises(CheckpointError, match=rf"last\.pt failed verification: {reason}"):
        load_checkpoint(tmp_path / "last.pt")
    resumable, skipped = find_resumable(tmp_path)

    assert resumable == paths[1]
    assert [path for path, _ in skipped] == [paths[2], tmp_path / "last.pt"]
    assert all(re.match(reason, text) for _, text in skipped)
    assert load_checkpoint(resumable)["step"] == 2


def test_unrecorded_and_missing_checkpoints_are_skipped_with_a_reason(tmp_path: Path) -> None:
    paths = save_steps(tmp_path, [1, 2, 3])
    paths[2].unlink()
    stray = tmp_path / step_checkpoint_name(9)
    shutil.copyfile(paths[0], stray)
    shutil.copyfile(paths[0], tmp_path / "last.pt")

    with pytest.raises(CheckpointError, match=r"not in manifest\.json, so it cannot be verified"):
        load_checkpoint(stray)
    resumable, skipped = find_resumable(tmp_path)

    assert load_checkpoint(stray, verify=False)["step"] == 1
    assert resumable == paths[1]
    assert [(path.name, text.split(",")[0]) for path, text in skipped] == [
        ("last.pt", "not in manifest.json"),
        ("step-00000009.pt", "not in manifest.json"),
        ("step-00000003.pt", "listed in manifest.json but missing on disk"),
    ]


@pytest.mark.parametrize("folder_exists", [True, False])
def test_find_resumable_in_a_folder_without_checkpoints(
    tmp_path: Path, folder_exists: bool
) -> None:
    folder = tmp_path / "checkpoints"
    if folder_exists:
        folder.mkdir()
        (folder / "best.pt").write_bytes(b"not a resume candidate")
    assert find_resumable(folder) == (None, [])


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    [path] = save_steps(tmp_path, [1])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["checkpoints"][path.name]["format_version"] = FORMAT_VERSION + 1
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    newer = tmp_path / "newer.pt"
    torch.save({"format_version": FORMAT_VERSION + 1}, newer)

    with pytest.raises(CheckpointError, match=r"format_version 2 is newer than the 1 .*upgrade"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"newer\.pt has format_version 2, newer than"):
        load_checkpoint(newer, verify=False)
    resumable, skipped = find_resumable(tmp_path)
    assert resumable is None
    assert [skipped_path for skipped_path, _ in skipped] == [path]
    assert skipped[0][1].startswith("format_version 2 is newer than the 1")


def test_unverified_damaged_file_is_still_refused(tmp_path: Path) -> None:
    [path] = save_steps(tmp_path, [1])
    truncate(path)
    with pytest.raises(CheckpointError, match=r"cannot read .*step-00000001\.pt as a torch check"):
        load_checkpoint(path, verify=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (["not", "a", "dict"], r"is not a trainwise checkpoint: expected a dict"),
        ({"model": {}}, r"is not a trainwise checkpoint: .*got dict without one"),
    ],
)
def test_file_not_written_by_save_checkpoint_is_refused(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "plain.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, verify=False)


@pytest.mark.parametrize(
    ("manifest_text", "message"),
    [
        ("{", r"is not a valid trainwise manifest \(Expecting"),
        ('{"format_version": 1}', r"is not a valid trainwise manifest \('checkpoints'\)"),
        ('{"format_version": 1, "checkpoints": {"a.pt": {}}}', r"each entry needs \['epoch'"),
        (json.dumps({"format_version": 1, "checkpoints": {"a.pt": {
            "sha256": "0" * 64, "size": 1, "step": "3", "epoch": 0, "format_version": 1,
            "saved_at": "2024-01-01T00:00:00.000000+00:00"}}}), r"the others as ints"),
        ('{"format_version": 2, "checkpoints": {}}', r"format_version 2, newer .*upgrade"),
    ],
)
def test_broken_manifest_is_reported_not_overwritten(
    tmp_path: Path, manifest_text: str, message: str
) -> None:
    (tmp_path / MANIFEST_NAME).write_text(manifest_text)
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=message):
        find_resumable(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(state_at(1), tmp_path / "step-00000001.pt", step=1, epoch=0)
    assert (tmp_path / MANIFEST_NAME).read_text() == manifest_text


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*nope\.pt: No such file"):
        load_checkpoint(tmp_path / "nope.pt")


# --- unsafe pickles -----------------------------------------------------------------------


class RunsCodeWhenUnpickled:
    """Unpickling this calls ``function(*arguments)``: the classic malicious checkpoint."""

    def __init__(self, function: Callable[..., Any], arguments: tuple[Any, ...]) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.function, self.arguments


def shell_payload(marker: Path) -> RunsCodeWhenUnpickled:
    return RunsCodeWhenUnpickled(os.system, (f"touch {marker}",))


def exec_payload(marker: Path) -> RunsCodeWhenUnpickled:
    return RunsCodeWhenUnpickled(exec, (f"open({str(marker)!r}, 'w').write('ran')",))


def serialize(value: Any, writer: str) -> bytes:
    if writer == "pickle":
        return pickle.dumps(value, protocol=2)
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
@pytest.mark.parametrize("make_payload", [shell_payload, exec_payload])
def test_checkpoint_that_runs_code_when_unpickled_is_refused(
    tmp_path: Path, writer: str, make_payload: Callable[[Path], RunsCodeWhenUnpickled]
) -> None:
    marker = tmp_path / "marker"
    payload = make_payload(marker)
    data = serialize({"format_version": 1, "step": 1, "payload": payload}, writer)
    # The payload is live: any unsafe load of these bytes runs it.
    if writer == "pickle":
        pickle.loads(data)
    else:
        torch.load(io.BytesIO(data), weights_only=False)
    assert marker.exists()
    marker.unlink()
    # Record the bytes with their true checksum, so only the unpickler can stop them.
    folder = tmp_path / "checkpoints"
    [path] = save_steps(folder, [1])
    path.write_bytes(data)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["checkpoints"][path.name].update(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert find_resumable(folder) == (path, [])

    refused = (
        r"(?s)refusing to load .*step-00000001\.pt: it contains Python objects that could run "
        r"code when unpickled .*trainwise never falls back to unsafe loading"
    )
    with pytest.raises(CheckpointError, match=refused) as raised:
        load_checkpoint(path)

    assert not marker.exists()
    assert "weights_only=False" not in str(raised.value)
    assert re.search(rf"GLOBAL \S*{payload.function.__name__}\b", str(raised.value))
    assert "add_safe_globals" not in str(raised.value)


# --- what save refuses --------------------------------------------------------------------


class RegisteredPoint:
    def __init__(self, x: int) -> None:
        self.x = x


@pytest.mark.parametrize(
    ("callbacks", "where", "type_name"),
    [
        ({"best": np.float64(0.5)}, r"state\['callbacks'\]\['best'\]", r"numpy\.float64"),
        ([1, np.zeros(2)], r"state\['callbacks'\]\[1\]", r"numpy\.ndarray"),
        ({"early": RegisteredPoint(1)}, r"state\['callbacks'\]\['early'\]", "RegisteredPoint"),
        ({np.int64(3): 1}, r"a key of state\['callbacks'\]", r"numpy\.int64"),
    ],
)
def test_save_refuses_what_weights_only_loading_would_refuse(
    tmp_path: Path, callbacks: Any, where: str, type_name: str
) -> None:
    with pytest.raises(CheckpointError, match=rf"{where} is a .*{type_name}, which torch\.load"):
        save_checkpoint({"callbacks": callbacks}, tmp_path / "last.pt", step=0, epoch=0)
    assert list(tmp_path.iterdir()) == []


def test_save_accepts_types_the_user_allowlisted(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with torch.serialization.safe_globals([RegisteredPoint]):
        save_checkpoint({"point": RegisteredPoint(4)}, path, step=0, epoch=0)
        assert load_checkpoint(path)["point"].x == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda folder: save_checkpoint({}, folder / MANIFEST_NAME, step=0, epoch=0),
         r"plain file name other than 'manifest\.json' .*, got 'manifest\.json'"),
        (lambda folder: save_checkpoint({}, folder / "a.pt", step=-1, epoch=0),
         r"step must be an int >= 0, got -1"),
        (lambda folder: save_checkpoint({}, folder / "a.pt", step=1, epoch=1.5),
         r"epoch must be an int >= 0, got 1\.5"),
        (lambda folder: save_checkpoint([1], folder / "a.pt", step=1, epoch=1),
         r"checkpoint state must be a dict, got list"),
        (lambda folder: link_checkpoint(folder / "a.pt", "sub/last.pt"),
         r"must be a plain file name .*, got 'sub/last\.pt'"),
        (lambda folder: step_checkpoint_name(-3), r"step must be an int >= 0, got -3"),
        (lambda folder: apply_retention(folder, -1), r"keep_last must be an int >= 0, got -1"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(
    tmp_path: Path, call: Callable[[Path], Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        call(tmp_path)


# --- links --------------------------------------------------------------------------------


def test_link_shares_bytes_and_manifest_entry(tmp_path: Path) -> None:
    paths = save_steps(tmp_path, [5, 6])
    link_checkpoint(paths[0], "last.pt")
    link_checkpoint(paths[1], "last.pt")  # replaces the link, not the bytes of step 5
    link_checkpoint(paths[0], "best.pt")

    checkpoints = manifest_of(tmp_path)
    assert os.path.samefile(paths[1], tmp_path / "last.pt")
    assert os.path.samefile(paths[0], tmp_path / "best.pt")
    assert checkpoints["last.pt"] == checkpoints[paths[1].name]
    assert checkpoints["best.pt"] == checkpoints[paths[0].name]
    assert [load_checkpoint(tmp_path / name)["step"] for name in ("best.pt", "last.pt")] == [5, 6]
    assert load_checkpoint(paths[0])["step"] == 5


def test_saving_over_a_linked_name_leaves_the_other_name_alone(tmp_path: Path) -> None:
    [path] = save_steps(tmp_path, [5])
    link_checkpoint(path, "last.pt")
    save_checkpoint(state_at(6), tmp_path / "last.pt", step=6, epoch=0)
    assert load_checkpoint(path)["step"] == 5
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6


def test_link_falls_back_to_a_copy_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [path] = save_steps(tmp_path, [5])

    def no_hard_links(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    link_checkpoint(path, "last.pt")

    last = tmp_path / "last.pt"
    assert not os.path.samefile(path, last)
    assert last.read_bytes() == path.read_bytes()
    assert manifest_of(tmp_path)["last.pt"] == manifest_of(tmp_path)[path.name]
    assert load_checkpoint(last)["step"] == 5


def test_link_refuses_an_unrecorded_source(tmp_path: Path) -> None:
    stray = tmp_path / "stray.pt"
    torch.save({"format_version": 1}, stray)
    with pytest.raises(CheckpointError, match=r"cannot link last\.pt to .*stray\.pt: it is not rec"):
        link_checkpoint(stray, "last.pt")
    assert not (tmp_path / "last.pt").exists()


# --- retention ----------------------------------------------------------------------------


def test_retention_keeps_recent_best_last_protected_and_foreign_files(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    outside = tmp_path / "other-run" / step_checkpoint_name(1)
    outside.parent.mkdir()
    outside.write_text("another run's checkpoint")
    foreign = ["notes.txt", "step-1.pt", "step-00000001.pt.bak", "step-0000001.pt", "model.pt"]
    for name in foreign:
        (folder / name).write_text(name)
    (folder / step_checkpoint_name(0)).symlink_to(outside)
    (folder / step_checkpoint_name(99)).mkdir()
    resumed_from = save_steps(folder, [2])[0]
    deleted: list[Path] = []

    for step in range(3, 13):
        [path] = save_steps(folder, [step])
        link_checkpoint(path, "last.pt")
        if step == 4:
            link_checkpoint(path, "best.pt")
        deleted += apply_retention(folder, keep_last=3, protect=[resumed_from])

    steps_kept = [2, 10, 11, 12]
    assert deleted == [folder / step_checkpoint_name(step) for step in range(3, 10)]
    step_files = [p for p in folder.glob("step-????????.pt") if p.is_file() and not p.is_symlink()]
    assert sorted(p.name for p in step_files) == [step_checkpoint_name(s) for s in steps_kept]
    assert sorted(manifest_of(folder)) == sorted(
        ["best.pt", "last.pt"] + [step_checkpoint_name(step) for step in steps_kept]
    )
    assert load_checkpoint(folder / "best.pt")["step"] == 4
    assert load_checkpoint(folder / "last.pt")["step"] == 12
    assert load_checkpoint(resumed_from)["step"] == 2
    assert all((folder / name).read_text() == name for name in foreign)
    assert (folder / step_checkpoint_name(0)).is_symlink()
    assert (folder / step_checkpoint_name(99)).is_dir()
    assert outside.read_text() == "another run's checkpoint"


@pytest.mark.parametrize(
    ("keep_last", "deleted_steps"), [(0, [1, 2, 3, 4]), (1, [1, 2, 3]), (4, []), (9, [])]
)
def test_retention_deletes_the_oldest_beyond_keep_last(
    tmp_path: Path, keep_last: int, deleted_steps: list[int]
) -> None:
    paths = save_steps(tmp_path, [3, 1, 4, 2])
    deleted = apply_retention(tmp_path, keep_last)
    assert deleted == [tmp_path / step_checkpoint_name(s) for s in deleted_steps]
    assert sorted(p.name for p in tmp_path.glob("step-*")) == sorted(
        p.name for p in paths if int(p.stem[5:]) not in deleted_steps
    )



def test_retention_deletes_files_left_unrecorded_by_a_crash_first(tmp_path: Path) -> None:
    paths = save_steps(tmp_path, [1, 2])
    debris = tmp_path / step_checkpoint_name(3)
    shutil.copyfile(paths[1], debris)  # renamed into place, killed before the manifest update
    assert apply_retention(tmp_path, keep_last=2) == [debris]
    assert find_resumable(tmp_path) == (paths[1], [])

# --- failed writes ------------------------------------------------------------------------


def fail_on_call(
    monkeypatch: pytest.MonkeyPatch, name: str, call_number: int, error_number: int
) -> list[tuple[Any, ...]]:
    """Make the ``call_number``-th call of ``os.<name>`` fail with ``error_number``."""
    real = getattr(os, name)
    calls: list[tuple[Any, ...]] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == call_number:
            raise OSError(error_number, os.strerror(error_number))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, failing)
    return calls


@pytest.mark.parametrize(
    ("target", "function", "call_number"),
    [
        ("new", "fsync", 1),  # the checkpoint's temporary file
        ("new", "replace", 1),  # renaming the checkpoint
        ("new", "fsync", 3),  # the manifest's temporary file
        ("new", "replace", 2),  # renaming the manifest
        ("overwrite", "fsync", 1),  # the checkpoint's temporary file
        ("overwrite", "fsync", 2),  # the manifest without the old entry
        ("overwrite", "replace", 1),  # renaming that manifest
        ("overwrite", "replace", 2),  # renaming the checkpoint: the manifest is put back
    ],
)
def test_disk_full_leaves_files_and_manifest_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, function: str, call_number: int
) -> None:
    paths = save_steps(tmp_path, [1, 2])
    link_checkpoint(paths[1], "last.pt")
    before = snapshot(tmp_path)
    path = tmp_path / (step_checkpoint_name(3) if target == "new" else "last.pt")
    calls = fail_on_call(monkeypatch, function, call_number, errno.ENOSPC)

    message = rf"cannot write checkpoint {re.escape(str(path))}: No space left on device; free disk"
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(state_at(3), path, step=3, epoch=0)

    monkeypatch.undo()
    assert len(calls) >= call_number
    assert snapshot(tmp_path) == before
    assert find_resumable(tmp_path) == (paths[1], [])


def test_disk_full_after_replacing_a_file_leaves_it_unrecorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = save_steps(tmp_path, [1, 2])
    link_checkpoint(paths[1], "last.pt")
    fail_on_call(monkeypatch, "replace", 3, errno.ENOSPC)  # the manifest with the new entry

    with pytest.raises(CheckpointError, match=r"No space left on device; free disk space"):
        save_checkpoint(state_at(3), tmp_path / "last.pt", step=3, epoch=0)

    monkeypatch.undo()
    assert sorted(manifest_of(tmp_path)) == [path.name for path in paths]
    assert assert_folder_is_consistent(tmp_path) == 2
    assert [path.name for path, _ in find_resumable(tmp_path)[1]] == ["last.pt"]


@pytest.mark.parametrize(
    ("error_number", "advice"),
    [
        (errno.ENOSPC, "free disk space"),
        (errno.EACCES, "check that the folder is writable by this user"),
        (errno.EROFS, "check that the folder is writable .* not on a read-only disk"),
        (errno.EIO, "check free disk space and the folder's permissions"),
    ],
)
def test_write_error_names_the_os_reason_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error_number: int, advice: str
) -> None:
    fail_on_call(monkeypatch, "replace", 1, error_number)
    with pytest.raises(CheckpointError, match=rf"{re.escape(os.strerror(error_number))}; {advice}"):
        save_checkpoint(state_at(1), tmp_path / "last.pt", step=1, epoch=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("depth", ["parent", "grandparent"])
def test_folder_that_is_a_file_is_reported(tmp_path: Path, depth: str) -> None:
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file, not a folder")
    folder = blocker if depth == "parent" else blocker / "run"
    with pytest.raises(CheckpointError, match=rf"check that {re.escape(str(folder))} is a folder"):
        save_checkpoint(state_at(1), folder / "last.pt", step=1, epoch=0)
    assert list(tmp_path.iterdir()) == [blocker]
    assert blocker.read_text() == "a file, not a folder"


def test_read_only_folder_is_reported(tmp_path: Path) -> None:
    paths = save_steps(tmp_path, [1])
    before = snapshot(tmp_path)
    tmp_path.chmod(0o555)
    try:
        probe = tmp_path / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("this user (root) can write to a read-only folder; see the tests above")
        with pytest.raises(CheckpointError, match=r"Permission denied; check that the folder is"):
            save_checkpoint(state_at(2), tmp_path / step_checkpoint_name(2), step=2, epoch=0)
    finally:
        tmp_path.chmod(0o755)
    assert snapshot(tmp_path) == before
    assert find_resumable(tmp_path) == (paths[0], [])


def test_save_removes_temporary_files_of_a_killed_writer(tmp_path: Path) -> None:
    save_steps(tmp_path, [1])
    stale = tmp_path / ".step-00000002.pt.999999999.trainwise-tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("not ours")
    save_steps(tmp_path, [2])
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        MANIFEST_NAME, "notes.tmp", "step-00000001.pt", "step-00000002.pt"
    ]


# --- random states ------------------------------------------------------------------------


def draw_random_numbers() -> list[Any]:
    return [random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3)]


@pytest.mark.parametrize("through_checkpoint", [False, True])
def test_restored_rng_state_reproduces_draws(tmp_path: Path, through_checkpoint: bool) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached Gaussian in both generators
    np.random.randn()
    state = capture_rng_state()
    expected = draw_random_numbers()
    if through_checkpoint:
        save_checkpoint({"rng": state}, tmp_path / "last.pt", step=0, epoch=0)
        state = load_checkpoint(tmp_path / "last.pt")["rng"]

    draw_random_numbers()  # move every generator on before restoring
    restore_rng_state(state)

    actual = draw_random_numbers()
    assert actual[:4] == expected[:4]
    assert torch.equal(actual[4], expected[4])


def test_malformed_rng_state_is_refused() -> None:
    state = capture_rng_state()
    del state["numpy"]
    with pytest.raises(CheckpointError, match=r"rng state is malformed \(KeyError: 'numpy'\)"):
        restore_rng_state(state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_rng_state_without_cuda_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    state = capture_rng_state()
    assert state["cuda"] == []
    state["cuda"] = [torch.get_rng_state()]
    with caplog.at_level(logging.WARNING, logger="trainwise.checkpoint"):
        restore_rng_state(state)
    assert "CUDA random states for 1 device(s), this machine has 0" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_is_restored_on_every_device(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"rng": capture_rng_state()}, path, step=0, epoch=0)
    expected = [torch.rand(3, device=f"cuda:{d}") for d in range(torch.cuda.device_count())]
    state = load_checkpoint(path, map_location="cuda")["rng"]  # as a trainer on a GPU loads it
    assert len(state["cuda"]) == torch.cuda.device_count()
    restore_rng_state(state)
    actual = [torch.rand(3, device=f"cuda:{d}") for d in range(torch.cuda.device_count())]
    assert all(torch.equal(a, e) for a, e in zip(actual, expected))


# --- crashes ------------------------------------------------------------------------------


class SimulatedKill(BaseException):
    """Stops the writer between two system calls, with no cleanup, like ``kill -9``."""


def run_one_training_epoch_of_saves(folder: Path) -> None:
    path = folder / step_checkpoint_name(3)
    save_checkpoint(state_at(3), path, step=3, epoch=0)
    link_checkpoint(path, "last.pt")
    link_checkpoint(path, "best.pt")
    apply_retention(folder, keep_last=1)
    save_checkpoint(state_at(4), folder / "last.pt", step=4, epoch=0)


def test_a_crash_between_any_two_system_calls_leaves_a_resumable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template"
    save_steps(template, [1, 2])
    link_checkpoint(template / step_checkpoint_name(2), "last.pt")
    link_checkpoint(template / step_checkpoint_name(1), "best.pt")
    steps_seen = set()
    for crash_point in range(1, 200):
        folder = tmp_path / f"crash-{crash_point}"
        shutil.copytree(template, folder)
        calls: list[tuple[Any, ...]] = []
        with monkeypatch.context() as patch:
            for name in ("replace", "fsync", "link", "unlink"):
                real = getattr(os, name)

                def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                    calls.append(args)
                    if len(calls) == crash_point:
                        raise SimulatedKill
                    return _real(*args, **kwargs)

                patch.setattr(os, name, counted)
            try:
                run_one_training_epoch_of_saves(folder)
            except SimulatedKill:
                pass
            else:
                break
        steps_seen.add(assert_folder_is_consistent(folder))
    assert crash_point > 20  # the sequence really was cut at every point
    assert steps_seen == {2, 3, 4}


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from trainwise.checkpoint import (apply_retention, find_resumable, link_checkpoint,
                                      load_checkpoint, save_checkpoint, step_checkpoint_name)
    folder = Path(sys.argv[1])
    resumed_from, _ = find_resumable(folder)
    step = load_checkpoint(resumed_from)["step"] if resumed_from else 0
    print("ready", flush=True)
    while True:
        step += 1
        path = folder / step_checkpoint_name(step)
        state = {"step": step, "weights": torch.full((256, 256), float(step))}
        save_checkpoint(state, path, step=step, epoch=step // 10)
        link_checkpoint(path, "last.pt")
        if step % 3 == 0:
            link_checkpoint(path, "best.pt")
        apply_retention(folder, keep_last=2, protect=[resumed_from] if resumed_from else [])
        print("saved", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_resumable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    draw = random.Random(0)
    delays = [0.0] + [draw.uniform(0.0, 0.3) for _ in range(3)]
    resumed_steps: list[int | None] = []
    for round_number, delay in enumerate(delays):
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(folder)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        if round_number == len(delays) - 1:
            assert writer.stdout.readline() == "saved\n"  # at least one save completes
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        resumed_steps.append(assert_folder_is_consistent(folder))
    steps = [step or 0 for step in resumed_steps]
    assert steps == sorted(steps) and steps[-1] > 0


def test_linking_a_name_to_the_file_it_already_names_leaves_no_tmp(tmp_path):
    from trainwise.checkpoint import link_checkpoint, load_checkpoint, save_checkpoint

    path = tmp_path / "step-00000001.pt"
    save_checkpoint({"x": torch.ones(3)}, path, step=1, epoch=0)
    link_checkpoint(path, "last.pt")
    link_checkpoint(path, "last.pt")  # e.g. a resume adopting the file last.pt already names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "manifest.json", "step-00000001.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["x"], torch.ones(3))

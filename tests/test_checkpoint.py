"""Tests for trainwise.checkpoint: atomic writes, manifest, safe load, retention, RNG state."""

from __future__ import annotations

import errno
import hashlib
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
    assert type(actual) is type(expected) or isinstance(expected, dict), (actual, expected)
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
    assert entry == {"sha256": sha256, "size": len(data), "step": 7, "epoch": 2, "format_version": 1}
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
def test_find_resumable_in_a_folder_without_checkpoints(tmp_path: Path, folder_exists: bool) -> None:
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

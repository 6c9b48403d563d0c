"""Damaged files get one clear line and lose nothing: a garbage or newer-schema run index, a
truncated run.json, a binary or non-UTF-8 config, a file that is not the checkpoint it claims to
be, a checkpoint of another model. Property-based tests (hypothesis) for the config parser, the
``--where`` grammar and the checkpoint manifest: any input parses or raises one ``ConfigError``/
``CheckpointError`` line, never anything else."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainwise import Trainer
from trainwise.checkpoint import load_checkpoint
from trainwise.checkpoint._manifest import read_manifest
from trainwise.cli import main
from trainwise.config.schema import RunConfig, load_config
from trainwise.errors import CheckpointError, ConfigError, TrainwiseError
from trainwise.models import build_model
from trainwise.runs.filter import Filter, FilterError, parse_filter


def fit(run_dir: Path, name: str, hidden: int = 8):
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(4,), num_outputs=3, hidden=[hidden])
    x, y = torch.randn(48, 4), torch.randint(0, 3, (48,))
    Trainer(model, optimizer="sgd", lr=0.05, epochs=1, batch_size=16, progress=False, report=False, name=name,
            run_dir=run_dir).fit((x, y), (x, y))


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("made") / "runs"
    fit(root / "alpha", "alpha")
    fit(root / "beta", "beta", hidden=16)
    return root


@pytest.fixture
def runs_root(made_runs, tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(made_runs, root)
    return root


def listed(root: Path, capsys) -> tuple[int, list[dict], str]:
    capsys.readouterr()
    code = main(["runs", "list", "--root", str(root), "--format", "json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else []), out.err


@pytest.mark.parametrize("damage", ["garbage", "newer_schema", "no_table"])
def test_a_damaged_index_is_rebuilt_from_the_folders_with_a_note(runs_root, capsys, caplog, damage):
    index = runs_root / "runs.sqlite"
    for side in ("runs.sqlite-wal", "runs.sqlite-shm"):
        (runs_root / side).unlink(missing_ok=True)
    if damage == "garbage":
        index.write_bytes(b"this is not a database\x00\xff" * 100)
    elif damage == "newer_schema":
        index.unlink()
        conn = sqlite3.connect(index)
        conn.execute("CREATE TABLE runs (uuid TEXT, payload BLOB)")
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
        conn.close()
    else:
        index.unlink()
        sqlite3.connect(index).execute("PRAGMA user_version = 1").close()
    before = index.read_bytes()
    code, runs, _ = listed(runs_root, capsys)
    assert code == 0 and sorted(run["name"] for run in runs) == ["alpha", "beta"]
    notes = [r.getMessage() for r in caplog.records if "was set aside as" in r.getMessage()]
    assert len(notes) == 1 and "rebuilt from the 2 run folders" in notes[0]
    (kept,) = runs_root.glob("runs.sqlite.damaged-*[0-9]")
    assert kept.read_bytes() == before  # nothing lost: the damaged file is kept as it was
    code, runs, _ = listed(runs_root, capsys)  # the rebuilt index is used as is
    assert code == 0 and len(runs) == 2 and len(list(runs_root.glob("runs.sqlite.damaged-*[0-9]"))) == 1


def test_a_run_writing_into_a_newer_index_warns_and_does_not_touch_it(runs_root, caplog):
    from trainwise.runfolder.index import record_run

    index = runs_root / "runs.sqlite"
    conn = sqlite3.connect(index)
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    assert record_run(runs_root / "alpha", {"id": "x", "status": "running"}, config={}, summary=None) is False
    assert "written by a newer trainwise" in caplog.text
    assert sqlite3.connect(index).execute("PRAGMA user_version").fetchone()[0] == 9


def test_a_truncated_run_json_lists_the_run_as_damaged(runs_root, capsys):
    run_json = runs_root / "beta" / "run.json"
    run_json.write_bytes(run_json.read_bytes()[:40])
    assert main(["runs", "reindex", "--root", str(runs_root)]) == 0
    code, runs, _ = listed(runs_root, capsys)
    assert code == 0
    status = {run["name"]: run["status"] for run in runs}
    assert status == {"alpha": "completed", "beta": "damaged"}
    assert run_json.stat().st_size == 40  # listed, not repaired behind the user's back


@pytest.mark.parametrize("content", [b"\x80\x04\x95binary pickle\x00\x00", b"\xff\xfe\x00d\x00a\x00t\x00a",
                                     "data:\n  dataset: d\u00e9j\u00e0\n".encode("latin-1"),
                                     b"data: [unclosed\n  model: {\n"])
def test_a_binary_non_utf8_or_broken_config_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and str(path) in err, err


def test_a_file_that_is_not_a_checkpoint_and_a_checkpoint_of_another_model(runs_root, tmp_path, capsys):
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"PK\x03\x04 not really a zip" * 20)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(fake, verify=False)
    assert "\n" not in str(caught.value)
    # beta's weights (16 hidden units) in alpha's folder (8): refused, alpha's files untouched
    alpha = runs_root / "alpha" / "checkpoints"
    shutil.copy(runs_root / "beta" / "checkpoints" / "best.pt", tmp_path / "other.pt")
    data = tmp_path / "d.npz"
    import numpy as np

    np.savez(data, x=np.zeros((4, 4), np.float32), y=np.zeros(4, np.int64))
    manifest = (alpha / "manifest.json").read_text()
    shutil.copy(tmp_path / "other.pt", alpha / "other.pt")
    assert main(["evaluate", str(runs_root / "alpha"), "--data", str(data), "--checkpoint", "other.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "other.pt" in err, err
    assert (alpha / "manifest.json").read_text() == manifest


# ------------------------------------------------------------------------------------- properties
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
sections = st.dictionaries(st.sampled_from(["data", "model", "optimizer", "train", "schedule", "name", "seed",
                                            "dat", "extra"]), yaml_values, max_size=4)


def one_line(error: BaseException) -> bool:
    return "\n" not in str(error) and len(str(error)) < 2000


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_text_as_a_config_parses_or_is_one_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        assert isinstance(load_config(path), RunConfig)
    except ConfigError as error:
        assert one_line(error), str(error)


@SETTINGS
@given(raw=sections)
def test_any_mapping_as_a_config_parses_or_is_one_config_error(tmp_path, raw):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        assert isinstance(load_config(path), RunConfig)
    except ConfigError as error:
        assert one_line(error), str(error)


where_tokens = st.sampled_from(["optimizer.name", "test_accuracy", "status", "and", "or", "not", "(", ")", "=", "!=",
                                "<", ">=", "~", "'sgd'", '"a b"', "0.97", "-1e3", "true", "null", "crashed", "'",
                                "\\", "@", "é"])


@SETTINGS
@given(text=st.one_of(st.lists(where_tokens, max_size=12).map(" ".join), st.text(max_size=60)))
def test_any_where_expression_parses_or_is_one_filter_error(text):
    try:
        parsed = parse_filter(text)
    except FilterError as error:  # the message, then the expression with a caret under the column
        lines = str(error).splitlines()
        assert lines[0].startswith("--where: ") and len(lines) <= 3, str(error)
        return
    assert isinstance(parsed, Filter)


manifest_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                             max_size=4), max_leaves=10)
entries = st.fixed_dictionaries({"sha256": st.text(max_size=64), "size": st.integers(), "step": st.integers(),
                                 "epoch": st.integers(), "format_version": st.integers(-2, 3),
                                 "saved_at": st.text(max_size=30)})
manifests = st.one_of(manifest_values,
                      st.fixed_dictionaries({"format_version": st.one_of(st.integers(-1, 3), manifest_values),
                                             "checkpoints": st.one_of(st.dictionaries(st.text(max_size=12), entries,
                                                                                      max_size=3), manifest_values)}))


@SETTINGS
@given(manifest=manifests, garbage=st.binary(max_size=40))
def test_any_manifest_reads_or_is_one_checkpoint_error(tmp_path, manifest, garbage):
    folder = tmp_path / "checkpoints"
    folder.mkdir(exist_ok=True)
    for text in (json.dumps(manifest).encode(), garbage, json.dumps(manifest).encode()[:-3]):
        (folder / "manifest.json").write_bytes(text)
        try:
            checkpoints = read_manifest(folder)
        except CheckpointError as error:
            assert one_line(error), str(error)
            continue
        assert isinstance(checkpoints, dict)


def test_a_deeply_nested_manifest_or_config_is_one_line(tmp_path):
    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError):
        read_manifest(tmp_path)
    (tmp_path / "c.yaml").write_text("a: " + "[" * 100_000)
    with pytest.raises(TrainwiseError):
        load_config(tmp_path / "c.yaml")

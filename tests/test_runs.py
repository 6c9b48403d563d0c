"""run.json, model.json and the run index written by Trainer.fit, and `trainwise runs` read back
(in-process CLI calls on real run folders and a real SQLite index)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainwise import Trainer
from trainwise.cli import main
from trainwise.runfolder.record import STALE_SECONDS, git_info, process_start_time
from trainwise.runs.store import reconcile

EVIL = "<script>alert(1)</script>"


def fit(run_dir: Path, *, name: str, optimizer: str = "sgd", epochs: int = 2, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    return Trainer(model, optimizer=optimizer, lr=0.05, epochs=epochs, batch_size=16, progress=False, report=False,
                   name=name, run_dir=run_dir, **kwargs).fit((x, y), (x, y))


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    fit(root / "evil", name=EVIL, optimizer="sgd", epochs=2)
    fit(root / "b", name="b", optimizer="adamw", epochs=3, seed=1)
    fit(root / "tune" / "study" / "trial-3", name="trial", optimizer="adam", epochs=4, seed=2)
    return root


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, root: Path, *args: str) -> list[dict]:
    code, out, err = cli(capsys, "runs", "list", "--root", str(root), "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_run_json_and_model_json(runs_root: Path) -> None:
    record = json.loads((runs_root / "b" / "run.json").read_text())
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", record["id"])
    assert record["name"] == "b" and record["status"] == "completed"
    assert record["pid"] == os.getpid() and record["pid_start"] == process_start_time(os.getpid())
    assert record["host"] == socket.gethostname()
    assert record["started"] <= record["ended"] == record["heartbeat"]
    assert record["command"][0] == sys.executable
    assert record["environment"]["torch"] == torch.__version__ and record["environment"]["device"] == "cpu"
    model = json.loads((runs_root / "b" / "model.json").read_text())
    assert model["parameters"] == model["trainable"] == 4 * 8 + 8 + 8 * 3 + 3
    assert [(layer["name"], layer["type"], layer["parameters"]) for layer in model["layers"]] == [
        ("0", "Linear", 40), ("1", "ReLU", 0), ("2", "Linear", 27)]
    assert not list(runs_root.glob("**/.*.tmp"))


def test_nested_runs_share_the_index_of_the_runs_folder(runs_root: Path) -> None:
    rows = sqlite3.connect(runs_root / "runs.sqlite").execute("SELECT folder, status FROM runs").fetchall()
    assert sorted(rows) == [("b", "completed"), ("evil", "completed"), ("tune/study/trial-3", "completed")]
    assert sqlite3.connect(runs_root / "runs.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_sorts_and_formats(runs_root: Path, capsys) -> None:
    every = listed(capsys, runs_root)
    assert [run["name"] for run in every] == ["trial", "b", EVIL]  # newest first
    assert listed(capsys, runs_root, "--where", "optimizer.name = 'adamw' or train.epochs >= 4",
                  "--sort", "train.epochs")[0]["name"] == "b"
    by_accuracy = listed(capsys, runs_root, "--sort", "-best_val_accuracy")
    values = [run["summary"]["best_val_accuracy"] for run in by_accuracy]
    assert values == sorted(values, reverse=True)
    assert [r["name"] for r in listed(capsys, runs_root, "--limit", "1")] == ["trial"]
    code, out, _ = cli(capsys, "runs", "list", "--root", str(runs_root), "--format", "csv", "--columns", "optimizer.name")
    lines = out.splitlines()
    assert lines[0].startswith("id,name,status,started,duration,optimizer.name")
    assert len(lines) == 4 and ",adam," in lines[1]
    code, out, _ = cli(capsys, "runs", "list", "--root", str(runs_root))
    assert code == 0 and EVIL in out and "3 of 3 runs" in out


def test_list_errors_are_one_line_with_exit_2(runs_root: Path, capsys) -> None:
    code, _, err = cli(capsys, "runs", "list", "--root", str(runs_root), "--where", "optimzer.name = sgd")
    assert code == 2 and "did you mean 'optimizer.name'" in err and err.startswith("error: ")
    code, _, err = cli(capsys, "runs", "list", "--root", str(runs_root), "--sort", "-best_val_acuracy")
    assert code == 2 and "did you mean 'best_val_accuracy'" in err
    code, _, err = cli(capsys, "runs", "list", "--root", str(runs_root / "nowhere"))
    assert code == 2 and "no run index" in err


def test_a_run_is_an_id_a_prefix_a_name_or_a_folder(runs_root: Path, capsys) -> None:
    run_id = json.loads((runs_root / "b" / "run.json").read_text())["id"]
    for spec in (run_id, run_id[:-2], "b", str(runs_root / "b")):
        code, out, err = cli(capsys, "runs", "show", "--root", str(runs_root), spec)
        assert code == 0, err
        assert json.loads(out)["id"] == run_id
    code, _, err = cli(capsys, "runs", "show", "--root", str(runs_root), run_id[:4])
    assert code == 2 and "matches 3 runs" in err and run_id in err and "longer id prefix" in err
    code, _, err = cli(capsys, "runs", "show", "--root", str(runs_root), "trail")
    assert code == 2 and "did you mean 'trial'" in err


def test_rm_moves_to_the_trash_and_gc_empties_it(runs_root: Path, capsys) -> None:
    code, out, _ = cli(capsys, "runs", "rm", "--root", str(runs_root), "b")
    assert code == 0 and not (runs_root / "b").exists()
    trashed = list((runs_root / ".trash").iterdir())
    assert len(trashed) == 1 and (trashed[0] / "summary.json").is_file()
    assert [r["name"] for r in listed(capsys, runs_root)] == ["trial", EVIL]
    (runs_root / "evil" / ".leftover.tmp").write_text("half")
    code, out, _ = cli(capsys, "runs", "gc", "--root", str(runs_root))
    assert "emptied 1 from the trash, deleted 1 temporary file" in out
    assert not (runs_root / ".trash").exists() and not (runs_root / "evil" / ".leftover.tmp").exists()
    code, _, _ = cli(capsys, "runs", "rm", "--root", str(runs_root), "--force", "trial")
    assert code == 0 and not (runs_root / "tune" / "study" / "trial-3").exists()


def test_a_folder_deleted_by_hand_is_noticed_and_gc_forgets_it(runs_root: Path, capsys) -> None:
    shutil.rmtree(runs_root / "b")
    statuses = {r["name"]: r["status"] for r in listed(capsys, runs_root)}
    assert statuses == {"trial": "completed", "b": "missing", EVIL: "completed"}
    code, out, _ = cli(capsys, "runs", "list", "--root", str(runs_root))
    assert "1 run folder(s) are gone" in out
    code, out, _ = cli(capsys, "runs", "gc", "--root", str(runs_root))
    assert "forgot 1 run(s)" in out
    assert {r["name"] for r in listed(capsys, runs_root)} == {"trial", EVIL}


def test_reindex_rebuilds_a_deleted_index(runs_root: Path, capsys) -> None:
    before = listed(capsys, runs_root)
    for path in runs_root.glob("runs.sqlite*"):
        path.unlink()
    code, out, _ = cli(capsys, "runs", "reindex", "--root", str(runs_root))
    assert code == 0 and "indexed 3 run(s)" in out
    after = listed(capsys, runs_root)
    assert [(r["id"], r["status"], r["summary"]) for r in after] == [(r["id"], r["status"], r["summary"]) for r in before]
    assert after[0]["config"]["optimizer.name"] == "adam"


def test_pruned_runs_are_shown_as_pruned(runs_root: Path, capsys) -> None:
    folder = runs_root / "b"
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "status": "pruned", "pruned_at_epoch": 2}))
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "status": "pruned"}))
    cli(capsys, "runs", "reindex", "--root", str(runs_root))
    assert [r["name"] for r in listed(capsys, runs_root, "--where", "status = pruned")] == ["b"]


def test_the_runs_root_is_found_from_env_and_cwd(runs_root: Path, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(runs_root / "tune" / "study")  # the nearest folder up holding runs.sqlite
    assert len(listed(capsys, runs_root)) == 3
    code, out, _ = cli(capsys, "runs", "list", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 3
    other = tmp_path / "elsewhere"
    fit(other / "x" / "y", name="far")  # no "runs" folder: the index sits beside the run folder
    assert (other / "x" / "runs.sqlite").is_file()
    monkeypatch.setenv("TRAINWISE_RUNS", str(other / "x"))
    code, out, _ = cli(capsys, "runs", "list", "--format", "json")
    assert [r["name"] for r in json.loads(out)] == ["far"]
    fit(other / "x" / "deeper" / "z", name="under-env")  # inside $TRAINWISE_RUNS: indexed there
    code, out, _ = cli(capsys, "runs", "list", "--format", "json")
    assert {r["name"] for r in json.loads(out)} == {"far", "under-env"}


def test_an_index_failure_warns_and_training_goes_on(tmp_path: Path, caplog) -> None:
    (tmp_path / "runs" / "runs.sqlite").mkdir(parents=True)  # a folder where the database should be
    result = fit(tmp_path / "runs" / "a", name="a")
    assert result.status == "completed"
    assert json.loads((tmp_path / "runs" / "a" / "run.json").read_text())["status"] == "completed"
    assert "could not update the run index" in caplog.text and "runs reindex" in caplog.text


def test_git_commit_dirty_flag_and_diff(tmp_path: Path, monkeypatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["init", "-q"], ["add", "train.py"], ["commit", "-qm", "first"]):
        if command[0] == "add":
            (repo / "train.py").write_text("print(1)\n")
        subprocess.run(["git", *command], cwd=repo, env=env, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "train.py").write_text("print(2)\n")
    monkeypatch.chdir(repo)
    fit(repo / "runs" / "a", name="a")
    record = json.loads((repo / "runs" / "a" / "run.json").read_text())
    assert record["git"]["commit"] == commit and record["git"]["dirty"] is True
    assert "+print(2)" in (repo / "runs" / "a" / "git.diff").read_text()
    monkeypatch.chdir(tmp_path)  # no repository here
    assert git_info() is None
    fit(tmp_path / "runs" / "b", name="b")
    assert json.loads((tmp_path / "runs" / "b" / "run.json").read_text())["git"] is None


def test_status_is_reconciled_honestly() -> None:
    here, now = socket.gethostname(), time.time()
    me, started = os.getpid(), process_start_time(os.getpid())
    assert reconcile("running", host=here, pid=me, pid_start=started, heartbeat=now) == "running"
    assert reconcile("running", host=here, pid=me, pid_start=(started or 0) + 1, heartbeat=now) == "crashed"  # reused
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert reconcile("running", host=here, pid=dead.pid, pid_start=None, heartbeat=now) == "crashed"
    assert reconcile("running", host="elsewhere", pid=1, pid_start=None, heartbeat=now - 5) == "running"
    assert reconcile("running", host="elsewhere", pid=1, pid_start=None,
                     heartbeat=now - STALE_SECONDS - 1) == "crashed"
    assert reconcile("running", host="elsewhere", pid=1, pid_start=None, heartbeat=None) == "crashed"
    assert reconcile("completed", host="elsewhere", pid=1, pid_start=None, heartbeat=None) == "completed"


def test_runs_list_imports_no_torch(runs_root: Path) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "trainwise", "runs", "list", "--root",
                           str(runs_root)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line]
    assert "trainwise.runs.store" in imported and not [m for m in imported if m.split(".")[0] == "torch"]
    assert EVIL in done.stdout and "3 of 3 runs" in done.stdout


def test_a_second_fit_continues_the_same_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    trainer = Trainer(torch.nn.Linear(4, 3), optimizer="sgd", lr=0.05, epochs=1, batch_size=16, progress=False,
                      report=False, name="twice", run_dir=tmp_path / "runs" / "t")
    trainer.fit((x, y), (x, y))
    first = json.loads((tmp_path / "runs" / "t" / "run.json").read_text())
    trainer.fit((x, y), (x, y))
    second = json.loads((tmp_path / "runs" / "t" / "run.json").read_text())
    assert second["id"] == first["id"] and second["starts"] == 2 and second["started"] == first["started"]
    assert second["status"] == "completed" and second["ended"] >= first["ended"]
    rows = sqlite3.connect(tmp_path / "runs" / "runs.sqlite").execute("SELECT id, summary FROM runs").fetchall()
    assert len(rows) == 1 and json.loads(rows[0][1])["epochs_run"] == 2
    assert not [t for t in __import__("threading").enumerate() if t.name == "trainwise-heartbeat"]


def test_a_stray_index_further_up_does_not_capture_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    fit(tmp_path / "a", name="stray")  # no runs/ folder above: indexed beside it, in tmp_path
    assert (tmp_path / "runs.sqlite").is_file()
    fit(tmp_path / "proj" / "runs" / "b", name="b")
    assert (tmp_path / "proj" / "runs" / "runs.sqlite").is_file()
    assert [r["name"] for r in listed(capsys, tmp_path)] == ["stray"]
    monkeypatch.chdir(tmp_path / "proj")  # the project's runs/ wins over the index further up
    code, out, _ = cli(capsys, "runs", "list", "--format", "json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["b"]

"""SIGKILL while trainwise writes what a person keeps: an export's set of artifacts, a report's PNGs
and a text run's end-of-run figures. Real processes kill themselves with a real SIGKILL at a chosen
point (a patched function), and the folder is then checked as someone finding it would check it:
the artifacts of an export are one set or say that they are not, a good PNG is never lost, the
temporary files go with ``runs gc`` (never a live writer's), and a resumed GPT run's summary
equals the uninterrupted run's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_in_process
from test_cli import DIGITS, trainwise

from trainwise.checkpoint import read_manifest
from trainwise.export import pipeline

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = Path(__file__).resolve().parents[1]
FAST = ("torchscript", "pt2", "safetensors")  # "all" in these tests: ONNX export takes seconds per file
PATCH_FAST = f"from trainwise.export import pipeline\npipeline.FORMATS = {FAST!r}\n"
GPT = ["train", str(ROOT / "examples" / "gpt.yaml"), "model.layers=1", "model.width=32", "data.block_size=32",
       "data.batch_size=16", "train.max_steps=40", "train.checkpoint.every_n_steps=10", "optimizer.lr=0.002",
       "train.report=false"]


def run_script(body: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    """``body`` in a fresh interpreter (a real process to kill), trainwise imported from the source tree."""
    path = cwd / "script.py"
    path.write_text("import os, signal, sys\n" + textwrap.dedent(body))
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin",
           "XDG_CACHE_HOME": str(cache), "HOME": str(cache)}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def snapshot(folder: Path) -> dict[str, bytes]:
    """The folder's files a person sees (temporary files are hidden)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.is_file() and not path.name.startswith(".")}


def hidden(folder: Path) -> list[str]:
    """Temporary files (the run folder's ``.lock`` is not one)."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(".") and path.name != ".lock")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A digits MLP run of two epochs: checkpoints step-00000021.pt (step 21) and last.pt (step 42)."""
    work = tmp_path_factory.mktemp("kills")
    proc = trainwise("train", DIGITS, "train.epochs=2", "model.hidden=[16]", "train.report=false", "--run-dir",
                     "runs/r", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work / "runs"


@pytest.fixture
def run(trained: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private, indexed copy of the run, with a full export (the fast formats) of its step-21 checkpoint."""
    root = Path(shutil.copytree(trained, tmp_path / "runs"))
    assert cli_in_process("runs", "reindex", "--root", str(root), cwd=tmp_path).returncode == 0
    monkeypatch.setattr(pipeline, "FORMATS", FAST)
    pipeline.export(root / "r", format="all", checkpoint="step-00000021.pt")
    return root / "r"


def entry(run: Path, name: str) -> tuple[int, str]:
    found = read_manifest(run / "checkpoints")[name]
    return found["step"], found["sha256"]


def export_killed(run: Path, kill: str) -> subprocess.CompletedProcess:
    """An export of last.pt over the step-21 set, in a process that SIGKILLs itself where ``kill`` says."""
    body = PATCH_FAST + textwrap.dedent(kill) + "\npipeline.export('r', format='all', checkpoint='last.pt')\n"
    return run_script(body + "sys.exit(3)  # not reached: the kill landed\n", run.parent, run.parent)


def test_a_kill_while_the_artifacts_are_written_leaves_the_set_whole_and_gc_removes_its_temporary_files(run):
    folder = run / "export"
    before = snapshot(folder)
    assert sorted(before) == ["export.json", "model.pt", "model.pt2", "model.safetensors"]
    done = export_killed(run, """
        writer, loader = pipeline.WRITERS["pt2"]
        def write_then_die(*args):
            writer(*args)
            os.kill(os.getpid(), signal.SIGKILL)  # pt2 written, torchscript already verified
        pipeline.WRITERS["pt2"] = (write_then_die, loader)
        """)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert snapshot(folder) == before  # every artifact and export.json as they were: nothing renamed yet
    leftovers = hidden(folder)
    assert {".model.tmp-{}.pt", ".model.tmp-{}.pt2"} <= {re.sub(r"tmp-\d+", "tmp-{}", name) for name in leftovers}
    live = folder / f".model.tmp-{os.getpid()}.onnx"  # an export of this (live) process being written
    live.write_bytes(b"half")
    proc = cli_in_process("runs", "gc", "--root", str(run.parent), cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    assert f"deleted {len(leftovers)} temporary file(s)" in proc.stdout
    assert hidden(folder) == [live.name] and snapshot(folder) == before


def test_a_kill_between_the_renames_is_told_by_predict_and_by_export(run, tmp_path, monkeypatch):
    folder = run / "export"
    old_step, old_sha = entry(run, "step-00000021.pt")
    new_step, new_sha = entry(run, "last.pt")
    old_json = (folder / "export.json").read_bytes()
    done = export_killed(run, f"""
        replace, renamed = os.replace, []
        def replace_or_die(src, dst):
            if os.path.dirname(os.path.abspath(dst)) == {str(folder)!r}:
                if renamed:
                    os.kill(os.getpid(), signal.SIGKILL)  # one artifact renamed into place, the others not
                renamed.append(dst)
            return replace(src, dst)
        os.replace = replace_or_die
        """)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (folder / "export.json").read_bytes() == old_json  # written last: not reached
    from sklearn.datasets import load_digits

    np.savez(tmp_path / "inputs.npz", x=load_digits().data[:20])
    proc = trainwise("predict", str(folder / "model.safetensors"), str(tmp_path / "inputs.npz"), "--out",
                     str(tmp_path / "preds.npz"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert (f"holds artifacts of different checkpoints: model.pt from last.pt at step {new_step} "
            f"(sha256 {new_sha[:12]}); ") in warnings[0]
    assert f"model.pt2, model.safetensors, export.json from step-00000021.pt at step {old_step} " \
           f"(sha256 {old_sha[:12]})" in warnings[0]

    from trainwise.export.artifact_set import mixed_note, read_identity  # here: the test fails above on old code

    new = {"checkpoint": "last.pt", "checkpoint_step": new_step, "checkpoint_sha256": new_sha}
    old = {"checkpoint": "step-00000021.pt", "checkpoint_step": old_step, "checkpoint_sha256": old_sha}
    identities = {name: read_identity(folder / name) for name in ("model.pt", "model.pt2", "model.safetensors")}
    assert identities == {"model.pt": new, "model.pt2": old, "model.safetensors": old}

    # One format exported again beside the others: the export says which files are stale.
    proc = trainwise("export", str(run), "--format", "safetensors", "--checkpoint", "last.pt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"model.pt2 from step-00000021.pt at step {old_step} " in warnings[0], proc.stderr
    # The whole set again: one checkpoint everywhere, recorded in every artifact and export.json row.
    monkeypatch.setattr(pipeline, "FORMATS", FAST)
    pipeline.export(run, format="all", checkpoint="last.pt")
    assert mixed_note(folder) is None
    assert not [name for name in hidden(folder) if f"tmp-{os.getpid()}" in name]  # the killed writer's are gc's
    assert all(read_identity(folder / name) == new for name in ("model.pt", "model.pt2", "model.safetensors"))
    figures = json.loads((folder / "export.json").read_text())
    assert {key: figures["source"][key] for key in new} == new
    assert all({key: row[key] for key in new} == new for row in figures["formats"].values())


def test_a_kill_while_a_png_is_drawn_leaves_the_good_png_whole(run):
    from PIL import Image

    from trainwise.report.plots import write_run_plots

    pngs = [path.name for path in write_run_plots(run, task="classification")]
    assert pngs == ["curves.png", "lr.png", "confusion.png"]
    before = {name: (run / name).read_bytes() for name in pngs}
    done = run_script(f"""
        from matplotlib.figure import Figure
        def savefig_then_die(self, fname, *args, **kwargs):
            if "confusion" in str(fname):
                with open(fname, "wb") as file:  # what savefig does first: the file is cut to nothing
                    file.write(b"\\x89PNG")
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, fname, *args, **kwargs)
        original, Figure.savefig = Figure.savefig, savefig_then_die
        from trainwise.cli import main
        main(["report", {str(run)!r}, "--png"])
        sys.exit(3)
        """, run.parent, run.parent)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    for name in pngs:
        assert (run / name).read_bytes() == before[name], name
        Image.open(run / name).load()
    assert [re.sub(r"\.\d+\.", ".PID.", name) for name in hidden(run)] == [".confusion.png.PID.partial"]
    proc = cli_in_process("runs", "gc", "--root", str(run.parent), cwd=run.parent)
    assert "deleted 1 temporary file(s)" in proc.stdout and hidden(run) == []


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny GPT run on the built-in corpus, never interrupted, and its summary."""
    work = tmp_path_factory.mktemp("gpt")
    done = run_script(f"from trainwise.cli import main\nsys.exit(main({[*GPT, '--run-dir', 'base']!r}))\n",
                      work, work / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((work / "base" / "summary.json").read_text())
    assert summary["best_val_perplexity"] > 1 and summary["best_val_bits_per_char"] > 0
    assert "best_val_bits_per_char" in done.stdout
    return work, summary


@pytest.mark.parametrize("how", ["killed while writing its end-of-run files", "resumed once complete"])
def test_a_resumed_text_run_keeps_its_best_perplexity_and_bits_per_char(gpt_run, how):
    work, uninterrupted = gpt_run
    folder = work / ("killed" if how.startswith("killed") else "complete")
    die = """
        import trainwise.engine.fit as fit
        write = fit.write_json
        def write_or_die(path, data):
            if path.name == "summary.json":  # the last checkpoint is written, the run's ending is not
                os.kill(os.getpid(), signal.SIGKILL)
            return write(path, data)
        fit.write_json = write_or_die
        """ if how.startswith("killed") else ""
    train = f"from trainwise.cli import main\nsys.exit(main({[*GPT, '--run-dir', folder.name]!r}))\n"
    done = run_script(textwrap.dedent(die) + train, work, work / "cache")
    assert done.returncode == (-signal.SIGKILL if die else 0), done.stderr[-2000:]
    resumed = run_script("from trainwise.cli import main\n"
                         f"sys.exit(main({[*GPT, '--run-dir', folder.name, '--resume', 'auto']!r}))\n",
                         work, work / "cache")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((folder / "summary.json").read_text())
    for key in ("best_val_loss", "best_val_perplexity", "best_val_bits_per_char", "test_bits_per_char"):
        assert summary[key] == uninterrupted[key], key
    status = [line for line in resumed.stdout.splitlines() if line.startswith("status ")]
    assert len(status) == 1 and f"best_val_bits_per_char {uninterrupted['best_val_bits_per_char']:.4f}" in status[0]

"""The CLI, called the way a person calls it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_in_process

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def trainwise(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    proc = trainwise("train", DIGITS, "train.epochs=4", "--run-dir", "run", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "run folder: run" in proc.stdout
    return work / "run"


def test_train_writes_the_run_folder(digits_run):
    for name in ("config.yaml", "summary.json", "metrics.csv", "data.json", "report.html", "curves.svg", "lr.svg",
                 "schedule.csv",
                 "checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/manifest.json"):
        assert (digits_run / name).is_file(), name
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == 4
    assert summary["test_accuracy"] > 0.85
    assert "train.epochs" not in (digits_run / "config.yaml").read_text()
    assert "epochs: 4" in (digits_run / "config.yaml").read_text()


def test_evaluate_reproduces_the_test_accuracy(digits_run, tmp_path):
    proc = trainwise("evaluate", str(digits_run), "--split", "test", cwd=tmp_path)  # from another folder
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads((digits_run / "evaluate_test.json").read_text())
    summary = json.loads((digits_run / "summary.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_predict_on_raw_inputs(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "inputs.npz", x=digits.data[:50].astype(np.float32))
    out = tmp_path / "preds.npz"
    proc = trainwise("predict", str(digits_run), str(tmp_path / "inputs.npz"), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as preds:
        assert preds["predictions"].shape == (50,)
        assert preds["probabilities"].shape == (50, 10)
        np.testing.assert_allclose(preds["probabilities"].sum(1), 1.0, rtol=1e-5)
        assert (preds["class_index"] == digits.target[:50]).mean() > 0.8
        assert list(preds["predictions"]) == [str(i) for i in preds["class_index"]]  # the class names


def test_dry_run_prints_config_and_callback_order(tmp_path):
    proc = trainwise("train", DIGITS, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: digits-mlp" in proc.stdout
    order = proc.stdout.split("callbacks, in the order they run:")[1]
    assert order.index("EarlyStopping") < order.index("CheckpointSaver") < order.index("ProgressBar")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args, message", [
    (["optimzer.lr=0.1"], "unknown key 'optimzer' in config; did you mean 'optimizer'?"),
    (["optimizer.lr=-1"], "optimizer.lr: must be > 0 or 'auto', got -1"),
    (["data.batch_size=0"], "data.batch_size: must be > 0 or 'auto', got 0"),
    (["data.val_fraction=1.5"], "data.val_fraction: Input should be less than 1"),
    (["data.dataset=mnist", "data.root=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["data.dataset=digitz"], "did you mean 'digits'"),
    (["model.name=mlpp"], "did you mean 'mlp'"),
])
def test_bad_input_exits_nonzero_with_one_message(args, message, tmp_path):
    proc = cli_in_process("train", DIGITS, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]


@pytest.mark.parametrize("args, message", [
    (["report", "RUN", "--pgn"], "trainwise report: unknown option --pgn; did you mean '--png'? (trainwise report "
                                 "--help lists them)"),
    (["train", DIGITS, "--dryrun"], "trainwise train: unknown option --dryrun; did you mean '--dry-run'?"),
    (["runs", "list", "--sortt", "x"], "trainwise runs list: unknown option --sortt; did you mean '--sort'?"),
    (["doctor", DIGITS, "--only", "data.x"], "trainwise doctor: unknown option --only (trainwise doctor --help"),
    (["evaluate", "RUN", "extra"], "trainwise evaluate: unexpected argument(s) extra"),
])
def test_an_unknown_option_names_the_command_and_the_closest_option(args, message, tmp_path):
    proc = cli_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "usage:" not in proc.stderr and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and message in line


def test_missing_config_file(tmp_path):
    proc = cli_in_process("train", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "config file not found: nope.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_csv_label_exits_cleanly(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,nan,1\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))
    proc = cli_in_process("train", DIGITS, "data.dataset=csv", "data.path=d.csv", "data.target=label", cwd=tmp_path)
    assert proc.returncode == 2
    assert "NaN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = trainwise("--debug", "train", DIGITS, "optimizer.lr=-1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def _write_csv(path: Path, regression: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    lines = ["a,b,c,target"]
    for row in x:
        if regression:
            target = f"{2 * row[0] - row[1] + 0.5 * row[2] + 0.01 * rng.normal():.6f}"
        else:
            target = "yes" if row[0] + row[1] > 0 else "no"
        lines.append(",".join(f"{v:.6f}" for v in row) + f",{target}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_regression_reports_rmse(tmp_path):
    _write_csv(tmp_path / "reg.csv", regression=True)
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=reg.csv", "data.target=target",
                     "model.hidden=[32]", "model.dropout=0", "train.epochs=40", "train.early_stopping.monitor=val_loss",
                     "--run-dir", "reg", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "reg" / "summary.json").read_text())
    assert summary["task"] == "regression"
    assert 0 < summary["test_rmse"] < 0.5
    assert summary["test_r2"] > 0.9
    assert "test_rmse" in proc.stdout


def test_csv_classification_trains_with_text_labels(tmp_path):
    _write_csv(tmp_path / "cls.csv", regression=False)
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=cls.csv", "data.target=target",
                     "model.hidden=[32]", "train.epochs=30", "--run-dir", "cls", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "cls" / "summary.json").read_text())
    assert summary["task"] == "classification"
    assert summary["test_accuracy"] > 0.9
    assert summary["class_names"] == ["no", "yes"]


SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def test_schedule_resolves_a_config_relative_path_from_another_folder(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rows = "\n".join(f"{i % 7},{i % 3},{i % 2}" for i in range(200))
    (project / "data" / "t.csv").write_text("a,b,label\n" + rows + "\n")
    (project / "t.yaml").write_text("data: {dataset: csv, path: data/t.csv, target: label}\n"
                                    "train: {epochs: 2}\noptimizer: {lr: 0.01}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = trainwise("schedule", str(project / "t.yaml"), "--out", "s.png", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "optimizer steps" in proc.stdout


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST files not in {SHARED_MNIST}")
def test_schedule_command_prints_and_plots(tmp_path):
    # from another folder, data.root as the config file gives it (relative to the file)
    proc = trainwise("schedule", str(ROOT / "examples" / "mnist.yaml"),
                     "--compare", "cosine,onecycle,step", "--out", "s.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("onecycle:", "cosine:", "step:"):
        assert name in proc.stdout
    assert "momentum" in proc.stdout


def test_lr_find_and_lr_auto(tmp_path):
    proc = trainwise("lr-find", DIGITS, "--run-dir", "lf", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads((tmp_path / "lf" / "lr_find.json").read_text())
    assert set(found) >= {"lrs", "losses", "suggestion", "rule"}
    assert f"suggested lr: {found['suggestion']:.3g}" in proc.stdout
    assert (tmp_path / "lf" / "lr_find.png").is_file()

    proc = trainwise("train", DIGITS, "optimizer.lr=auto", "train.epochs=3", "--run-dir", "auto", "--quiet",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "auto"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lr_finder"]["rule"] == "edge"
    assert summary["lr"] == summary["lr_finder"]["suggestion"]
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == summary["lr"]
    assert (run / "lr_find.json").is_file() and "Learning-rate range test" in (run / "report.html").read_text()


def test_same_config_twice_gives_identical_losses(tmp_path):
    import csv

    losses = []
    for name in ("a", "b"):
        proc = trainwise("train", DIGITS, "train.epochs=2", "--run-dir", name, "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        with open(tmp_path / name / "metrics.csv") as handle:
            losses.append([row for row in csv.DictReader(handle) if row["metric"] == "loss"])
    assert losses[0] == losses[1]
    assert len(losses[0]) >= 4


# --- paths: a config file's relative paths from its folder, overrides' from the working directory


def _small_csv(path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [f"{a:.4f},{b:.4f},{'yes' if a + b > 0 else 'no'}" for a, b in rng.normal(size=(200, 2))]
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def csv_run_from_config_file(tmp_path_factory) -> Path:
    """A config in conf/ names data.path relative to itself; train runs from elsewhere."""
    root = tmp_path_factory.mktemp("paths")
    (root / "conf").mkdir()
    (root / "elsewhere").mkdir()
    _small_csv(root / "conf" / "d.csv")
    (root / "conf" / "run.yaml").write_text(
        "name: csvrun\ndata: {dataset: csv, path: d.csv, target: label}\nmodel: {hidden: [8]}\n"
        "optimizer: {lr: 0.01}\ntrain: {epochs: 2}\n")
    proc = trainwise("train", "../conf/run.yaml", "--run-dir", "run", "--quiet", cwd=root / "elsewhere")
    assert proc.returncode == 0, proc.stderr
    return root / "elsewhere" / "run"


def test_config_file_paths_resolve_against_its_folder(csv_run_from_config_file):
    import yaml

    saved = yaml.safe_load((csv_run_from_config_file / "config.yaml").read_text())
    assert saved["data"]["path"] == str((csv_run_from_config_file.parent.parent / "conf" / "d.csv").resolve())


def test_evaluate_and_predict_work_from_any_folder(csv_run_from_config_file, tmp_path):
    proc = trainwise("evaluate", str(csv_run_from_config_file), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout
    (tmp_path / "new.csv").write_text("b,a\n1.0,2.0\n-3.0,-1.0\n")  # columns by name, any order
    proc = trainwise("predict", str(csv_run_from_config_file), "new.csv", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "prediction,probability_no,probability_yes"


def test_override_paths_resolve_against_the_working_directory(tmp_path):
    (tmp_path / "data").mkdir()
    _small_csv(tmp_path / "data" / "d.csv")
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=data/d.csv", "data.target=label",
                     "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"path: {tmp_path / 'data' / 'd.csv'}" in proc.stdout


def test_help_does_not_import_torch(tmp_path):
    code = ("import sys\nfrom trainwise.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['predict', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_retention_is_quiet(tmp_path):
    proc = trainwise("train", DIGITS, "train.epochs=3", "train.checkpoint.every_n_steps=5",
                     "train.checkpoint.keep_last=1", "optimizer.lr=0.003", "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "r" / "checkpoints").glob("step-*.pt"))) == 1  # retention did delete
    assert "retention deleted" not in proc.stdout + proc.stderr

"""``trainwise train --dry-run``: every name checked before anything is printed, nothing heavy
imported or loaded."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainwise.cli import main
from trainwise.cli.dry_run import run_dry_run
from trainwise.config.schema import load_config

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")


@pytest.mark.parametrize(("override", "message"), [
    ("schedule.name=cosin", "unknown schedule 'cosin'; did you mean 'cosine'?"),
    ("schedule.gama=0.5", "unknown parameter 'gama' for schedule 'onecycle'"),
    ("model.name=mlpp", "unknown model 'mlpp'; did you mean 'mlp'?"),
    ("model.name=__main__:Net", "'package.module:factory' naming an importable module"),
    ("optimizer.name=adamm", "unknown optimizer 'adamm'; did you mean 'adam'?"),
    ("model.init=kaiming_nromal", "unknown model.init 'kaiming_nromal'; did you mean 'kaiming_normal'?"),
    ("model.activation=rellu", "unknown model.activation 'rellu'; did you mean 'relu'?"),
    ("model.norm=bach", "unknown model.norm 'bach'; did you mean 'batch'?"),
    ("data.dataset=digitz", "unknown dataset 'digitz'; did you mean 'digits'?"),
    ("data.augment=crop,rotat", "unknown augmentation 'rotat'; did you mean 'rotate'?"),
    ("train.loss=cross_entopy", "got 'cross_entopy'; did you mean 'cross_entropy'?"),
    ("train.precision=bf61", "got 'bf61'; did you mean 'bf16'?"),
    ("train.lr_find.rule=valey", "unknown train.lr_find.rule 'valey'; did you mean 'valley'?"),
    ("train.lr_find.retry_repeats=0", "train.lr_find.retry_repeats: Input should be greater than or equal to 1, got 0"),
])
def test_dry_run_rejects_unknown_names(override: str, message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", DIGITS, override, "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing printed before the check
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]


def test_overrides_may_follow_the_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", DIGITS, "--dry-run", "schedule.name=cosin"]) == 2
    assert "did you mean 'cosine'?" in capsys.readouterr().err


def test_dry_run_checks_the_data_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", DIGITS, "data.dataset=csv", f"data.path={tmp_path / 'no.csv'}", "--dry-run"]) == 2
    assert f"csv file {tmp_path / 'no.csv'} does not exist" in capsys.readouterr().err


def test_run_dry_run_prints_the_plan(capsys: pytest.CaptureFixture) -> None:
    cfg = load_config(DIGITS, ["train.epochs=3", "optimizer.lr=auto"])
    assert run_dry_run(cfg, argparse.Namespace(run_dir="runs/x", quiet=True)) == 0
    out = capsys.readouterr().out
    assert "name: digits-mlp" in out
    # digits: 1,797 samples, 20% test, 10% of the rest val -> 1,294 train, 21 batches of 64
    assert "length: 63 optimizer steps (3 epochs x 21 steps)" in out
    assert "lr: auto, the LR range test" in out and "run folder: runs/x" in out
    order = out.split("callbacks, in the order they run:")[1]
    assert "EarlyStopping (monitor val_accuracy, patience 15)" in order
    assert order.index("EarlyStopping") < order.index("CheckpointSaver")
    assert "ProgressBar" not in order  # quiet


def test_dry_run_imports_nothing_heavy_and_loads_no_data(tmp_path: Path) -> None:
    code = ("import sys\nfrom trainwise.cli import main\n"
            f"assert main(['train', {DIGITS!r}, '--dry-run']) == 0\n"
            "heavy = ('sklearn', 'scipy', 'torch._dynamo', 'matplotlib', 'trainwise.trainer', 'trainwise.engine.loop')\n"
            "print('IMPORTED', sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "IMPORTED []"
    assert "loaded digits" not in proc.stderr  # the data set was not loaded
    assert not (tmp_path / "runs").exists()

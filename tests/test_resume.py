"""Never lose a run: ``trainwise train`` subprocesses killed with real signals (SIGKILL at random
moments, one of them mid-write; SIGTERM), damaged and hostile checkpoints, retention, config changes
on resume, and a full disk. Every resumed run is compared bit for bit with an uninterrupted one:
final weights, optimizer state, and every non-event row of ``metrics.csv``."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
import yaml
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.callbacks import Callback, CheckpointSaver
from trainwise.errors import CheckpointError, ResumeMismatchError
from trainwise.trainer import Trainer
from trainwise.engine.resume import check_resume_config

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TIMEOUT = 300

# 21 batches of 64 per epoch (digits: 1,294 training samples), 3 epochs, a checkpoint every step;
# dropout makes the result depend on the torch RNG being restored.
PLAIN = {
    "name": "resume-plain", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [64], "dropout": 0.2},
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "schedule": {"name": "onecycle"},
    "train": {"epochs": 3, "threads": 1, "log_every_n_steps": 1,
              "checkpoint": {"every_n_steps": 1, "keep_last": 2}},
}
# Accumulation over 3 micro-batches (7 steps per epoch), random crops, and early stopping on the
# validation accuracy, which stalls for an epoch now and then and stops the run well before epoch 14.
EARLY = {
    "name": "resume-early", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64, "augment": "crop"},
    "model": {"name": "mlp", "hidden": [64], "dropout": 0.2},
    "optimizer": {"name": "adamw", "lr": 3.0e-2},
    "schedule": {"name": "constant"},
    "train": {"epochs": 14, "accumulate": 3, "threads": 1, "log_every_n_steps": 1,
              "early_stopping": {"monitor": "val_accuracy", "patience": 2},
              "checkpoint": {"every_n_steps": 1, "keep_last": 2}},
}
PLAIN_STEPS_PER_EPOCH, EARLY_STEPS_PER_EPOCH = 21, 7


# --- driving the CLI --------------------------------------------------------------------------


class Run:
    """One ``trainwise train`` subprocess writing ``run_dir`` (relative to ``work``)."""

    started: list[subprocess.Popen] = []

    def __init__(self, work: Path, config: dict[str, Any], run_dir: str, *args: str) -> None:
        self.work, self.run_dir = work, work / run_dir
        config_path = work / f"{config['name']}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = work / f"{run_dir}-{time.monotonic_ns()}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "trainwise", "train", str(config_path), "--run-dir", run_dir, *args],
                cwd=work, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        Run.started.append(self.proc)

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait(self) -> int:
        return self.proc.wait(timeout=TIMEOUT)

    def finish(self) -> str:
        """Wait for a run that must succeed; its output."""
        assert self.wait() == 0, self.output
        return self.output

    def wait_for_step(self, step: int) -> None:
        """Poll the manifest until a checkpoint at ``step`` or later is recorded."""
        deadline = time.monotonic() + TIMEOUT
        while saved_step(self.run_dir) < step:
            assert self.proc.poll() is None, f"exited before step {step}:\n{self.output}"
            assert time.monotonic() < deadline, f"no checkpoint at step {step} in time:\n{self.output}"
            time.sleep(0.005)

    def kill(self, signum: int = signal.SIGKILL) -> int:
        """Send ``signum``, wait; the step of the newest recorded checkpoint then."""
        assert self.proc.poll() is None, f"the run ended before it could be killed:\n{self.output}"
        os.kill(self.proc.pid, signum)
        code = self.wait()
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL, self.output
        return saved_step(self.run_dir)

    def kill_while_writing(self) -> str:
        """SIGKILL while a step checkpoint's temporary file exists: freeze the process (SIGSTOP) when
        one appears, check it is still there, then kill. The name of the half-written file."""
        folder = self.run_dir / "checkpoints"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the run ended before a save was caught:\n{self.output}"
            writing = [e.name for e in os.scandir(folder) if e.name.startswith(".step-")]
            if writing:
                os.kill(self.proc.pid, signal.SIGSTOP)
                wait_until_stopped(self.proc.pid)
                if (folder / writing[0]).exists():
                    self.kill()
                    return writing[0]
                os.kill(self.proc.pid, signal.SIGCONT)
        raise AssertionError(f"never saw a checkpoint being written:\n{self.output}")


def wait_until_stopped(pid: int) -> None:
    """SIGSTOP is asynchronous: wait until the process state in /proc is T (stopped)."""
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        time.sleep(0.0005)


@pytest.fixture(autouse=True)
def no_run_left_behind():
    """A failed test must not leave a training process running."""
    yield
    for proc in Run.started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    Run.started.clear()


def saved_step(run_dir: Path) -> int:
    """The highest step recorded in the checkpoint manifest, -1 before the first save."""
    try:
        entries = json.loads((run_dir / "checkpoints" / ckpt.MANIFEST_NAME).read_text())["checkpoints"]
    except FileNotFoundError:
        return -1
    return max((entry["step"] for entry in entries.values()), default=-1)


def cli(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=work, env=ENV, capture_output=True,
                          text=True, timeout=TIMEOUT)


# --- comparing runs ---------------------------------------------------------------------------


def metric_rows(run_dir: Path) -> list[list[str]]:
    """Every metrics.csv row but events (a resume adds one), as written: equal strings are equal floats."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [row for row in list(csv.reader(handle))[1:] if row[2] != "event"]


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Same metrics.csv values, same final weights and optimizer state, same summary figures."""
    assert metric_rows(run_dir) == metric_rows(reference)
    got = ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pt")
    want = ckpt.load_checkpoint(reference / "checkpoints" / "last.pt")
    for key in ("model", "optimizer"):
        assert_identical(got[key], want[key], key)
    for key in ("step", "epoch", "batch", "best", "lr", "samples_seen"):
        assert_identical(got["run_state"][key], want["run_state"][key], key)
    got_summary, want_summary = summary(run_dir), summary(reference)
    for key in ("status", "epochs_run", "steps", "best_epoch", "best_val_loss", "test_accuracy"):
        assert got_summary.get(key) == want_summary.get(key), key
    assert not list((run_dir / "checkpoints").glob(".*")), "temporary files left behind"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def references(work: Path) -> dict[str, Path]:
    """Uninterrupted runs of both configs, side by side (one core each)."""
    runs = {"plain": Run(work, PLAIN, "ref-plain"), "early": Run(work, EARLY, "ref-early")}
    for run in runs.values():
        run.finish()
    return {name: run.run_dir for name, run in runs.items()}


@pytest.fixture(scope="module")
def interrupted(work: Path, references: dict[str, Path]) -> tuple[Path, str]:
    """A PLAIN run stopped by SIGTERM four steps into its second epoch (after the references, not to
    share the cores with them); kept pristine, tests copy it. Its folder and output."""
    run = Run(work, PLAIN, "sigterm")
    run.wait_for_step(PLAIN_STEPS_PER_EPOCH + 4)
    run.kill(signal.SIGTERM)
    assert run.proc.returncode == 0, run.output
    return run.run_dir, run.output


def copy_run(source: Path, name: str) -> Path:
    destination = source.parent / name
    shutil.copytree(source, destination)
    return destination


# --- 1. kill -9 anywhere ----------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_five_points_then_resume_is_bitwise_identical(work, references):
    rng = random.Random(4)
    run = Run(work, PLAIN, "killed")
    run.wait_for_step(rng.randint(2, 10))
    time.sleep(rng.uniform(0.0, 0.03))
    kill_steps = [run.kill()]
    run = Run(work, PLAIN, "killed", "--resume", "auto")
    run.wait_for_step(kill_steps[-1] + 2)
    half_written = run.kill_while_writing()
    assert (work / "killed" / "checkpoints" / half_written).exists()  # it died mid-write
    kill_steps.append(saved_step(work / "killed"))
    assert summary(references["plain"])["steps"] == 3 * PLAIN_STEPS_PER_EPOCH
    targets = [(42, 0.0), (rng.randint(46, 56), rng.uniform(0.0, 0.03)), (63, rng.uniform(0.0, 0.2))]
    outputs = []
    for step, delay in targets:  # the end of epoch 1 (validation), epoch 2, the end of the run
        run = Run(work, PLAIN, "killed", "--resume", "auto")
        run.wait_for_step(max(step, kill_steps[-1] + 1))  # a new point, past where this process resumed
        time.sleep(delay)
        kill_steps.append(run.kill())
        outputs.append(run.output)
    Run(work, PLAIN, "killed", "--resume", "auto").finish()
    assert len(set(kill_steps)) == 5, kill_steps
    assert f"removing killed/checkpoints/{half_written} left by an interrupted save" in outputs[0]
    assert_same_run(work / "killed", references["plain"])


def epochs_without_improvement(accuracies: list[float]) -> list[int]:
    """Early stopping's count of epochs without a higher accuracy, after each epoch."""
    best, wait, waits = None, 0, []
    for value in accuracies:
        if best is None or value > best:
            best, wait = value, 0
        else:
            wait += 1
        waits.append(wait)
    return waits


@pytest.mark.slow
def test_accumulation_augmentation_and_early_stopping_resume_exactly_and_retention_keeps_what_matters(
        work, references):
    """SIGTERM mid-epoch (between accumulation boundaries, most likely), then kill -9 two steps into
    an epoch that starts part-way through early stopping's patience; the resumed run stops early at
    the same epoch with the same weights. Retention (keep_last=2, a save every step) kept best.pt
    from epochs before, and the checkpoint the last process resumed from."""
    reference = references["early"]
    assert summary(reference)["status"] == "stopped_early"
    accuracies = [float(row[4]) for row in metric_rows(reference) if row[2:4] == ["val", "accuracy"]]
    waits = epochs_without_improvement(accuracies)
    patient_epoch = max(e for e in range(1, len(waits)) if waits[e - 1] >= 1)
    rng = random.Random(7)
    run = Run(work, EARLY, "early")
    run.wait_for_step(rng.randint(9, 16))
    time.sleep(rng.uniform(0.0, 0.02))
    run.kill(signal.SIGTERM)
    assert run.proc.returncode == 0, run.output
    assert summary(work / "early")["status"] == "interrupted"
    run = Run(work, EARLY, "early", "--resume", "auto")
    run.wait_for_step(patient_epoch * EARLY_STEPS_PER_EPOCH + rng.randint(1, 2))
    killed_at = run.kill()
    resume_from, _ = ckpt.find_resumable(work / "early" / "checkpoints")
    assert ckpt.load_checkpoint(resume_from)["callbacks"]["0:EarlyStopping"]["wait"] >= 1
    (work / "early" / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    Run(work, EARLY, "early", "--resume", "auto").finish()
    assert_same_run(work / "early", reference)

    folder = work / "early" / "checkpoints"
    resumed = [e for e in summary(work / "early")["events"] if e["kind"] == "resumed"][-1]
    assert resumed["step"] == killed_at and resume_from.name in resumed["message"]
    best = ckpt.load_checkpoint(folder / "best.pt")
    best_epoch = summary(reference)["best_epoch"]
    assert best["run_state"]["step"] == best_epoch * EARLY_STEPS_PER_EPOCH < killed_at
    assert_identical(best["model"], ckpt.load_checkpoint(reference / "checkpoints" / "best.pt")["model"])
    last_step = summary(reference)["steps"]
    kept = sorted(p.name for p in folder.glob("step-*.pt"))
    newest = [ckpt.step_checkpoint_name(s) for s in (last_step - 1, last_step)]
    assert kept == sorted({resume_from.name, *newest}) and resume_from.name not in newest
    ckpt.load_checkpoint(folder / resume_from.name)
    assert (folder / "notes.txt").read_text() == "not a checkpoint"


# --- 2. SIGTERM -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_exits_0_interrupted_and_resumes_exactly(work, references, interrupted):
    source, output = interrupted
    result = summary(source)
    assert result["status"] == "interrupted"
    assert "status interrupted" in output and "received SIGTERM; saved a checkpoint to resume from" in output
    state = ckpt.load_checkpoint(source / "checkpoints" / "last.pt")
    assert state["run_state"]["step"] == result["steps"] == saved_step(source)  # the signal's own save is the newest
    assert 0 < state["run_state"]["batch"] == state["loader"]["position"] < PLAIN_STEPS_PER_EPOCH  # mid-epoch
    run_dir = copy_run(source, "sigterm-resumed")
    Run(work, PLAIN, "sigterm-resumed", "--resume", "auto").finish()
    assert_same_run(run_dir, references["plain"])


# --- 3. damaged checkpoints -------------------------------------------------------------------


@pytest.mark.slow
def test_truncated_and_bit_flipped_newest_checkpoints_are_skipped_with_a_message(work, references, interrupted):
    run_dir = copy_run(interrupted[0], "damaged")
    folder = run_dir / "checkpoints"
    named = Path("damaged", "checkpoints")  # as the run names them: relative to its working folder
    newest = ckpt.step_checkpoint_name(saved_step(run_dir))
    data = (folder / newest).read_bytes()
    (folder / newest).write_bytes(data[: len(data) // 2])  # copytree broke the hard link: last.pt is apart
    flipped = bytearray((folder / "last.pt").read_bytes())
    flipped[len(flipped) // 3] ^= 0x01
    (folder / "last.pt").write_bytes(bytes(flipped))
    previous = ckpt.step_checkpoint_name(saved_step(run_dir) - 1)
    output = Run(work, PLAIN, "damaged", "--resume", "auto").finish()
    assert f"skipping checkpoint {named / newest}: truncated" in output
    assert f"skipping checkpoint {named / 'last.pt'}: checksum mismatch" in output
    assert f"resuming from {named / previous}, the newest checkpoint that verifies" in output
    assert_same_run(run_dir, references["plain"])


# --- 4. a hostile checkpoint ------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls ``exec``: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def write_hostile_checkpoint(path: Path, marker: Path, step: int) -> None:
    """A checkpoint that runs code when unpickled, recorded in the manifest with its true SHA-256."""
    torch.save({"format_version": ckpt.FORMAT_VERSION, "model": RunsCode(marker)}, path)
    manifest_path = path.parent / ckpt.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    data = path.read_bytes()
    manifest["checkpoints"][path.name] = {
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "step": step, "epoch": 1,
        "format_version": ckpt.FORMAT_VERSION, "saved_at": "2999-01-01T00:00:00.000000+00:00"}
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.slow
def test_checkpoint_that_runs_code_when_unpickled_is_refused_and_never_runs(work, interrupted, tmp_path):
    run_dir = copy_run(interrupted[0], "hostile")
    hostile = run_dir / "checkpoints" / ckpt.step_checkpoint_name(saved_step(run_dir) + 1)
    marker = tmp_path / "pwned"
    write_hostile_checkpoint(hostile, marker, saved_step(run_dir) + 1)
    assert ckpt.find_resumable(hostile.parent)[0] == hostile  # only unpickling safety stands in the way
    metrics_before = (run_dir / "metrics.csv").read_bytes()
    proc = cli(work, "train", str(work / "resume-plain.yaml"), "--run-dir", "hostile", "--resume", str(hostile))
    assert proc.returncode == 2, proc.stderr
    assert f"error: refusing to load {hostile}: it contains Python objects that could run code" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not marker.exists()
    assert (run_dir / "metrics.csv").read_bytes() == metrics_before
    assert summary(run_dir)["status"] == "interrupted"
    proof = tmp_path / "proof"  # the file really is hostile: loading it unsafely runs the code
    torch.save({"model": RunsCode(proof)}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)
    assert proof.read_text() == "pwned"


# --- config changes on resume -----------------------------------------------------------------


@pytest.mark.slow
def test_resume_refuses_a_changed_model_and_grows_epochs_with_resume_changed(work, references):
    run_dir = copy_run(references["plain"], "grown")
    config_before = (run_dir / "config.yaml").read_text()
    proc = cli(work, "train", str(work / "resume-plain.yaml"), "model.hidden=[32]", "--run-dir", "grown",
               "--resume", "auto")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: the config differs from the checkpoint's: model.hidden: [64] -> [32]" in proc.stderr
    assert (run_dir / "config.yaml").read_text() == config_before
    proc = cli(work, "train", str(work / "resume-plain.yaml"), "train.epochs=4", "--run-dir", "grown",
               "--resume", "auto", "--resume-changed")
    assert proc.returncode == 0, proc.stderr
    result = summary(run_dir)
    assert (result["status"], result["epochs_run"], result["steps"]) == ("completed", 4, 4 * PLAIN_STEPS_PER_EPOCH)
    trained = [row for row in metric_rows(references["plain"]) if row[2] != "test"]
    assert metric_rows(run_dir)[: len(trained)] == trained
    resumed = [e for e in result["events"] if e["kind"] == "resumed"]
    assert "changed: train.epochs: 3 -> 4" in resumed[0]["message"]


@pytest.mark.parametrize("allow_changes, changed, message", [
    (False, {"train": {"epochs": 4}}, r"train\.epochs: 3 -> 4; resume with the config the run started with, "
                                      r"or pass --resume-changed"),
    (True, {"model": {"hidden": [32]}}, r"model\.hidden: \[64\] -> \[32\]; only optimizer\.lr, train\.epochs"),
])
def test_config_differences_are_listed(allow_changes, changed, message):
    current = {key: {**value, **changed.get(key, {})} if isinstance(value, dict) else value
               for key, value in PLAIN.items()}
    with pytest.raises(ResumeMismatchError, match=message):
        check_resume_config(PLAIN, current, allow_changes)


@pytest.mark.slow
def test_resume_auto_without_an_earlier_run_says_what_to_do(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(PLAIN))
    proc = cli(tmp_path, "train", "c.yaml", "--resume", "auto")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --resume auto found no earlier run of 'resume-plain' under runs/; pass --run-dir" in proc.stderr


# --- in-process: the moments a timed kill rarely hits, and a full disk --------------------------


def blobs(n: int = 128, features: int = 8, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=generator)
    centers = torch.randn(classes, features, generator=generator) * 3
    return centers[y] + torch.randn(n, features, generator=generator), y


class AtFirstValidation(Callback):
    """Runs ``action(trainer)`` once, after the first epoch's validation (before its on_epoch_end)."""

    def __init__(self, action=None) -> None:
        self.action = action

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.state.epoch == 0 and self.action is not None:
            self.action(trainer)


def fit_tiny(run_dir: Path, action=None, resume: Optional[Path | str] = None, **kwargs: Any):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    trainer = Trainer(model, lr=1e-2, epochs=3, batch_size=32, run_dir=run_dir,
                      checkpoint=CheckpointSaver(every_n_steps=1, keep_last=2), log_every_n_steps=1, progress=False, report=False,
                      callbacks=[AtFirstValidation(action)], **kwargs)
    x, y = blobs()
    return trainer.fit((x[:96], y[:96]), (x[96:], y[96:]), resume=resume)


def snapshot_folder(destination: Path):
    return lambda trainer: shutil.copytree(trainer.run_dir, destination)


def send_sigterm(trainer: Trainer) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("moment", ["killed during validation", "SIGTERM during validation"])
def test_stop_between_the_last_batch_and_the_epoch_end_resumes_exactly(moment, tmp_path):
    """The last batch's checkpoint (taken before validation) must still run that validation; the
    SIGTERM checkpoint (taken after the epoch ended) must not run it, nor skip the next epoch."""
    fit_tiny(tmp_path / "reference")
    stopped = tmp_path / "stopped"
    if moment == "killed during validation":
        fit_tiny(tmp_path / "unused", snapshot_folder(stopped))  # the folder as a kill -9 would leave it
        state = ckpt.load_checkpoint(stopped / "checkpoints" / "last.pt")
        assert (state["loader"]["position"], state["run_state"]["batch"], state["run_state"]["epoch"]) == (3, 3, 0)
    else:
        assert fit_tiny(stopped, send_sigterm).status == "interrupted"
        state = ckpt.load_checkpoint(stopped / "checkpoints" / "last.pt")
        assert (state["run_state"]["epoch"], state["run_state"]["batch"]) == (1, 0)
    result = fit_tiny(stopped, resume="auto")
    assert result.status == "completed"
    assert_same_run(stopped, tmp_path / "reference")


def test_resume_auto_before_the_first_checkpoint_starts_over_and_refuses_only_damaged_files(tmp_path, caplog):
    fit_tiny(tmp_path / "reference")
    started = tmp_path / "started"  # what a kill before the first save leaves
    started.mkdir()
    (started / "metrics.csv").write_text("step,epoch,split,metric,value\n1,0,train,lr,0.01\n")
    with caplog.at_level(logging.WARNING):
        assert fit_tiny(started, resume="auto").status == "completed"
    assert f"--resume auto: no checkpoint in {started / 'checkpoints'} yet; starting the run from the beginning" \
        in caplog.text
    assert_same_run(started, tmp_path / "reference")
    damaged = copy_run(tmp_path / "reference", "damaged") / "checkpoints"
    for path in [*damaged.glob("step-*.pt"), damaged / "last.pt"]:
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="found no valid checkpoint in .*: every one failed verification "
                                              r"\(see above\); start a new run with another --run-dir"):
        fit_tiny(damaged.parent, resume="auto")


def test_resuming_an_early_stopped_run_only_finishes_it(tmp_path):
    """Killed after early stopping's last checkpoint (during the test pass, say): resuming must not
    train on."""
    assert fit_tiny(tmp_path / "run", patience=0, min_delta=10.0).status == "stopped_early"
    reference = copy_run(tmp_path / "run", "reference")
    result = fit_tiny(tmp_path / "run", resume="auto", patience=0, min_delta=10.0)
    assert (result.status, len(result.history)) == ("stopped_early", 2)
    assert result.summary["stop_reason"].startswith("early stopping: val_loss did not improve for 1 epochs")
    assert_same_run(tmp_path / "run", reference)


def test_resuming_from_last_pt_keeps_the_step_file_it_is_a_link_of(tmp_path):
    """last.pt is replaced by the next save; retention must keep the step file with the same bytes."""
    folder = tmp_path / "run" / "checkpoints"
    assert fit_tiny(tmp_path / "run", send_sigterm).status == "interrupted"
    resumed_from = ckpt.step_checkpoint_name(ckpt.load_checkpoint(folder / "last.pt")["run_state"]["step"])
    assert fit_tiny(tmp_path / "run", resume=folder / "last.pt").status == "completed"
    kept = sorted(path.name for path in folder.glob("step-*.pt"))
    assert kept == [resumed_from, "step-00000008.pt", "step-00000009.pt"]
    ckpt.load_checkpoint(folder / resumed_from)


@pytest.mark.parametrize("error, advice", [
    (errno.ENOSPC, "No space left on device; free disk space or save checkpoints to a disk with room"),
    (errno.EROFS, "Read-only file system; check that the folder is writable by this user and not on a "
                  "read-only disk"),
])
def test_a_failed_save_stops_the_run_as_failed_and_leaves_earlier_files_intact(error, advice, tmp_path,
                                                                               monkeypatch):
    import trainwise.checkpoint._files as checkpoint_files

    folder = tmp_path / "run" / "checkpoints"
    before: dict[str, bytes] = {}
    calls = []

    def write_fails_at_step_5(path: Path, data, *, fsync: bool) -> Path:
        calls.append(path)
        if len(calls) == 6:  # steps 1, 2, 3 (last batch), 3 (epoch end), 4, then 5
            before.update({p.name: p.read_bytes() for p in folder.iterdir()})
            raise OSError(error, os.strerror(error), str(path))
        return real_write_tmp(path, data, fsync=fsync)

    real_write_tmp = checkpoint_files.write_tmp
    monkeypatch.setattr(checkpoint_files, "write_tmp", write_fails_at_step_5)
    with pytest.raises(CheckpointError, match=f"cannot write checkpoint .*step-00000005.pt: {advice}"):
        fit_tiny(tmp_path / "run")
    assert summary(tmp_path / "run")["status"] == "failed"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(before) == ["best.pt", "last.pt", "manifest.json", "step-00000003.pt", "step-00000004.pt"]
    for name in ("best.pt", "last.pt", "step-00000003.pt", "step-00000004.pt"):
        ckpt.load_checkpoint(folder / name)


def test_balanced_sampler_resumes_bitwise_identically(tmp_path):
    """data.sampler: balanced draws with replacement from (seed, epoch); a SIGTERM and a resume give
    the same run as one that was never stopped."""
    fit_tiny(tmp_path / "reference", sampler="balanced")
    stopped = tmp_path / "stopped"
    assert fit_tiny(stopped, send_sigterm, sampler="balanced").status == "interrupted"
    assert fit_tiny(stopped, resume="auto", sampler="balanced").status == "completed"
    assert_same_run(stopped, tmp_path / "reference")

"""A run killed with a real SIGKILL in the middle of a save that moves ``best.pt`` (the step file
renamed in, the first manifest written, ``last.pt`` renamed, ``best.pt`` renamed, the last manifest
written), at the epoch whose previous best's step file retention has already deleted (keep_last=1):
the folder verifies, the checkpoint a resume picks and the best checkpoint agree, and the resumed
run ends bitwise equal to a run that was never killed, with the same best epoch and a best.pt that
verifies and holds it. The writer is this file run as a script (a real process, a real signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.callbacks.checkpoint_saver import CheckpointSaver
from trainwise.errors import CheckpointError
from trainwise.trainer import Trainer

KILL_EPOCH = 5  # lr 0.03 on these blobs: val_loss improves at epochs 1, 2, 5, 6 (checked below)


def blobs(n: int = 240) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(3, 8, generator=torch.Generator().manual_seed(100)) * 1.5
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    return centers[y] + torch.randn(n, 8, generator=g) * 2.5, y


def fit(run_dir: Path, **kwargs: Any) -> tuple[Trainer, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = blobs()
    trainer = Trainer(model, lr=3e-2, epochs=6, batch_size=32, run_dir=run_dir, progress=False, report=False,
                      patience=10, checkpoint=CheckpointSaver(max_cost_share=None, keep_last=1))
    return trainer, trainer.fit((x[:160], y[:160]), (x[160:], y[160:]), **kwargs)


def killed_writer(run_dir: Path, call: str, number: int) -> None:
    """Train, and SIGKILL this process just before the ``number``-th ``os.<call>`` of the save at
    ``KILL_EPOCH`` (``number`` 0: just after that save's last os call)."""
    from trainwise.engine import resume

    real_save, real_call, armed = resume.Checkpointer.save, getattr(os, call), []

    def counted(*args: Any, **kwargs: Any) -> Any:
        if armed:
            armed.append(call)
            if len(armed) - 1 == number:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_call(*args, **kwargs)

    def save(self: Any, state: dict[str, Any], *, step: int, epoch: int, best: bool = False) -> Path:
        if epoch == KILL_EPOCH:
            assert best, "the kill epoch must move best.pt"
            armed.append("armed")
        path = real_save(self, state, step=step, epoch=epoch, best=best)
        if armed:  # the save is over: this is the kill point only when number is 0
            os.kill(os.getpid(), signal.SIGKILL) if number == 0 else os._exit(7)
        return path

    setattr(os, call, counted)
    resume.Checkpointer.save = save
    fit(run_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Any]:
    trainer, result = fit(tmp_path_factory.mktemp("reference"))
    losses = [round(row["val_loss"], 3) for row in result.history]
    assert result.status == "completed" and result.summary["best_epoch"] == 6, losses
    assert losses[2] > losses[1] and losses[3] > losses[1] and losses[4] < losses[1], losses
    return trainer, result


# The os.replace calls of that save: 1 the step file, 2 the first manifest (links dropped, the new
# step file recorded), 3 last.pt, 4 best.pt, 5 the last manifest; its third os.unlink is retention's
# (the first two clear the links' temporary names); 0: just after the save. Three of them here (a
# process each); test_checkpoint_commit_kills.py kills before every os call of such a save.
POINTS = [("replace", 2), ("replace", 4), ("replace", 5)]


@pytest.mark.slow
@pytest.mark.parametrize(("call", "number"), POINTS)
def test_a_kill_mid_commit_resumes_bitwise_with_best_consistent(tmp_path: Path, reference: Any, call: str,
                                                                number: int) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), *sys.path])}
    proc = subprocess.run([sys.executable, __file__, str(run_dir), call, str(number)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    folder = run_dir / "checkpoints"
    checkpoints = ckpt.read_manifest(folder)
    for name in checkpoints:
        ckpt.load_checkpoint(folder / name)  # every entry matches its file
    resumable, _ = ckpt.find_resumable(folder)
    run_state = ckpt.load_checkpoint(resumable)["run_state"]
    best_step = run_state["best"]["step"]
    assert run_state["epoch"] in (KILL_EPOCH - 1, KILL_EPOCH)
    try:
        best = ckpt.load_checkpoint(folder / "best.pt")
    except CheckpointError:  # unrecorded: a resume relinks it to the best step's file
        best = ckpt.load_checkpoint(folder / ckpt.step_checkpoint_name(best_step))
    assert best["run_state"]["step"] == best_step

    trainer, resumed = fit(run_dir, resume="auto")
    ref_trainer, done = reference
    assert resumed.status == "completed" and resumed.summary["best_epoch"] == done.summary["best_epoch"]
    for mine, theirs in zip(trainer.model.state_dict().values(), ref_trainer.model.state_dict().values()):
        assert torch.equal(mine, theirs)
    final_best = ckpt.load_checkpoint(folder / "best.pt")  # recorded and verified
    assert final_best["run_state"]["epoch"] == done.summary["best_epoch"]
    assert not [p for p in folder.iterdir() if p.name.endswith(".trainwise-tmp")]


if __name__ == "__main__":
    killed_writer(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))

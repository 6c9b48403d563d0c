"""A kill while best.pt is being replaced leaves it on disk but not yet in the manifest (the link
is renamed into place, the manifest that records it is written next). The resumed run must not
fail on it: the best weights come from the step file best.pt was being linked to, and best.pt
names that file again."""

from __future__ import annotations

import json
import os
import signal

import torch
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.callbacks import Callback
from trainwise.trainer import Trainer


def blobs(n: int = 240) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(3, 8, generator=torch.Generator().manual_seed(100)) * 1.5
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    return centers[y] + torch.randn(n, 8, generator=g), y


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


class TermAfterEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, logs) -> None:  # noqa: ANN001
        if trainer.state.epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def fit(run_dir, callbacks=(), **kwargs):  # noqa: ANN001
    x, y = blobs()
    trainer = Trainer(mlp(), lr=3e-3, epochs=4, batch_size=32, run_dir=run_dir, progress=False, report=False,
                      callbacks=list(callbacks))
    return trainer, trainer.fit((x[:160], y[:160]), (x[160:], y[160:]), **kwargs)


def test_resume_after_a_kill_mid_best_link_restores_the_best_weights_and_repairs_best_pt(tmp_path):
    reference, done = fit(tmp_path / "reference", callbacks=[TermAfterEpoch(99)])
    _, first = fit(tmp_path / "run", callbacks=[TermAfterEpoch(1)])
    assert first.status == "interrupted"
    best_step = first.summary["best_step"]
    folder = tmp_path / "run" / "checkpoints"
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["checkpoints"]["best.pt"]  # what the kill leaves: best.pt renamed in, not yet recorded
    (folder / "manifest.json").write_text(json.dumps(manifest))
    trainer, resumed = fit(tmp_path / "run", callbacks=[TermAfterEpoch(1)], resume="auto")
    assert resumed.status == done.status == "completed"
    assert resumed.summary["best_epoch"] == done.summary["best_epoch"]
    for mine, theirs in zip(trainer.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(mine, theirs)  # the restored best weights, bit for bit
    assert best_step is not None
    ckpt.load_checkpoint(folder / "best.pt")  # recorded again: it verifies


def test_an_unrecorded_best_pt_is_named_again_when_the_best_weights_are_not_restored(tmp_path):
    """The same window with restore_best off, killed in the last epoch's save: nothing reads best.pt at
    the resume and nothing is left to train; best.pt must still end recorded, naming the best epoch."""
    from trainwise.callbacks import EarlyStopping

    def run(callbacks, **kwargs):
        x, y = blobs()
        trainer = Trainer(mlp(), lr=3e-3, epochs=4, batch_size=32, run_dir=tmp_path / "run", progress=False,
                          report=False, early_stopping=EarlyStopping(patience=5, restore_best=False),
                          callbacks=list(callbacks))
        return trainer.fit((x[:160], y[:160]), (x[160:], y[160:]), **kwargs)

    first = run([])
    folder = tmp_path / "run" / "checkpoints"
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["checkpoints"]["best.pt"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resumed = run([], resume="auto")
    assert resumed.status == "completed"
    best = ckpt.load_checkpoint(folder / "best.pt")  # recorded again: it verifies
    assert best["run_state"]["step"] == resumed.summary["best_step"]
    assert first.summary["best_step"] is not None

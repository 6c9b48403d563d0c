"""Figure 9 — checkpoint growth: the size of ``last.pt`` after 400 epochs / after 5 epochs.

A checkpoint must hold what the run needs to continue exactly, and nothing that grows with the
run (metrics.csv holds the history). Before the engine's rewrite every checkpoint carried the
whole metrics history: on a small model ``last.pt`` grew from 28 KB at 5 epochs to 84 KB at 400,
and on a 3,000-epoch run most of the time went to saving.

A small model (MLP 16-32-3) on tiny synthetic data (96 training and 32 validation samples, batch
32: 3 steps per epoch) trains for 400 epochs through ``Trainer.fit`` with its defaults on
(the checkpoint every epoch, the run's best tracked on val_loss, metrics.csv, the non-finite guard
and the loss-spike counter) and an explicit lr; early stopping is off so that all 400 epochs run.
``last.pt`` is copied after epochs 5, 50, 100, 200 and 400, and every save is timed. Besides the
figure, the result records the size of each top-level entry of the two checkpoints (serialized
alone), so that anything that grows shows where it is, and the median save time early and late in
the run. Target <= 1.2.

    .venv/bin/python benchmarks/checkpoint_growth.py       # writes results/checkpoint_growth.json
"""

from __future__ import annotations

import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import common  # noqa: E402

TARGET = 1.2
FULL = (400, (5, 50, 100, 200, 400))  # epochs, the epochs after which last.pt is copied
QUICK = (12, (5, 12))
LR = 1e-2


def tiny_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # three classes, learnable
    return x, y


def entry_sizes(path: Path) -> dict[str, int]:
    """Bytes of each top-level entry of a checkpoint, serialized alone."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    sizes = {}
    for key, value in state.items():
        buffer = io.BytesIO()
        torch.save(value, buffer)
        sizes[key] = buffer.tell()
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    from trainwise.callbacks import Callback
    from trainwise.trainer import Trainer

    epochs, marks = QUICK if args.quick else FULL
    train, val = tiny_data(96, 0), tiny_data(32, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    saves: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        run_dir, copies = Path(scratch) / "run", Path(scratch) / "copies"
        copies.mkdir()
        last = run_dir / "checkpoints" / "last.pt"

        class CopyLast(Callback):
            """At the start of epoch k + 1, last.pt is the checkpoint written at the end of epoch k."""

            def on_epoch_start(self, trainer: Any) -> None:
                if trainer.state.epoch in marks:
                    shutil.copyfile(last, copies / f"epoch-{trainer.state.epoch}.pt")

        trainer = Trainer(model, optimizer="adamw", lr=LR, weight_decay=common.WEIGHT_DECAY, grad_clip=None, schedule="onecycle",
                          epochs=epochs, batch_size=32, early_stopping=False, progress=False, report=False,
                          device="cpu", run_dir=run_dir, callbacks=[CopyLast()])
        save = trainer.save_checkpoint

        def timed_save(*, best: bool = False) -> Path:
            start = time.perf_counter()
            path = save(best=best)
            saves.append({"epoch": trainer.state.epoch, "seconds": time.perf_counter() - start})
            return path

        trainer.save_checkpoint = timed_save
        start = time.perf_counter()
        result = trainer.fit(train, val)
        wall = time.perf_counter() - start
        shutil.copyfile(last, copies / f"epoch-{epochs}.pt")
        sizes = {epoch: (copies / f"epoch-{epoch}.pt").stat().st_size for epoch in marks}
        first, final = marks[0], marks[-1]
        entries = {first: entry_sizes(copies / f"epoch-{first}.pt"), final: entry_sizes(copies / f"epoch-{final}.pt")}
    figure = sizes[final] / sizes[first]
    grown = {key: entries[final][key] - entries[first].get(key, 0) for key in entries[final]
             if entries[final][key] != entries[first].get(key, 0)}
    early = [s["seconds"] for s in saves if s["epoch"] <= 10]
    late = [s["seconds"] for s in saves if s["epoch"] > epochs - 10]
    save_seconds = sum(s["seconds"] for s in saves)
    payload = {
        "figure": f"size of last.pt after {final} epochs / after {first} epochs (small model, tiny data)",
        "headline": f"{figure:.3f}x ({sizes[first] / 1e3:.1f} KB after {first} epochs, {sizes[final] / 1e3:.1f} KB "
                    f"after {final})",
        "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratio": round(figure, 4),
        "last_pt_bytes": {str(epoch): size for epoch, size in sizes.items()},
        "entry_bytes": {str(epoch): value for epoch, value in entries.items()},
        "entries_that_changed_size": grown,
        "saves": len(saves), "save_seconds_total": round(save_seconds, 3), "run_seconds": round(wall, 3),
        "save_fraction_of_run": round(save_seconds / wall, 4),
        "median_save_ms": {"first_10_epochs": round(statistics.median(early) * 1e3, 2),
                           "last_10_epochs": round(statistics.median(late) * 1e3, 2)},
        "status": result.status, "events": len(trainer.state.events),
        "config": {"model": "MLP 16-32-3", "train_samples": len(train[0]), "val_samples": len(val[0]),
                   "batch_size": 32, "epochs": epochs, "lr": LR, "early_stopping": False},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "checkpoint_growth", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

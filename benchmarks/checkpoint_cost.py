"""Figure 5 — checkpoint cost: one epoch-end checkpoint (serialized once, SHA-256, written to a
temporary file, fsynced, renamed, ``last.pt`` and ``best.pt`` linked, manifest rewritten and
fsynced, retention applied) as a fraction of one epoch of training on ``examples/mnist.yaml``.
``checkpoint_growth.py`` measures how a checkpoint's size changes over a long run.

The run is built by the CLI's own functions from ``examples/mnist.yaml`` (the CNN, AdamW, 1cycle,
early stopping, 54,000 training images: 422 steps per epoch) with one override,
``train.checkpoint.every_n_steps``, so that the checkpointer saves every ``BLOCK`` steps in the
middle of training instead of once per epoch. Each save (``Trainer.save_checkpoint``: the
checkpoint's state gathered, then written) is timed, and so is the training between two saves,
back to back in one process, round after round. Every save is made as at the end of an
improving epoch, with ``best.pt`` linked (``best=True``). (A checkpoint holds no copy of the
best weights: the loop keeps them in memory and a resume reads them from ``best.pt``.) Figure:
median over rounds of save seconds / (seconds per training step x steps per epoch). Target <= 3%.

    .venv/bin/python benchmarks/checkpoint_cost.py          # writes results/checkpoint_cost.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 0.03
FULL = (10, 10, 12)  # steps per save, warm-up steps (the first save), rounds
QUICK = (3, 3, 2)


def timed_saves(trainer: Any, saves: list[dict[str, Any]]) -> None:
    """Wrap ``trainer.save_checkpoint`` (the verb the CheckpointSaver calls) to record each call's
    start, end, step and file size, saving every checkpoint as ``best``."""
    save = trainer.save_checkpoint

    def timed(*, best: bool = False) -> Path:
        start = time.perf_counter()
        path = save(best=True)
        saves.append({"step": trainer.state.step, "start": start, "end": time.perf_counter(),
                      "bytes": path.stat().st_size})
        return path

    trainer.save_checkpoint = timed


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    from trainwise.config import build
    from trainwise.config.schema import load_config

    block, warmup, rounds = QUICK if args.quick else FULL
    max_steps = warmup + rounds * block
    overrides = [f"data.root={args.mnist_root}", f"train.threads={args.threads}",
                 f"train.checkpoint.every_n_steps={block}", f"train.max_steps={max_steps}",
                 f"optimizer.lr={common.LR}",  # explicit: an lr range test is not what this measures
                 "train.report=false"]  # the report comes after the timed saves and is not part of the figure
    cfg = load_config(common.REPO_ROOT / "examples" / "mnist.yaml", overrides)
    build.pin_threads(cfg)
    bundle = build.load_bundle(cfg)
    if args.quick:
        bundle.train = (bundle.train[0][:2000], bundle.train[1][:2000])
    model = build.make_model(cfg, bundle)
    saves: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build.make_trainer(cfg, bundle, model, Path(scratch) / "run", progress=False)
        timed_saves(trainer, saves)
        trainer.fit(bundle.train, bundle.val)
        steps_per_epoch = trainer.state.batches_per_epoch
    mid_run = [s for s in saves if s["step"] % block == 0]
    mid_run = [s for i, s in enumerate(mid_run) if i == 0 or s["step"] != mid_run[i - 1]["step"]][:rounds + 1]
    fractions, save_ms, step_ms = [], [], []
    for before, save in zip(mid_run, mid_run[1:]):
        training = (save["start"] - before["end"]) / block
        seconds = save["end"] - save["start"]
        fractions.append(seconds / (training * steps_per_epoch))
        save_ms.append(seconds * 1e3)
        step_ms.append(training * 1e3)
    figure = statistics.median(fractions)
    payload = {
        "figure": "one epoch-end checkpoint / one epoch of training steps, examples/mnist.yaml",
        "headline": f"{figure:.2%} of an epoch ({statistics.median(save_ms):.0f} ms per checkpoint of "
                    f"{mid_run[-1]['bytes'] / 1e6:.1f} MB vs {statistics.median(step_ms):.0f} ms x "
                    f"{steps_per_epoch} steps)",
        "target": f"<= {TARGET:.0%}", "meets_target": figure <= TARGET, "fraction": round(figure, 5),
        "fraction_summary": common.ratio_summary(fractions),
        "checkpoint_ms": [round(ms, 1) for ms in save_ms], "step_ms": [round(ms, 1) for ms in step_ms],
        "checkpoint_bytes": mid_run[-1]["bytes"], "steps_per_epoch": steps_per_epoch,
        "config": {"config": "examples/mnist.yaml", "overrides": overrides, "block": block, "rounds": rounds},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "checkpoint_cost", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figure 2 — data path: the Trainer's training step on in-memory data vs the ideal hand-written
loop over in-memory index slicing, on case (a), the MLP 784-128-10 at batch 64 on MNIST.

The ideal hand loop (``common.hand_train`` over ``common.in_memory_batches``: one permutation
per epoch, one ``index_select`` per tensor, the Trainer's batch order) is the fastest way to feed
this model from memory; the Trainer, with its defaults on, picks its own in-memory loader. Both
run the same model, batch, optimizer, schedule and batch order. The relay alternates four
contestants in blocks of steps, all inside one epoch: the in-memory hand loop, the Trainer, the
in-memory hand loop again, and a hand loop over ``DataLoader(TensorDataset(x, y), batch_size=64,
shuffle=True)`` (every other setting default). The order rotates so that the Trainer's block
always sits between the two in-memory blocks (cyclically); a round's baseline is their mean.

Figure: median over rounds of the Trainer's block (its median step) / the in-memory hand loop's,
i.e. how much longer the Trainer's epoch takes than the ideal loop's. Target <= 1.05. Also
recorded: the control (the in-memory hand loop against itself: the noise floor) and, for
reference, the DataLoader loop's step over the Trainer's and over the in-memory loop's (the old
figure, whose 1.4x target was set against the DataLoader and cannot be met on this CPU: the
in-memory hand loop itself reaches about 1.28x).

    .venv/bin/python benchmarks/data_path.py                # writes results/data_path.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import common  # noqa: E402

TARGET = 1.05
FULL = (800, 100, 10, 4)  # steps, warm-up steps, block, repeats: one epoch of 844 batches holds them
QUICK = (12, 2, 5, 1)
# Cyclically, the Trainer always sits between the two in-memory hand loops, whatever the rotation.
NAMES = ["in_memory", "trainwise", "in_memory_again", "dataloader"]
BASELINE = ["in_memory", "in_memory_again"]


def epochs_of(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    precision = "fp32" if device.type == "cpu" else "bf16"
    autocast = None if device.type == "cpu" else torch.bfloat16
    case = common.CASES["mlp"]
    bundle = common.load_mnist(args.mnist_root)
    x, y = bundle.train
    x_dev, y_dev = x.to(device), y.to(device)
    val = tuple(t.to(device) for t in bundle.val)
    steps, warmup, block, repeats = QUICK if args.quick else FULL
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}

    def ticks(name: str) -> Any:
        return lambda: relay.tick(name)

    def in_memory(name: str) -> None:
        common.hand_train(case.build(), common.in_memory_batches(x_dev, y_dev, case.batch_size), steps=steps,
                          tick=ticks(name), device=device, precision=autocast)

    for repeat in range(repeats):
        shift = repeat % len(NAMES)
        relay = common.Relay(NAMES[shift:] + NAMES[:shift], block=block, steps=steps, warmup=warmup)
        # A user's DataLoader: the tensors on the host, pinned memory only when there is a GPU to copy to.
        loader = DataLoader(TensorDataset(x, y), batch_size=case.batch_size, shuffle=True,
                            pin_memory=device.type == "cuda")
        contestants = {
            "in_memory": lambda: in_memory("in_memory"),
            "trainwise": lambda: common.trainwise_fit(case.build(), (x_dev, y_dev), val, steps=steps,
                                                      batch_size=case.batch_size, device=device, precision=precision,
                                                      callbacks=[common.tick_callback(ticks("trainwise"))]),
            "in_memory_again": lambda: in_memory("in_memory_again"),
            "dataloader": lambda: common.hand_train(case.build(), epochs_of(loader), steps=steps, device=device,
                                                    tick=ticks("dataloader"), precision=autocast,
                                                    move_to_device=device.type != "cpu"),
        }
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    trainer_vs_ideal = common.compare(blocks, "trainwise", BASELINE)
    control = common.compare(blocks, "in_memory_again", "in_memory")
    dataloader_vs_trainer = common.compare(blocks, "dataloader", "trainwise")
    dataloader_vs_ideal = common.compare(blocks, "dataloader", BASELINE)
    figure = trainer_vs_ideal[common.PRIMARY_ESTIMATOR]["median"]
    per_step = common.summarize_steps(blocks)
    samples_per_second = {name: round(case.batch_size / (summary["mean_cpu_step_us"] * 1e-6))
                          for name, summary in per_step.items()}
    primary = common.PRIMARY_ESTIMATOR
    payload = {
        "figure": "Trainer step time on in-memory data / the ideal in-memory hand-written loop's step time "
                  "(the Trainer's epoch over the ideal loop's)",
        "headline": f"Trainer {figure:.3f}x the in-memory hand loop (control {control[primary]['median']:.3f}x; "
                    f"vs a DataLoader loop: Trainer {dataloader_vs_trainer[primary]['median']:.2f}x, "
                    f"in-memory loop {dataloader_vs_ideal[primary]['median']:.2f}x faster)",
        "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratio": figure,
        "trainer_vs_in_memory": trainer_vs_ideal, "control_in_memory_again_vs_in_memory": control,
        "dataloader_vs_trainer": dataloader_vs_trainer, "dataloader_vs_in_memory": dataloader_vs_ideal,
        "per_step": per_step, "samples_per_cpu_second": samples_per_second,
        "config": {"case": case.description, "steps": steps, "warmup": warmup, "block": block, "repeats": repeats,
                   "dataloader": "DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), num_workers=0"},
        "machine": common.machine_info(), "quick": args.quick, "device": str(device),
    }
    common.write_result(args.out, common.result_name("data_path", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figure 2 — data path: trainwise on in-memory data vs a hand-written loop over
``DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)`` (every other setting default),
samples per second on case (a), the MLP 784-128-10 at batch 64 on MNIST.

Three contestants share the relay: the ``Trainer`` with its defaults on (it picks its in-memory
loader: index slicing with one permutation per epoch), the hand-written loop over the
``DataLoader``, and the same hand-written loop over in-memory index slicing (the loader alone,
without the Trainer). Figure: median over rounds of the DataLoader loop's block time / the
Trainer's, which is the Trainer's samples/s over the DataLoader loop's. Target >= 1.4x.

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

TARGET = 1.4
FULL = (800, 100, 10, 2)  # steps, warm-up steps, block, repeats: one epoch of 844 batches holds them
QUICK = (12, 2, 5, 1)
NAMES = ["dataloader", "trainwise", "in_memory"]


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

    for repeat in range(repeats):
        relay = common.Relay(NAMES[repeat % 3:] + NAMES[:repeat % 3], block=block, steps=steps, warmup=warmup)
        # A user's DataLoader: the tensors on the host, pinned memory only when there is a GPU to copy to.
        loader = DataLoader(TensorDataset(x, y), batch_size=case.batch_size, shuffle=True,
                            pin_memory=device.type == "cuda")
        contestants = {
            "dataloader": lambda: common.hand_train(case.build(), epochs_of(loader), steps=steps, device=device,
                                                    tick=lambda: relay.tick("dataloader"), precision=autocast,
                                                    move_to_device=device.type != "cpu"),
            "trainwise": lambda: common.trainwise_fit(case.build(), (x_dev, y_dev), val, steps=steps,
                                                      batch_size=case.batch_size, device=device, precision=precision,
                                                      callbacks=[common.tick_callback(ticks("trainwise"))]),
            "in_memory": lambda: common.hand_train(case.build(),
                                                   common.in_memory_batches(x_dev, y_dev, case.batch_size),
                                                   steps=steps, tick=ticks("in_memory"), device=device,
                                                   precision=autocast),
        }
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    trainer_speedup = common.compare(blocks, "dataloader", "trainwise")
    loader_speedup = common.compare(blocks, "dataloader", "in_memory")
    figure = trainer_speedup[common.PRIMARY_ESTIMATOR]["median"]
    per_step = common.summarize_steps(blocks)
    samples_per_second = {name: round(case.batch_size / (summary["mean_cpu_step_us"] * 1e-6))
                          for name, summary in per_step.items()}
    payload = {
        "figure": "samples/s of the Trainer on in-memory data / samples/s of a hand-written loop over "
                  "DataLoader(TensorDataset)",
        "headline": f"Trainer {figure:.2f}x the DataLoader loop (in-memory hand loop "
                    f"{loader_speedup[common.PRIMARY_ESTIMATOR]['median']:.2f}x)",
        "target": f">= {TARGET}", "meets_target": figure >= TARGET, "ratio": figure,
        "trainer_vs_dataloader": trainer_speedup, "in_memory_loop_vs_dataloader": loader_speedup,
        "per_step": per_step, "samples_per_cpu_second": samples_per_second,
        "config": {"case": case.description, "steps": steps, "warmup": warmup, "block": block, "repeats": repeats,
                   "dataloader": "DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), num_workers=0"},
        "machine": common.machine_info(), "quick": args.quick, "device": str(device),
    }
    common.write_result(args.out, common.result_name("data_path", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

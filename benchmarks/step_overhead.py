"""Figure 1 — step overhead: trainwise ``Trainer`` vs the hand-written PyTorch loop.

Both train the same model (same seed and init) with AdamW in the Trainer's parameter groups,
the same 1cycle schedule and the same batch order (in-memory index slicing), on MNIST:
(a) MLP 784-128-10 at batch 64, where the loop's own cost matters most; (b) the CNN of
``examples/mnist.yaml`` at batch 128. The Trainer runs with its defaults on: early stopping,
checkpointing, the non-finite guard (loss read and checked every step on CPU), metric logging
every 50 steps, and the progress bar (writing plain lines to a non-terminal).

The relay alternates them in blocks of steps, after a warm-up, all inside one epoch (the
end-of-epoch validation and checkpoint are not per-step costs; ``checkpoint_cost.py`` measures
those). The hand loop runs twice per round, as ``hand`` and ``hand_again``, and the order
rotates so that trainwise's block always sits between the two (cyclically): a round's baseline is
the mean of the two, which brackets trainwise's block. Figure: median over rounds of trainwise's
block (its median step) over that baseline. Target <= 1.03. The control, ``hand_again`` over
``hand``, is what two identical loops differ by on this machine: the noise floor.

    .venv/bin/python benchmarks/step_overhead.py            # writes results/step_overhead.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import common  # noqa: E402

TARGET = 1.03
# Per case: steps per contestant, untimed warm-up steps, steps per timed block, repeats (fresh models,
# fresh threads, the order rotated). All steps of a repeat fit in one epoch.
# Six repeats of the MLP, eight of the CNN (each rotation at least twice): every repeat builds fresh
# models, and on this machine each instance has its own speed within a few percent (the CNN's up to
# ~10%), which rounds within one repeat cannot average out; more, shorter repeats do.
FULL = {"mlp": (400, 100, 10, 6), "cnn": (18, 4, 2, 8)}
QUICK = {"mlp": (12, 2, 5, 1), "cnn": (12, 2, 5, 1)}
NAMES = ["hand", "trainwise", "hand_again"]


def measure_case(case: common.Case, bundle: Any, *, steps: int, warmup: int, block: int, repeats: int,
                 device: torch.device, precision: str) -> dict[str, Any]:
    """Relay the hand loop, the Trainer and the hand loop again (the control: what two identical
    loops differ by on this machine, the noise floor) on ``case``."""
    x, y = (t.to(device) for t in bundle.train)
    val = tuple(t.to(device) for t in bundle.val)
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}
    for repeat in range(repeats):
        relay = common.Relay(NAMES[repeat % 3:] + NAMES[:repeat % 3], block=block, steps=steps, warmup=warmup)

        def hand(name: str) -> None:
            common.hand_train(case.build(), common.in_memory_batches(x, y, case.batch_size), steps=steps,
                              tick=lambda: relay.tick(name), device=device, precision=autocast)

        def trainwise() -> None:
            common.trainwise_fit(case.build(), (x, y), val, steps=steps, batch_size=case.batch_size,
                                 callbacks=[common.tick_callback(lambda: relay.tick("trainwise"))],
                                 device=device, precision=precision)

        contestants = {"hand": lambda: hand("hand"), "trainwise": trainwise, "hand_again": lambda: hand("hand_again")}
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    ratios = common.compare(blocks, "trainwise", ["hand", "hand_again"])
    figure = ratios[common.PRIMARY_ESTIMATOR]["median"]
    control = common.compare(blocks, "hand_again", "hand")
    return {"case": case.description, "batch_size": case.batch_size, "ratio": figure, "ratios": ratios,
            "control_hand_again_vs_hand": control, "per_step": common.summarize_steps(blocks),
            "meets_target": figure <= TARGET,
            "config": {"steps": steps, "warmup": warmup, "block": block, "repeats": repeats,
                       "precision": precision, "train_samples": len(x)}}


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(FULL), default=sorted(FULL, reverse=True),
                        help="which cases to run (default both)")
    args = parser.parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    precision = "fp32" if device.type == "cpu" else "bf16"
    bundle = common.load_mnist(args.mnist_root)
    plan = QUICK if args.quick else FULL
    cases = {}
    for name in args.cases:
        steps, warmup, block, repeats = plan[name]
        cases[name] = measure_case(common.CASES[name], bundle, steps=steps, warmup=warmup, block=block,
                                   repeats=repeats, device=device, precision=precision)
    meets = all(case["meets_target"] for case in cases.values())
    headline = "  ".join(f"({'a' if name == 'mlp' else 'b'}) {name} {case['ratio']:.3f}x (control "
                         f"{case['control_hand_again_vs_hand'][common.PRIMARY_ESTIMATOR]['median']:.3f}x)"
                         for name, case in cases.items())
    payload = {"figure": "step overhead: Trainer step time / hand-written loop step time",
               "headline": headline, "target": f"<= {TARGET} for both cases", "meets_target": meets,
               "cases": cases, "machine": common.machine_info(), "quick": args.quick, "device": str(device)}
    common.write_result(args.out, common.result_name("step_overhead", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed options: ``train.compile``, ``train.channels_last`` and ``model.checkpointing``, each against the
plain model, measured side by side (the relay of ``step_overhead.py``: blocks of steps, interleaved,
rotated, fresh models each repeat; a round's baseline is the mean of the plain model run on either
side of the option).

- compile: the MNIST CNN of ``examples/mnist.yaml`` (batch 128), ``nn.Module.compile()`` (inductor);
  the warm-up steps, outside the timing, pay the compilation, recorded separately.
- channels_last: the same CNN with its weights in NHWC (``model.to(memory_format=torch.channels_last)``).
- checkpointing: a ResNet 32-64-128 on MNIST (batch 128) with ``model.checkpointing`` on: the bytes
  autograd keeps for backward (the activation memory it saves; exact, from saved-tensor hooks) and
  the step time it costs (the recomputation).

Figure per option: option step / plain step (median of per-round ratios; < 1 is faster). An option
becomes a default only when it wins here on the machine it would be a default for; the results say
so, nothing is asserted. On a GPU (``--device cuda``) the same script writes ``speed_options_cuda.json``.

    .venv/bin/python benchmarks/speed_options.py                  # writes results/speed_options.json
    .venv/bin/python benchmarks/speed_options.py --options channels_last checkpointing
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import common  # noqa: E402
from trainwise.models.checkpointing import saved_activation_bytes  # noqa: E402

OPTIONS = ("compile", "channels_last", "checkpointing")
FULL = (22, 6, 2, 3)  # steps, untimed warm-up (compilation), steps per block, repeats
QUICK = (6, 2, 2, 1)
NAMES = ["plain", "option", "plain_again"]


def build(option: str, enabled: bool) -> torch.nn.Module:
    from trainwise.models.init import initialize
    from trainwise.models import build_model
    from trainwise.engine.speed import speed_options

    torch.manual_seed(0)
    if option == "checkpointing":
        model = build_model("resnet", input_shape=(1, 28, 28), num_outputs=10, channels=[32, 64, 128], norm="batch",
                            checkpointing=enabled)
    else:
        model = build_model("cnn", input_shape=(1, 28, 28), num_outputs=10, channels=[32, 64], hidden=[128],
                            norm="batch", dropout=0.1)
    initialize(model, "auto", activation="relu")
    if enabled and option != "checkpointing":
        model = speed_options(model, torch.device("cpu"), compile=option == "compile",
                              channels_last=option == "channels_last")
    return model


def measure(option: str, x: torch.Tensor, y: torch.Tensor, plan: tuple[int, int, int, int],
            device: torch.device) -> dict[str, Any]:
    steps, warmup, block, repeats = plan
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}
    first_steps: list[float] = []
    for repeat in range(repeats):
        relay = common.Relay(NAMES[repeat % 3:] + NAMES[:repeat % 3], block=block, steps=steps, warmup=warmup)

        def train(name: str, enabled: bool) -> Callable[[], None]:
            def run() -> None:
                model = build(option, enabled).to(device)
                started = [time.perf_counter()]

                def tick() -> None:
                    if enabled and len(first_steps) <= repeat:
                        first_steps.append(time.perf_counter() - started[0])  # includes compilation
                    relay.tick(name)

                common.hand_train(model, common.in_memory_batches(x, y, 128), steps=steps, tick=tick, device=device)
            return run

        for name, timed in relay.run({"plain": train("plain", False), "option": train("option", True),
                                      "plain_again": train("plain_again", False)}).items():
            blocks[name] += timed
    ratio = common.compare(blocks, "option", ["plain", "plain_again"])
    control = common.compare(blocks, "plain_again", "plain")
    result = {"ratio": ratio[common.PRIMARY_ESTIMATOR]["median"], "ratios": ratio, "control": control,
              "per_step": common.summarize_steps(blocks), "first_step_seconds": [round(s, 2) for s in first_steps],
              "config": {"steps": steps, "warmup": warmup, "block": block, "repeats": repeats, "batch_size": 128}}
    if option == "checkpointing":
        xb, yb = x[:128].clone(), y[:128].clone()  # not views of the whole set: its storage would count
        plain = saved_activation_bytes(build(option, False), xb, yb)
        checkpointed = saved_activation_bytes(build(option, True), xb, yb)
        result["saved_for_backward_mb"] = {"plain": round(plain / 2**20, 2), "checkpointing": round(checkpointed / 2**20, 2),
                                           "fraction_saved": round(1 - checkpointed / plain, 4)}
    return result


def headline(option: str, result: dict[str, Any]) -> str:
    control = result["control"][common.PRIMARY_ESTIMATOR]["median"]
    text = f"{option} {result['ratio']:.3f}x the plain step (control {control:.3f}x)"
    if "saved_for_backward_mb" in result:
        memory = result["saved_for_backward_mb"]
        text += (f", activations {memory['checkpointing']} MB vs {memory['plain']} MB "
                 f"({memory['fraction_saved']:.0%} saved)")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS))
    args = parser.parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    bundle = common.load_mnist(args.mnist_root)
    x, y = (t.to(device) for t in bundle.train)
    plan = QUICK if args.quick else FULL
    results: dict[str, Any] = {}
    for option in args.options:
        if option == "compile" and args.quick:
            continue  # compiling takes 30 s to minutes: the smoke test leaves it out
        results[option] = measure(option, x, y, plan, device)
        print(f"  {headline(option, results[option])}", flush=True)
        write(args, device, results)  # after each option: a long run stopped early keeps what it measured
    if not results:
        write(args, device, results)
    return 0


def write(args: Any, device: torch.device, results: dict[str, Any]) -> None:
    wins = {option: result["ratio"] < 1 - 0.03 for option, result in results.items() if option != "checkpointing"}
    payload = {"figure": "step time with the option / without it (interleaved relay, median of rounds)",
               "headline": "; ".join(headline(o, r) for o, r in results.items()) or "nothing measured",
               "target": "none (a default only if it wins by more than 3%, beyond the noise)",
               "meets_target": True, "wins": wins, "options": results, "not_measured": [
                   o for o in args.options if o not in results], "machine": common.machine_info(),
               "quick": args.quick, "device": str(device)}
    common.write_result(args.out, common.result_name("speed_options", device), payload)


if __name__ == "__main__":
    sys.exit(main())

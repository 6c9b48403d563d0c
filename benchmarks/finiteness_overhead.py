"""The device-side finiteness check: its cost per training step, measured side by side.

The loop on an accelerator does not read the loss each step (a host sync per step); instead the
finiteness of training builds up on the device and is read at log steps, epoch ends and before
every checkpoint write (``trainwise.engine.nonfinite.DeviceFiniteness``). Its per-step cost is one
``add_`` of the gradient norm into a 0-d tensor when clipping by norm (the loss is already summed
on the device by the loop, and NaN/Inf are absorbing in that sum), plus one read every
``log_every_n_steps`` steps.

Both contestants run the loop's accelerator-path step (forward, loss, the device loss sum,
backward, ``clip_grad_norm_``, AdamW step) on the same model; ``checked`` adds the observe per step
and the read every 50 steps. Blocks alternate A/B/A so a busy machine slows both alike; the figure
(``side_by_side_ratio``) is the median over rounds of checked / the mean of the two plain blocks
around it. On a busy machine whole steps vary by more than 1% (``control_plain_vs_plain``), so the
figure is the check timed alone (``added_us_per_step``: the fastest of five timings of 20,000
observes and 1,000 reads) as a fraction of the fastest plain step: 1 + that fraction. Target: the
check costs <= 1% of the step time (figure <= 1.01). Here on the CPU (the GPU figure needs a GPU).

    .venv/bin/python benchmarks/finiteness_overhead.py          # writes results/finiteness_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from trainwise.engine.nonfinite import DeviceFiniteness  # noqa: E402

TARGET = 1.01
LOG_EVERY = 50


def make(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def block(model, optimizer, x, y, *, steps: int, checked: bool, finiteness: DeviceFiniteness) -> float:
    """Seconds per step over ``steps`` steps of the loop's accelerator path."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    synchronize(x.device)
    start = time.perf_counter()
    for step in range(steps):
        index = (step * 64) % (len(x) - 64)
        loss = torch.nn.functional.cross_entropy(model(x[index:index + 64]), y[index:index + 64])
        loss_sum += loss.detach() * 64
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if checked:
            finiteness.observe(norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if checked and (step + 1) % LOG_EVERY == 0 and not finiteness.all_finite(loss_sum):
            raise RuntimeError("training went non-finite in the benchmark")
    synchronize(x.device)
    return (time.perf_counter() - start) / steps


def added_seconds_per_step(device: torch.device, calls: int = 20000) -> float:
    """What the check adds to one step, timed alone (short calls, so a busy machine blurs it less than
    it blurs whole steps): one observe, plus one read per LOG_EVERY steps."""
    finiteness = DeviceFiniteness(device)
    norm = torch.ones((), device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    best_observe, best_read = float("inf"), float("inf")
    for _ in range(5):  # the fastest of five: the cost itself, not the machine's other work
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            finiteness.observe(norm)
        synchronize(device)
        best_observe = min(best_observe, (time.perf_counter() - start) / calls)
        start = time.perf_counter()
        for _ in range(calls // 20):
            finiteness.all_finite(loss_sum)
        best_read = min(best_read, (time.perf_counter() - start) / (calls // 20))
    return best_observe + best_read / LOG_EVERY


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100, help="steps per block (a multiple of 50 reads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    device = torch.device(args.device)
    x, y = torch.randn(4096, 784, generator=generator), torch.randint(0, 10, (4096,), generator=generator)
    x, y = x.to(device), y.to(device)
    model, optimizer = make()
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    finiteness = DeviceFiniteness(device)
    block(model, optimizer, x, y, steps=args.steps, checked=True, finiteness=finiteness)  # warm-up
    ratios, controls, plain_times, checked_times = [], [], [], []
    for _ in range(args.rounds):
        before = block(model, optimizer, x, y, steps=args.steps, checked=False, finiteness=finiteness)
        checked = block(model, optimizer, x, y, steps=args.steps, checked=True, finiteness=finiteness)
        after = block(model, optimizer, x, y, steps=args.steps, checked=False, finiteness=finiteness)
        ratios.append(checked / ((before + after) / 2))
        controls.append(after / before)  # two identical plain blocks: the noise floor
        plain_times += [before, after]
        checked_times.append(checked)
    figure = statistics.median(ratios)
    added = added_seconds_per_step(device)
    fastest_step = min(plain_times)
    import platform

    fraction = added / fastest_step
    result = {
        "figure": round(1 + fraction, 5),
        "headline": f"device-side finiteness check: {1e6 * added:.1f} us per step, {100 * fraction:.3f}% of the "
                    f"fastest step (MLP 784-128-10, batch 64, AdamW, clip by norm, {device.type}); side by side "
                    f"{100 * (figure - 1):+.2f}% (median of {args.rounds} A/B/A rounds; two identical plain blocks differ "
                    f"by {100 * (statistics.median(controls) - 1):+.1f}% here: noise)",
        "target": f"<= {TARGET} (the check costs at most 1% of a step)",
        "meets_target": 1 + fraction <= TARGET,
        "side_by_side_ratio": round(figure, 4),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
        "control_plain_vs_plain": round(statistics.median(controls), 4),
        "added_us_per_step": round(1e6 * added, 3),
        "added_fraction_of_fastest_plain_step": round(added / fastest_step, 5),
        "median_step_ms": {"plain": round(1e3 * statistics.median(plain_times), 4),
                           "checked": round(1e3 * statistics.median(checked_times), 4)},
        "ratio_quartiles": [round(q, 4) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else None,
        "config": {"rounds": args.rounds, "steps_per_block": args.steps, "log_every": LOG_EVERY},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (args.out / f"finiteness_overhead{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result["headline"], "->", "meets target" if result["meets_target"] else "misses target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

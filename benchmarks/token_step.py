"""Token path step overhead: trainwise ``Trainer`` vs the hand-written loop on a GRU language model.

The model (embedding 64, GRU 128, linear head over a vocabulary of 65) returns logits ``(N, T, V)``
for ``T = 64``; targets ``(N, T)`` are padded with -100 after each sequence's own length. The hand
loop writes nanoGPT's loss, ``F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)``;
the Trainer gets ``loss="cross_entropy"`` and decides the class axis itself, computes the masked sum
and the token count, and divides the gradients by the step's count. Everything else is
``step_overhead.py``'s relay: the same AdamW groups, 1cycle schedule and batch order, blocks of
steps alternated after a warm-up, the hand loop run twice per round to bracket trainwise's block.
Figure: median over rounds of trainwise's block over that baseline. Target <= 1.03.

    .venv/bin/python benchmarks/token_step.py          # writes results/token_step.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import common  # noqa: E402

TARGET = 1.03
VOCAB, LENGTH, BATCH = 65, 64, 32
FULL = (120, 20, 10, 6)  # steps per contestant, warm-up steps, steps per timed block, repeats
QUICK = (12, 2, 5, 1)
NAMES = ["hand", "trainwise", "hand_again"]


class GRULM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.gru, self.head = nn.Embedding(VOCAB, 64), nn.GRU(64, 128, batch_first=True), \
            nn.Linear(128, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.embed(ids))[0])


def build() -> nn.Module:
    torch.manual_seed(0)
    return GRULM()


def token_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids and next-token targets, each row padded with -100 after its own length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH + 1), generator=g)
    x, y = ids[:, :-1].clone(), ids[:, 1:].clone()
    lengths = torch.randint(LENGTH // 2, LENGTH + 1, (n,), generator=g)
    y[torch.arange(LENGTH)[None, :] >= lengths[:, None]] = -100
    return x, y


def hand_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1), ignore_index=-100)


def measure(*, steps: int, warmup: int, block: int, repeats: int, device: torch.device) -> dict[str, Any]:
    x, y = (t.to(device) for t in token_data(BATCH * (steps + 2)))
    val = tuple(t.to(device) for t in token_data(64, seed=1))
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}
    for repeat in range(repeats):
        relay = common.Relay(NAMES[repeat % 3:] + NAMES[:repeat % 3], block=block, steps=steps, warmup=warmup)

        def hand(name: str) -> None:
            common.hand_train(build(), common.in_memory_batches(x, y, BATCH), steps=steps,
                              tick=lambda: relay.tick(name), device=device, loss_fn=hand_loss)

        def trainwise() -> None:
            common.trainwise_fit(build(), (x, y), val, steps=steps, batch_size=BATCH,
                                 callbacks=[common.tick_callback(lambda: relay.tick("trainwise"))], device=device)

        contestants = {"hand": lambda: hand("hand"), "trainwise": trainwise, "hand_again": lambda: hand("hand_again")}
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    ratios = common.compare(blocks, "trainwise", ["hand", "hand_again"])
    control = common.compare(blocks, "hand_again", "hand")
    figure = ratios[common.PRIMARY_ESTIMATOR]["median"]
    return {"ratio": figure, "ratios": ratios, "control_hand_again_vs_hand": control,
            "per_step": common.summarize_steps(blocks), "meets_target": figure <= TARGET,
            "config": {"steps": steps, "warmup": warmup, "block": block, "repeats": repeats, "batch": BATCH,
                       "length": LENGTH, "vocab": VOCAB}}


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    steps, warmup, block, repeats = QUICK if args.quick else FULL
    case = measure(steps=steps, warmup=warmup, block=block, repeats=repeats, device=device)
    control = case["control_hand_again_vs_hand"][common.PRIMARY_ESTIMATOR]["median"]
    payload = {"figure": "token path step overhead: Trainer step time / hand-written loop step time (GRU LM)",
               "headline": f"GRU LM (N, T, V) with -100 padding: {case['ratio']:.3f}x (control {control:.3f}x)",
               "target": f"<= {TARGET}", "meets_target": case["meets_target"], "case": case,
               "machine": common.machine_info(), "quick": args.quick, "device": str(device)}
    common.write_result(args.out, common.result_name("token_step", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

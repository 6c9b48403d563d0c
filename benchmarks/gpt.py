"""The small GPT: tokens/s through the Trainer vs a hand-written nanoGPT-style loop on the same
model, and the example's validation bits per character vs a character bigram model.

Speed: ``examples/gpt.yaml``'s model (2 layers, 4 heads, width 64, block 64, batch 32) on the
bundled corpus. Contestants, alternated in blocks of steps by ``common.Relay``:

- ``hand``: nanoGPT's ``get_batch`` (random offsets into the ``np.memmap`` of token ids, a stack of
  ``x = data[i:i+block]``, ``y = data[i+1:i+1+block]``) and ``common.hand_train`` with the loss on
  the flattened logits ``F.cross_entropy(logits.view(-1, V), y.view(-1))``;
- ``trainwise``: ``Trainer.fit`` on ``load_text``'s training windows (its loss: cross_entropy);
- ``hand_again``: the hand loop again, so the baseline brackets the Trainer.

Figure: median over rounds of the Trainer's median step over the hand loop's (target <= 1.05).

Quality: bits per character on the validation split of ``examples/gpt.yaml``'s run (``--run``, or
trained here with the CLI when not given) against a character bigram model fitted on the train
split (add-one smoothing), scored on the same validation tokens.

    .venv/bin/python benchmarks/gpt.py [--run RUN_DIR]        # writes results/gpt.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402

TARGET = 1.05
FULL = (60, 10, 10, 2)  # steps, warm-up steps, block, repeats
QUICK = (8, 2, 3, 1)
NAMES = ["hand", "trainwise", "hand_again"]
BASELINE = ["hand", "hand_again"]
EXAMPLE = common.REPO_ROOT / "examples" / "gpt.yaml"


def build_model(vocab: int, block: int, seed: int = 0) -> torch.nn.Module:
    """The example's model (``examples/gpt.yaml``), initialized as the CLI does (``init: gpt``)."""
    from trainwise.config.schema import load_config
    from trainwise.models import build_model as build
    from trainwise.models.init import initialize

    m = load_config(EXAMPLE).model
    torch.manual_seed(seed)
    model = build("gpt", input_shape=(block,), num_outputs=vocab, layers=m.layers, heads=m.heads, width=m.width)
    initialize(model, "gpt")
    return model


def nanogpt_batches(token_file: str, dtype: str, end: int, block: int, batch: int, seed: int = 0) -> Iterator[Any]:
    """nanoGPT's get_batch: random offsets into the memmap, re-opened per batch as it does."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        data = np.memmap(token_file, dtype=dtype, mode="r")
        starts = torch.randint(end - block - 1, (batch,), generator=generator)
        x = torch.stack([torch.from_numpy(data[i:i + block].astype(np.int64)) for i in starts.tolist()])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block].astype(np.int64)) for i in starts.tolist()])
        yield x, y


def flat_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def speed(args: Any, device: torch.device) -> dict[str, Any]:
    from trainwise.config.schema import load_config
    from trainwise.data.text_data import load_text

    cfg = load_config(EXAMPLE)
    d = cfg.data
    bundle = load_text(d.path, tokenizer=d.tokenizer, block_size=d.block_size, batch_size=d.batch_size)
    token_file, train_end = bundle.details["token_file"], bundle.details["tokens"]["train"]
    vocab, block = bundle.num_outputs, d.block_size
    steps, warmup, size, repeats = QUICK if args.quick else FULL
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}
    for repeat in range(repeats):
        shift = repeat % len(NAMES)
        relay = common.Relay(NAMES[shift:] + NAMES[:shift], block=size, steps=steps, warmup=warmup)

        def hand(name: str) -> None:
            batches = nanogpt_batches(token_file, "uint16", train_end, block, d.batch_size, seed=repeat)
            common.hand_train(build_model(vocab, block), batches, steps=steps, tick=lambda: relay.tick(name),
                              device=device, move_to_device=True, loss_fn=flat_cross_entropy)

        contestants = {
            "hand": lambda: hand("hand"), "hand_again": lambda: hand("hand_again"),
            "trainwise": lambda: common.trainwise_fit(
                build_model(vocab, block), bundle.train, None, steps=steps, batch_size=d.batch_size, device=device,
                callbacks=[common.tick_callback(lambda: relay.tick("trainwise"))]),
        }
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    ratio = common.compare(blocks, "trainwise", BASELINE)
    control = common.compare(blocks, "hand_again", "hand")
    per_step = common.summarize_steps(blocks)
    tokens = d.batch_size * block
    return {"trainer_vs_hand": ratio, "control_hand_again_vs_hand": control, "per_step": per_step,
            "tokens_per_second_median_step": {n: round(tokens / (s["median_step_us"] * 1e-6))
                                              for n, s in per_step.items()},
            "config": {"model": "examples/gpt.yaml's gpt", "block_size": block, "batch_size": d.batch_size,
                       "steps": steps, "warmup": warmup, "block": size, "repeats": repeats}}


def bigram_bits_per_char(tokens: np.ndarray, train_end: int, val_end: int, vocab: int) -> float:
    """A character bigram model (add-one smoothing) fitted on the train split, scored on the val split."""
    train = tokens[:train_end].astype(np.int64)
    counts = np.ones((vocab, vocab))
    np.add.at(counts, (train[:-1], train[1:]), 1)
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True))
    val = tokens[train_end:val_end].astype(np.int64)
    return float(-log_p[val[:-1], val[1:]].mean())


def quality(run_dir: Path | None, wait: float = 0.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while run_dir is not None and not (run_dir / "summary.json").is_file() and time.monotonic() < deadline:
        time.sleep(10)  # a run of the example still training (started beside this benchmark)
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp()) / "gpt-pydoc"
        subprocess.run([sys.executable, "-m", "trainwise", "train", str(EXAMPLE), "--run-dir", str(run_dir),
                        "--quiet"], check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    tokens = np.fromfile(data["token_file"], dtype="uint16")
    train_end = data["tokens"]["train"]
    bigram = bigram_bits_per_char(tokens, train_end, train_end + data["tokens"]["val"], data["vocab_size"])
    unigram = np.bincount(tokens[:train_end], minlength=data["vocab_size"]) + 1
    p = unigram / unigram.sum()
    return {"gpt_val_bits_per_char": summary.get("best_val_bits_per_char"),
            "gpt_test_bits_per_char": summary.get("test_bits_per_char"),
            "bigram_val_bits_per_char": round(bigram, 4),
            "unigram_entropy_bits": round(float(-(p * np.log2(p)).sum()), 4),
            "gpt_steps": summary.get("steps"), "gpt_wall_seconds": summary.get("wall_seconds"),
            "run": str(run_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run of examples/gpt.yaml (default: train one here)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for --run to finish (default 0)")
    args = parser.parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    measured = speed(args, device)
    figure = measured["trainer_vs_hand"][common.PRIMARY_ESTIMATOR]["median"]
    bits = quality(args.run, args.wait) if not args.quick else {}
    headline = f"Trainer {figure:.3f}x the hand nanoGPT loop"
    if bits:
        headline += (f"; val bits/char: GPT {bits['gpt_val_bits_per_char']:.3f}, "
                     f"bigram {bits['bigram_val_bits_per_char']:.3f}")
    payload = {"figure": "Trainer step time on the example GPT / a hand nanoGPT-style loop's (tokens/s ratio)",
               "headline": headline, "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratio": figure,
               **measured, "bits_per_char": bits, "machine": common.machine_info(), "quick": args.quick,
               "device": str(device)}
    common.write_result(args.out, common.result_name("gpt", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The hand-written PyTorch run that figures 4 (time to accuracy) and 6 (memory) compare the CLI with.

Plain PyTorch and NumPy: it reads the data itself (the MNIST IDX files, or an ``.npz``),
standardizes with the train split's per-channel statistics, and trains the CLI's model (built by
``trainwise.models`` and initialized by ``trainwise.models.init``, so both start from the same weights)
with AdamW (no decay on biases and norms), ``torch.optim.lr_scheduler.OneCycleLR`` stepped every
update, the batch order ``trainwise`` uses (one seeded permutation per epoch), and an evaluation
after every epoch. Each evaluation prints one flushed line, ``epoch E step S eval_accuracy A``,
so a parent process can time it. At the end it saves the model and optimizer with ``torch.save``.

    .venv/bin/python benchmarks/hand_run.py --npz mnist_valtest.npz --epochs 2 --channels 32 64
    .venv/bin/python benchmarks/hand_run.py --idx ../shared/data/mnist --max-steps 200
"""

from __future__ import annotations

import argparse
import gzip
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_idx(root: Path, val_fraction: float, seed: int) -> tuple[tuple, tuple, tuple]:
    """MNIST from its four IDX files: train minus a random ``val_fraction`` held out, val, test."""
    x = read_idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    y = read_idx(root / "train-labels-idx1-ubyte.gz", 8)
    x_test = read_idx(root / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    y_test = read_idx(root / "t10k-labels-idx1-ubyte.gz", 8)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val_index, train_index = order[:n_val], order[n_val:]

    def as_tensors(xs: np.ndarray, ys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(xs.astype(np.float32)), torch.from_numpy(ys.astype(np.int64))

    return (as_tensors(x[train_index], y[train_index]), as_tensors(x[val_index], y[val_index]),
            as_tensors(x_test, y_test))


def load_npz(path: Path) -> tuple[tuple, tuple, None]:
    """Arrays ``x``, ``y`` (train) and ``x_val``, ``y_val`` (evaluated every epoch)."""
    with np.load(path) as arrays:
        train = torch.from_numpy(arrays["x"].astype(np.float32)), torch.from_numpy(arrays["y"].astype(np.int64))
        val = torch.from_numpy(arrays["x_val"].astype(np.float32)), torch.from_numpy(arrays["y_val"].astype(np.int64))
    return train, val, None


def standardize(train_x: torch.Tensor, *others: torch.Tensor) -> None:
    """Per-channel standardization with the train split's statistics, in place."""
    std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0, keepdim=True)
    for x in (train_x, *others):
        x.sub_(mean).div_(std)


def build(args: argparse.Namespace) -> nn.Module:
    from trainwise.models.init import initialize
    from trainwise.models import build_model

    torch.manual_seed(args.seed)
    model = build_model("cnn", input_shape=(1, 28, 28), num_outputs=10, channels=args.channels, hidden=args.hidden,
                        norm=args.norm, dropout=args.dropout, kernel_size=args.kernel_size)
    initialize(model, "auto", activation="relu")
    return model


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        out = model(x[start:start + batch_size])
        loss_sum += F.cross_entropy(out, y[start:start + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[start:start + batch_size]).sum().item()
    model.train()
    return correct / len(x), loss_sum / len(x)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.npz is not None:
        (x, y), (x_val, y_val), test = load_npz(args.npz)
    else:
        (x, y), (x_val, y_val), test = load_idx(args.idx, args.val_fraction, args.seed)
    standardize(x, x_val, *(test[:1] if test else ()))
    model = build(args)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    total = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total)
    torch.manual_seed(args.seed)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed * 1_000_003 + epoch))
        running = 0.0
        for start in range(0, len(x), args.batch_size):
            index = order[start:start + args.batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {step}")
            running += value
            loss.backward()
            if args.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step < total:
                scheduler.step()
            if step >= total:
                break
        accuracy, loss_value = evaluate(model, x_val, y_val, args.eval_batch_size)
        print(f"epoch {epoch + 1} step {step} eval_accuracy {accuracy:.6f} eval_loss {loss_value:.6f} "
              f"train_loss {running / max(step - epoch * steps_per_epoch, 1):.6f}", flush=True)
        if step >= total:
            break
    if test is not None:
        accuracy, _ = evaluate(model, *test, args.eval_batch_size)
        print(f"test_accuracy {accuracy:.6f}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, Path(scratch) / "last.pt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--npz", type=Path, help="npz with x, y (train) and x_val, y_val (evaluated each epoch)")
    source.add_argument("--idx", type=Path, help="folder of the MNIST IDX files (val split held out of train)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=256, help="the Trainer's default, max(batch, 256)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--hidden", type=int, nargs="*", default=[128])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm (default: off)")
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train(args)
    print(f"done {time.perf_counter() - start:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

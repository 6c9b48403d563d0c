"""Image folders: samples/s of the Trainer on ``data.dataset: imagefolder`` data vs a hand loop over
a torchvision-style ``ImageFolder`` + ``DataLoader`` with the same number of workers.

A folder of 3,000 PNGs (scikit-learn's digits, upscaled to 32x32 RGB, 10 classes) is written to a
temporary folder. Contestants, alternated in blocks of steps by ``common.Relay`` inside one epoch:

- ``hand``: the loop a user writes with torchvision: a Dataset that opens each file with Pillow,
  ``convert("RGB")``, turns it into a float tensor in [0, 1] and normalizes it (``ImageFolder`` +
  ``ToTensor`` + ``Normalize``: torchvision itself has no wheel for this CPU build of torch 2.13,
  so its ``default_loader`` and transforms are written out here, the same calls), then
  ``DataLoader(batch_size=32, shuffle=True, num_workers=W)`` and ``common.hand_train``.
- ``trainwise``: ``load_image_folder(cache=False, num_workers=W)``: the same decoding in the
  Trainer's DataLoader workers.
- ``hand_again``: the hand loop again, so the baseline brackets the Trainer.
- ``trainwise_cached``: ``cache=auto``: the images decoded once up front (not timed here; its cost
  is reported apart), then batches sliced from memory.

Figure: median over rounds of the Trainer's median step over the hand loop's (target <= 1.05);
also the cached path's step over the hand loop's and the one-time decode cost of the cache.

    .venv/bin/python benchmarks/image_folder.py            # writes results/image_folder.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

import common  # noqa: E402

TARGET = 1.05
FULL = (80, 10, 10, 3)  # steps, warm-up steps, block, repeats (an epoch of 3,000 images at 32 is 94 steps)
QUICK = (8, 2, 3, 1)
WORKERS = 2
BATCH = 32
NAMES = ["hand", "trainwise", "hand_again", "trainwise_cached"]
BASELINE = ["hand", "hand_again"]


def write_folder(root: Path, count: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index in range(count):
        image, label = digits.images[index % len(digits.images)], digits.target[index % len(digits.images)]
        pixels = np.kron(image / 16.0 * 255, np.ones((4, 4))).astype(np.uint8)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([pixels, pixels[::-1], pixels.T], axis=-1)).save(folder / f"{index}.png")


class HandImageFolder(Dataset):
    """torchvision's ImageFolder with default_loader, ToTensor and Normalize, written out."""

    def __init__(self, root: Path, mean: list[float], std: list[float]) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples = [(str(f), i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())]
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        with open(path, "rb") as handle:
            image = Image.open(handle).convert("RGB")
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
        return (x - self.mean) / self.std, label


def build_model(seed: int = 0) -> torch.nn.Module:
    from trainwise.models import build_model as build
    from trainwise.models.init import initialize

    torch.manual_seed(seed)
    model = build("cnn", input_shape=(3, 32, 32), num_outputs=10, channels=[16, 32], hidden=[64])
    initialize(model, "auto", activation="relu")
    return model


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.quiet_logs()
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    from trainwise.data.image_folder import load_image_folder

    steps, warmup, block, repeats = QUICK if args.quick else FULL
    blocks: dict[str, list[common.StepTimes]] = {name: [] for name in NAMES}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "digits"
        write_folder(root, 300 if args.quick else 3000)
        streamed = load_image_folder(root, cache=False, num_workers=WORKERS, val_fraction=0.0, test_fraction=0.0)
        start = time.perf_counter()
        cached = load_image_folder(root, cache=True, num_workers=WORKERS, val_fraction=0.0, test_fraction=0.0)
        cache_seconds = time.perf_counter() - start
        hand_data = HandImageFolder(root, streamed.normalization["mean"], streamed.normalization["std"])
        for repeat in range(repeats):
            shift = repeat % len(NAMES)
            relay = common.Relay(NAMES[shift:] + NAMES[:shift], block=block, steps=steps, warmup=warmup)

            def hand(name: str) -> None:
                loader = DataLoader(hand_data, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
                                    pin_memory=device.type == "cuda")
                common.hand_train(build_model(), iter(loader), steps=steps, tick=lambda: relay.tick(name),
                                  device=device, move_to_device=True)

            def trainwise(name: str, data) -> None:
                common.trainwise_fit(build_model(), data, None, steps=steps, batch_size=BATCH, device=device,
                                     callbacks=[common.tick_callback(lambda: relay.tick(name))], num_workers=WORKERS)

            contestants = {"hand": lambda: hand("hand"), "hand_again": lambda: hand("hand_again"),
                           "trainwise": lambda: trainwise("trainwise", streamed.train),
                           "trainwise_cached": lambda: trainwise("trainwise_cached", cached.train)}
            for name, timed in relay.run(contestants).items():
                blocks[name] += timed
    trainer_vs_hand = common.compare(blocks, "trainwise", BASELINE)
    cached_vs_hand = common.compare(blocks, "trainwise_cached", BASELINE)
    control = common.compare(blocks, "hand_again", "hand")
    primary = common.PRIMARY_ESTIMATOR
    figure = trainer_vs_hand[primary]["median"]
    per_step = common.summarize_steps(blocks)
    samples_per_second = {name: round(BATCH / (s["median_step_us"] * 1e-6)) for name, s in per_step.items()}
    payload = {
        "figure": "Trainer step time on an image folder (decoding in its DataLoader workers) / a hand "
                  "ImageFolder + DataLoader loop's, same workers",
        "headline": f"Trainer {figure:.3f}x the hand ImageFolder loop (control {control[primary]['median']:.3f}x); "
                    f"cached in memory {cached_vs_hand[primary]['median']:.3f}x after a {cache_seconds:.1f}s decode",
        "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratio": figure,
        "trainer_vs_hand": trainer_vs_hand, "cached_vs_hand": cached_vs_hand, "control_hand_again_vs_hand": control,
        "cache_decode_seconds": round(cache_seconds, 2), "per_step": per_step,
        "samples_per_second_median_step": samples_per_second,
        "config": {"images": 300 if args.quick else 3000, "image": "32x32 RGB PNG", "batch_size": BATCH,
                   "workers": WORKERS, "steps": steps, "warmup": warmup, "block": block, "repeats": repeats,
                   "model": "cnn channels [16, 32], hidden [64]"},
        "machine": common.machine_info(), "quick": args.quick, "device": str(device),
    }
    common.write_result(args.out, common.result_name("image_folder", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

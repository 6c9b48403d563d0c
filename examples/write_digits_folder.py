"""Write scikit-learn's bundled digits (1,797 8x8 images, nothing downloaded) as an image folder:
one folder per digit, PNG, JPEG and BMP files mixed, upscaled to 16x16 and coloured, the way a
folder of photos a person brings looks. examples/imagefolder.yaml trains on it.

    python examples/write_digits_folder.py            # writes examples/data/digits-folder/
    trainwise train examples/imagefolder.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

FORMATS = ("png", "jpg", "bmp")


def write(root: Path) -> int:
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.kron(image / 16.0 * 255, np.ones((2, 2))).astype(np.uint8)
        rgb = np.stack([pixels, pixels // 2 + 64, 255 - pixels], axis=-1)
        Image.fromarray(rgb).save(folder / f"{index:04d}.{FORMATS[index % len(FORMATS)]}", quality=95)
    return len(digits.images)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data" / "digits-folder"
    print(f"wrote {write(target)} images to {target}")

"""Image files: finding them in class folders, reading their headers, decoding them to tensors.

Decoding uses Pillow (PNG, JPEG, BMP, WebP, GIF's first frame, TIFF): torchvision's ``decode_image``
would add no format and no wheel of torchvision fits this project's CPU build of torch (see
docs/notes/issue-20.md). Files are recognized by their suffix; anything else in a class folder (a
README, a .DS_Store) is ignored. Hidden folders (``.ipynb_checkpoints``) are not classes.

Example:
    >>> found = scan_image_folder(Path("data/pets"))
    >>> found.classes, len(found.files)
    (['cat', 'dog'], 812)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from trainwise.errors import DataError, DataNotFoundError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# Pillow modes without colour; every other mode (RGB, RGBA, P, CMYK, YCbCr...) is decoded as RGB.
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class ImageFile:
    path: str
    label: int
    size: tuple[int, int]  # (height, width)
    colour: bool


@dataclass
class ScannedFolder:
    """What a class-per-folder tree holds: classes, readable images and the files that are not."""

    root: Path
    classes: list[str]
    files: list[ImageFile]
    corrupt: list[str] = field(default_factory=list)  # "path: reason"


def find_class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataNotFoundError(f"data.root {root} is not a folder; give it a folder holding one folder of images "
                                "per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root} holds no class folders; put the images of each class in a folder of their own, "
                        f"e.g. {root}/cat/1.png and {root}/dog/2.png")
    return folders


def image_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_image_folder(root: Path, *, strict: bool = False) -> ScannedFolder:
    """Every image under ``root``'s class folders with its size and colour, read from its header.

    Raises:
        DataError: no class folders, an empty class folder, a single class, no image at all, or with
            ``strict`` a file that is not a readable image (named).
    """
    folders = find_class_folders(root)
    classes = [folder.name for folder in folders]
    if len(folders) == 1:
        raise DataError(f"{root} holds a single class folder ({classes[0]!r}); a classifier needs at least two "
                        "classes, each in a folder of its own")
    found = ScannedFolder(root, classes, [])
    per_class = {folder.name: image_paths(folder) for folder in folders}
    if not any(per_class.values()):
        raise DataError(f"no images under {root} (looked for {', '.join(IMAGE_SUFFIXES)} in {len(folders)} class "
                        "folders); put the image files in the class folders")
    for name, paths in per_class.items():
        if not paths:
            raise DataError(f"class folder {root / name} holds no images; add images of class {name!r} or remove "
                            "the folder")
        for path in paths:
            try:
                size, colour = read_header(path)
            except DataError as exc:
                if strict:
                    raise DataError(f"{exc}; data.strict is true: remove or replace the file, or set "
                                    "data.strict=false to skip it") from None
                found.corrupt.append(str(exc))
                continue
            found.files.append(ImageFile(str(path), found.classes.index(name), size, colour))
    return found


def read_header(path: Path) -> tuple[tuple[int, int], bool]:
    """``((height, width), colour)`` of an image, from its header (and for PNG its checksums)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
            image.verify()  # PNG: chunk checksums; catches most truncated or damaged files cheaply
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...) for bad files
        raise DataError(f"corrupt image {path}: {type(exc).__name__}: {exc}") from None
    return (height, width), mode not in GRAY_MODES


def decode_image(path: str, *, channels: int, size: Optional[tuple[int, int]]) -> torch.Tensor:
    """The image at ``path`` as uint8 ``(channels, H, W)``, resized to ``size`` (bilinear, antialiased)
    when given; a GIF's first frame.

    Raises:
        DataError: the file cannot be decoded (named).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.seek(0)
            converted = image.convert("L" if channels == 1 else "RGB")
            if size is not None and converted.size != (size[1], size[0]):
                converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(converted, dtype=np.uint8)
    except Exception as exc:  # a file that passed the header scan may still fail to decode
        raise DataError(f"corrupt image {path}: {type(exc).__name__}: {exc}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def check_same_size(files: list[ImageFile]) -> tuple[int, int]:
    """The one size all ``files`` share; else one message naming two files that differ."""
    first = files[0]
    for other in files[1:]:
        if other.size != first.size:
            raise DataError(f"images differ in size: {first.path} is {first.size[0]}x{first.size[1]} but {other.path} "
                            f"is {other.size[0]}x{other.size[1]} (height x width); set data.image_size: [H, W] to "
                            "resize every image")
    return first.size


def decode_folder(folder: Path, *, channels: int, size: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """Every image under ``folder`` (sub-folders included, sorted) as float ``(N, C, H, W)`` in [0, 1],
    resized to ``size``, with the paths in the same order (``trainwise predict RUN FOLDER/``).

    Raises:
        DataError: no image under ``folder``, or one that cannot be decoded (named).
    """
    paths = image_paths(folder)
    if not paths:
        raise DataError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}); give a folder of images")
    images = [decode_image(str(p), channels=channels, size=size) for p in paths]
    return torch.stack(images).float().div_(255), [str(p) for p in paths]

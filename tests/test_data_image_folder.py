"""Image folders: mixed formats and sizes, non-image and corrupt files, bad input, training from
the CLI and predicting a folder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainwise.cli import main
from trainwise.data.image_folder import load_image_folder
from trainwise.data.images import decode_image
from trainwise.errors import DataError

FORMATS = [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("webp", "WEBP"), ("gif", "GIF")]


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 10, sizes=((12, 12), (16, 10))) -> Path:
    """Tiny images of every format, grayscale and colour, of ``sizes``; a text file and a corrupt PNG."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            pixels = (40 + 160 * label + rng.integers(0, 30, (h, w, 3))).astype(np.uint8)
            image = Image.fromarray(pixels) if i % 3 else Image.fromarray(pixels[:, :, 0], "L")
            suffix, fmt = FORMATS[i % len(FORMATS)]
            image.save(root / name / f"{i}.{suffix}", fmt)
    return root


def add_junk(root: Path) -> None:
    (root / "cat" / "README.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")


def test_every_format_decodes_to_its_channels(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=5, sizes=((12, 12),))
    for suffix, _ in FORMATS:
        path = next((root / "cat").glob(f"*.{suffix}"))
        rgb = decode_image(str(path), channels=3, size=None)
        gray = decode_image(str(path), channels=1, size=(6, 8))
        assert rgb.shape == (3, 12, 12) and rgb.dtype == torch.uint8 and gray.shape == (1, 6, 8)


@pytest.mark.parametrize("cache", [True, False])
def test_splits_classes_and_skipped_files(tmp_path, cache):
    root = make_folder(tmp_path / "pets")
    add_junk(root)
    bundle = load_image_folder(root, image_size=[12, 12], cache=cache, val_fraction=0.2, test_fraction=0.2)
    assert bundle.class_names == ["cat", "dog"] and bundle.input_shape == (3, 12, 12)
    assert bundle.details["skipped_images"] == 1 and "dog/broken.png" in bundle.details["skipped_files"][0]
    assert bundle.details["images"] == 20 and bundle.details["cached"] is cache
    sizes = [len(s[0]) if cache else len(s) for s in (bundle.train, bundle.val, bundle.test)]
    assert sizes == [13, 3, 4]  # test: 0.2 of 20, val: 0.2 of the 16 left
    x = bundle.train[0] if cache else torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.5  # normalized with a training sample's statistics


def test_strict_refuses_a_corrupt_image(tmp_path):
    root = make_folder(tmp_path / "pets")
    add_junk(root)
    with pytest.raises(DataError, match=r"corrupt image .*broken.png.*data.strict is true"):
        load_image_folder(root, image_size=12, strict=True)


def test_differing_sizes_name_two_files(tmp_path):
    root = make_folder(tmp_path / "pets")
    with pytest.raises(DataError, match=r"images differ in size: .*cat/0.png is 12x12 but .*cat/1.jpg is 16x10 .*"
                                        r"data.image_size"):
        load_image_folder(root)


def _bad(root: Path, case: str) -> None:
    if case == "empty class folder":
        make_folder(root)
        (root / "bird").mkdir()
    elif case == "single class":
        make_folder(root, classes=("cat",))
    elif case == "no images":
        (root / "cat").mkdir(parents=True)
        (root / "dog").mkdir()
        (root / "dog" / "notes.txt").write_text("hello")
    elif case == "no class folders":
        root.mkdir()
        (root / "x.png").write_bytes(b"")


@pytest.mark.parametrize("case, message", [
    ("empty class folder", r"class folder .*bird holds no images"),
    ("single class", r"holds a single class folder \('cat'\)"),
    ("no images", r"no images under .* in 2 class folders"),
    ("no class folders", r"holds no class folders"),
])
def test_bad_folders_get_one_line_and_nothing_is_written(tmp_path, capsys, case, message):
    root = tmp_path / "data"
    _bad(root, case)
    config = tmp_path / "c.yaml"
    config.write_text("data: {dataset: imagefolder, root: data, image_size: 12}\nmodel: {name: cnn}\n")
    code = main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ")
    import re
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_trains_from_the_cli_and_predicts_a_folder(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "pets", per_class=12)
    add_junk(root)
    (tmp_path / "c.yaml").write_text(
        "name: pets\ndata: {dataset: imagefolder, root: pets, image_size: [12, 12], batch_size: 8, cache: false,\n"
        "       num_workers: 2, augment: flip}\nmodel: {name: cnn, channels: [4], hidden: [8]}\n"
        "optimizer: {lr: 0.003}\ntrain: {epochs: 1, report: false}\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "trainwise", "train", "c.yaml", "--run-dir", "run"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "broken.png" in run.stdout + run.stderr  # the skipped file is named
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["skipped_images"] == 1
    assert json.loads((tmp_path / "run" / "data.json").read_text())["class_names"] == ["cat", "dog"]
    monkeypatch.chdir(tmp_path)  # predict in this process (a second subprocess would cost seconds of imports)
    assert main(["predict", "run", "pets/dog", "--out", "p.csv"]) == 2
    assert "corrupt image" in capsys.readouterr().err  # the broken file is named
    (root / "dog" / "broken.png").unlink()
    assert main(["predict", "run", "pets/dog", "--out", "p.csv"]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 12 and rows[0]["file"].endswith("0.png") and rows[0]["prediction"] in ("cat", "dog")

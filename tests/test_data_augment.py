"""build_augment and the batch augmentations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainwise.data import ImageAugment, build_augment
from trainwise.data.augment import _affine
from trainwise.errors import ConfigError, DataError

SPECS = [
    "crop",
    "rotate",
    "translate",
    "crop,rotate,translate",
    {"crop": 2, "rotate": 10, "translate": 0.1},
    ["translate", "crop"],
]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec", [None, "", " , ", {}, [], {"crop": False}])
def test_empty_spec_gives_no_augmentation(spec: object) -> None:
    assert build_augment(spec, dataset="mnist", input_shape=(1, 28, 28)) is None


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (5, 3, 16, 24)])
def test_augment_keeps_shape_is_repeatable_and_changes_the_batch(
    spec: object, shape: tuple[int, ...]
) -> None:
    augment = build_augment(spec, dataset="mnist", input_shape=shape[1:])
    batch = torch.rand(shape)
    first = augment(batch, generator(0))
    assert first.shape == batch.shape and first.dtype == batch.dtype
    assert torch.equal(first, augment(batch, generator(0)))
    assert not torch.equal(first, augment(batch, generator(1)))
    assert not torch.allclose(first, batch)


def test_defaults_depend_on_image_size() -> None:
    small = build_augment("crop,rotate,translate", dataset="digits", input_shape=(1, 8, 8))
    large = build_augment({"crop": None, "flip": True}, dataset="cifar", input_shape=(3, 32, 32))
    assert (small.crop, small.rotate, small.translate, small.flip) == (1, 10.0, 0.1, None)
    assert (large.crop, large.flip, large.rotate) == (2, 0.5, None)
    assert "crop=2" in repr(large)


def test_crop_is_a_shift_within_the_padding() -> None:
    batch = torch.rand(64, 2, 5, 7)
    out = ImageAugment(crop=1, flip=None, rotate=None, translate=None)(batch, generator(0))
    padded = F.pad(batch, (1, 1, 1, 1), mode="replicate")
    used = set()
    for index in range(len(batch)):
        matches = [
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if torch.equal(out[index], padded[index, :, dy : dy + 5, dx : dx + 7])
        ]
        assert len(matches) >= 1
        used.update(matches)
    assert len(used) == 9


def test_flip_with_probability_one_mirrors_every_image() -> None:
    augment = build_augment({"flip": 1.0}, dataset="cifar", input_shape=(3, 4, 4))
    batch = torch.rand(8, 3, 4, 4)
    assert torch.equal(augment(batch, generator(0)), batch.flip(-1))


def test_affine_rotation_by_a_right_angle() -> None:
    square = torch.arange(16.0).view(1, 1, 4, 4)
    rotated = _affine(square, angle=torch.tensor([math.pi / 2]), shift=torch.zeros(1, 2))
    torch.testing.assert_close(rotated, torch.rot90(square, k=1, dims=(2, 3)), atol=1e-4, rtol=0)
    # A non-square image: output pixel (x, y) takes the input at (-y, x) around the center.
    wide = torch.arange(8.0).view(1, 1, 2, 4)
    out = _affine(wide, angle=torch.tensor([math.pi / 2]), shift=torch.zeros(1, 2))[0, 0]
    expected = [wide[0, 0, 0, 2], wide[0, 0, 1, 2], wide[0, 0, 0, 1], wide[0, 0, 1, 1]]
    torch.testing.assert_close(
        torch.stack([out[0, 1], out[0, 2], out[1, 1], out[1, 2]]),
        torch.stack(expected),
        atol=1e-4,
        rtol=0,
    )


def test_affine_shift_by_one_pixel_repeats_the_border() -> None:
    image = torch.arange(20.0).view(1, 1, 4, 5)
    shifted = _affine(image, angle=torch.zeros(1), shift=torch.tensor([[1 / 5, 0.0]]))
    expected = torch.cat([image[..., 1:], image[..., -1:]], dim=-1)
    torch.testing.assert_close(shifted, expected, atol=1e-4, rtol=0)


def test_tiny_rotation_is_nearly_the_identity() -> None:
    batch = torch.rand(4, 1, 10, 10)
    augment = build_augment({"rotate": 1e-6}, dataset="mnist", input_shape=(1, 10, 10))
    torch.testing.assert_close(augment(batch, generator(0)), batch, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_flip_is_refused_for_digits(dataset: str) -> None:
    with pytest.raises(ConfigError, match=f"flip is refused for '{dataset}': a mirrored digit"):
        build_augment("crop,flip", dataset=dataset, input_shape=(1, 28, 28))


def test_flip_is_allowed_for_clothes() -> None:
    # A mirrored shirt is still a shirt: Fashion-MNIST keeps its labels under flipping.
    augment = build_augment("flip", dataset="fashion-mnist", input_shape=(1, 28, 28))
    assert augment is not None and augment.flip == 0.5


@pytest.mark.parametrize(
    ("spec", "input_shape", "match"),
    [
        ("rotat", (1, 28, 28), "unknown augmentation 'rotat'; did you mean 'rotate'\\? available"),
        ({"blur": 1}, (1, 28, 28), "unknown augmentation 'blur'; available: crop, flip"),
        ("crop", (1, 40), r"works on images .* but 'data' has input_shape \(1, 40\)"),
        ({"crop": 0}, (1, 28, 28), r"crop must be a whole number of pixels in \[1, 27\], got 0"),
        ({"crop": 1.5}, (1, 28, 28), r"crop must be a whole number of pixels .*got 1.5"),
        ({"crop": 8}, (1, 8, 8), r"crop must be .*\[1, 7\], got 8"),
        ({"rotate": 200}, (1, 28, 28), r"rotate must be degrees in \(0, 180\], got 200"),
        ({"translate": 0.9}, (1, 28, 28), r"translate must be a fraction .*got 0.9"),
        ({"flip": 2}, (3, 28, 28), r"flip must be a probability in \(0, 1\], got 2"),
        ({"rotate": "lots"}, (1, 28, 28), "rotate must be degrees .*got 'lots'"),
        (5, (1, 28, 28), "augment must be None, a string like 'crop,rotate'"),
    ],
)
def test_build_augment_errors(spec: object, input_shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_augment(spec, dataset="data", input_shape=input_shape)


def test_augment_needs_a_batch_of_images() -> None:
    augment = build_augment("crop", dataset="mnist", input_shape=(1, 8, 8))
    with pytest.raises(DataError, match=r"expects a batch of images \(N, C, H, W\), got shape"):
        augment(torch.rand(1, 8, 8), generator(0))

"""Batched augmentation (study.data.augment) against per-image torch/torchvision
references, determinism per generator and argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from study.data.augment import (
    AUGMENTATIONS,
    augment,
    crop_at,
    random_crop,
    random_flip,
    random_shift,
    shift_at,
)

DTYPES = [torch.uint8, torch.float32]


def images(dtype: torch.dtype, batch: int = 6, height: int = 7, width: int = 9) -> torch.Tensor:
    x = torch.randint(1, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(0))
    return x.to(dtype)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shift_at_is_roll_per_image(dtype):
    x = images(dtype)
    shifts = torch.tensor([[0, 0], [1, -2], [-3, 4], [7, 9], [-8, 20], [2, 1]])
    out = shift_at(x, shifts)
    assert out.dtype == dtype and out.shape == x.shape
    for image, result, (dh, dw) in zip(x, out, shifts.tolist(), strict=True):
        assert torch.equal(result, torch.roll(image, (dh, dw), (-2, -1)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", [0, 1, 3])
def test_crop_at_zeros_matches_torchvision_pad_and_crop(dtype, padding):
    x = images(dtype)
    offsets = torch.randint(0, 2 * padding + 1, (len(x), 2), generator=generator(padding))
    out = crop_at(x, padding, offsets, "zeros")
    assert out.dtype == dtype
    height, width = x.shape[-2:]
    for image, result, (top, left) in zip(x, out, offsets.tolist(), strict=True):
        padded = TF.pad(image, [padding], fill=0, padding_mode="constant")
        assert torch.equal(result, TF.crop(padded, top, left, height, width))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", [0, 2, 4])
def test_crop_at_circular_matches_circular_pad_and_crop(dtype, padding):
    x = images(dtype)
    offsets = torch.randint(0, 2 * padding + 1, (len(x), 2), generator=generator(padding))
    out = crop_at(x, padding, offsets, "circular")
    height, width = x.shape[-2:]
    for image, result, (top, left) in zip(x, out, offsets.tolist(), strict=True):
        padded = F.pad(image.float()[None], [padding] * 4, mode="circular")[0]
        expected = padded[:, top : top + height, left : left + width].to(dtype)
        assert torch.equal(result, expected)
        # ... which is a circular shift by (padding - top, padding - left)
        assert torch.equal(result, torch.roll(image, (padding - top, padding - left), (-2, -1)))


def test_crop_at_with_centre_offsets_is_identity():
    x = images(torch.uint8)
    for mode in ("zeros", "circular"):
        assert torch.equal(crop_at(x, 3, torch.full((len(x), 2), 3), mode), x)


@pytest.mark.parametrize(
    "draw",
    [
        lambda x, g: random_crop(x, 4, "zeros", g),
        lambda x, g: random_crop(x, 4, "circular", g),
        lambda x, g: random_shift(x, 3, g),
        lambda x, g: random_flip(x, g),
        *[lambda x, g, kind=kind: augment(x, kind, g) for kind in AUGMENTATIONS[1:]],
    ],
)
def test_random_augmentations_are_deterministic_per_seed(draw):
    x = images(torch.float32, batch=32)
    assert torch.equal(draw(x, generator(1)), draw(x, generator(1)))
    assert not torch.equal(draw(x, generator(1)), draw(x, generator(2)))


def test_random_crop_and_shift_vary_across_the_batch():
    x = images(torch.float32, batch=64, height=8, width=8)
    x = x[:1].expand_as(x).contiguous()  # one image repeated: outputs differ only by offset
    for out in (random_crop(x, 4, "circular", generator(0)), random_shift(x, 4, generator(0))):
        distinct = {tuple(image.flatten().tolist()) for image in out}
        assert len(distinct) > 20
    # each random crop is some crop_at of the image
    out = random_crop(x[:8], 2, "zeros", generator(3))
    candidates = [
        crop_at(x[:1], 2, torch.tensor([[top, left]]), "zeros")
        for top in range(5)
        for left in range(5)
    ]
    for image in out:
        assert any(torch.equal(image, c[0]) for c in candidates)


def test_random_shift_stays_within_max_shift():
    x = images(torch.float32, batch=40, height=16, width=16)
    x = x[:1].expand_as(x).contiguous()
    out = random_shift(x, 2, generator(0))
    allowed = [torch.roll(x[0], (dh, dw), (-2, -1)) for dh in range(-2, 3) for dw in range(-2, 3)]
    for image in out:
        assert any(torch.equal(image, a) for a in allowed)


def test_random_flip_flips_about_half():
    x = images(torch.uint8, batch=400, height=4, width=5)
    out = random_flip(x, generator(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_none_is_identity_and_combinations_compose():
    x = images(torch.uint8)
    assert augment(x, "none", generator(0)) is x
    out = augment(x, "flip+shift", generator(5), max_shift=0)
    assert torch.equal(out, random_flip(x, generator(5)))
    out = augment(x, "flip+crop", generator(5), padding=0)
    assert torch.equal(out, random_flip(x, generator(5)))


def test_default_generator_and_shapes_are_kept():
    x = images(torch.float32)
    for kind in AUGMENTATIONS:
        out = augment(x, kind)
        assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda x: augment(x, "xyz"), "augment: 'xyz' is not one of none, flip"),
        (lambda x: augment(x, "crop", padding=-1), "padding"),
        (lambda x: augment(x, "shift", max_shift=-2), "max_shift"),
        (lambda x: augment(x, "crop", mode="reflect"), "mode"),
        (lambda x: random_crop(x, -1), "padding"),
        (lambda x: random_shift(x, -1), "max_shift"),
        (lambda x: crop_at(x, 1, torch.zeros(len(x), 3, dtype=torch.long)), "offsets"),
        (lambda x: crop_at(x, 1, torch.full((len(x), 2), 3)), "offsets"),
        (lambda x: shift_at(x, torch.zeros(2, 2, dtype=torch.long)), "shifts"),
        (lambda x: shift_at(x, torch.zeros(len(x), 2)), "shifts"),
        (lambda x: random_flip(x[0]), "images"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_field(call, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        call(images(torch.float32))

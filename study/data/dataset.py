"""A trial's data: both splits as uint8 tensors on the trial's device.

The whole dataset sits on the device (CIFAR-10's 60,000 images are 184 MB as uint8),
so a training step is a gather, an augmentation and a float conversion, all there:
no loader workers, no host-to-device copies per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from study.data.sources import load_split
from study.data.synthetic import shapes

BUILTIN = "shapes"


@dataclass(frozen=True)
class Dataset:
    """``train_images``/``test_images``: ``(N, 3, H, W)`` uint8; labels ``(N,)`` int64;
    ``mean``/``std``: per-channel statistics of the training images on the 0-1 scale
    (what :func:`study.data.to_float` standardises with)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Dataset:
        moved = {
            name: getattr(self, name).to(device)
            for name in ("train_images", "train_labels", "test_images", "test_labels")
        }
        return Dataset(**{**self.__dict__, **moved})


def load_dataset(
    source: str,
    train_images: int | None = None,
    test_images: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Both splits of ``source`` (``"shapes"`` or a path that
    :func:`study.data.load_split` reads), each cut to a seeded random subset of the
    given size (``None``: all; the built-in set defaults to 5,000 and 1,000), on the CPU.
    """
    if source == BUILTIN:
        (x_train, y_train), (x_test, y_test), classes = shapes(
            train_images or 5000, test_images or 1000, seed=seed
        )
        description = f"built-in shapes ({len(x_train)} train, {len(x_test)} test)"
    else:
        x_train, y_train, classes = load_split(source, "train")
        x_test, y_test, _ = load_split(source, "test")
        x_train, y_train = _subset(x_train, y_train, train_images, seed)
        x_test, y_test = _subset(x_test, y_test, test_images, seed + 1)
        description = f"{source} ({len(x_train)} train, {len(x_test)} test)"
    scaled = x_train.float().div_(255)
    return Dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        tuple(classes),
        tuple(scaled.mean((0, 2, 3)).tolist()),
        tuple(scaled.std((0, 2, 3)).clamp_min(1e-3).tolist()),  # a flat channel: no 1/0
        description,
    )


def _subset(images: Tensor, labels: Tensor, count: int | None, seed: int):
    if count is None or count >= len(images):
        return images, labels
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    order = order.sort().values  # keep the source order within the subset
    return images[order], labels[order]

"""Training throughput: the trial's on-device data path against a plain torchvision
``DataLoader`` + transforms loop doing the same work.

Both loops train the same network (same initial weights, SGD, batch 128) on the same
images with the same augmentation (random crop with 4 pixels of zero padding and a
horizontal flip): ours gathers uint8 batches from a tensor on the device and augments
them there (``study.data.augment``); the reference is torchvision's CIFAR recipe
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``)
over PIL images in a ``DataLoader`` with worker processes. The variants alternate, one
pass each per round; the table gives the median images per second and the ratio.

Run: ``python bench/train_throughput.py [--device cuda] [--images 2048] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader

from study import models
from study.data import CIFAR_MEAN, CIFAR_STD, to_float
from study.data.augment import augment
from study.data.synthetic import shapes


class PilImages(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: uint8 HWC -> PIL -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def train_step(model, optimizer, images, labels) -> None:
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ours(model, optimizer, images, labels, batch, device, generator) -> None:
    order = torch.randperm(len(images), generator=generator)
    for chunk in order.split(batch):
        chunk = chunk.to(device)
        x = augment(images[chunk], "flip+crop", generator, padding=4, mode="zeros")
        train_step(model, optimizer, to_float(x), labels[chunk])


def reference(model, optimizer, loader, device) -> None:
    for x, y in loader:
        train_step(model, optimizer, x.to(device, non_blocking=True), y.to(device))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, width: float, args, device, data) -> None:
    images, labels = data
    torch.manual_seed(0)
    model = models.build(name, width=width).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )
    pil = PilImages(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), transform)
    loader = DataLoader(
        pil,
        args.batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    on_device = images.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(0)
    runs = {
        "study (on device)": lambda: ours(
            model, optimizer, *on_device, args.batch, device, generator
        ),
        "torchvision DataLoader": lambda: reference(model, optimizer, loader, device),
    }
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for round_index in range(args.rounds + 1):  # round 0 warms up (and starts workers)
        for key, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_index:
                rates[key].append(len(images) / (time.perf_counter() - start))
    ours_rate = statistics.median(rates["study (on device)"])
    theirs = statistics.median(rates["torchvision DataLoader"])
    print(
        f"| {name:<9} | {width:>5} | {ours_rate:>17.0f} | {theirs:>22.0f} "
        f"| {ours_rate / theirs:>5.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--images", type=int, default=2048, help="images per pass")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} "
        f"threads, {args.workers} loader workers, python {platform.python_version()}"
    )
    (images, labels), _, _ = shapes(args.images, 1, seed=0)
    print(
        f"\nTraining images per second, {args.images} built-in 32x32 images per pass, "
        f"batch {args.batch}, flip + crop(pad 4), median of {args.rounds} rounds"
    )
    print("| network   | width | study (on device) | torchvision DataLoader | ratio  |")
    print(f"|{'-' * 11}|{'-' * 7}|{'-' * 19}|{'-' * 24}|{'-' * 8}|")
    for width in (1.0, 0.25):
        measure("vgg13_bn", width, args, device, (images, labels))


if __name__ == "__main__":
    main()

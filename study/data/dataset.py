"""A trial's data: train, validation and test splits as uint8 tensors on the trial's
device.

The whole dataset sits on the device (CIFAR-10's 60,000 images are 184 MB as uint8),
so a training step is a gather, an augmentation and a float conversion, all there:
no loader workers, no host-to-device copies per batch.

The validation split is held out of the training split (:func:`holdout`: seeded,
stratified by class) before any training subset is drawn, so it depends only on the
data seed and its size: every trial of a study is scored on the same images, and none
of them is ever trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from study.data import synthetic
from study.data.names import BUILTIN
from study.data.sources import cache_dir, load_split
from study.data.synthetic import shapes


@dataclass(frozen=True)
class Dataset:
    """``*_images``: ``(N, 3, H, W)`` uint8; ``*_labels``: ``(N,)`` int64 (the
    validation split may be empty); ``mean``/``std``: per-channel statistics of the
    training images on the 0-1 scale (what :func:`study.data.to_float` standardises
    with)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    val_images: Tensor | None = None
    val_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.val_images is None:  # no validation split: empty tensors of the right shape
            object.__setattr__(self, "val_images", self.train_images[:0])
            object.__setattr__(self, "val_labels", self.train_labels[:0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Dataset:
        moved = {name: getattr(self, name).to(device) for name in _TENSORS}
        return Dataset(**{**self.__dict__, **moved})


_TENSORS = (
    "train_images",
    "train_labels",
    "val_images",
    "val_labels",
    "test_images",
    "test_labels",
)


_MEMORY: OrderedDict[str, Dataset] = OrderedDict()
_MEMORY_SIZE = 2


def load_dataset(
    source: str,
    train_images: int | None = None,
    test_images: int | None = None,
    seed: int = 0,
    validation: int = 0,
) -> Dataset:
    """The splits of ``source`` (``"shapes"`` or a path that
    :func:`study.data.load_split` reads), on the CPU: ``validation`` training images
    held out (:func:`holdout`), then each split cut to a seeded random subset of the
    given size (``None``: all; the built-in set generates 5,000 training images plus
    the validation ones, and 1,000 test images). ``seed`` fixes all of it.

    Made once per process and node: the last datasets loaded stay in memory (a Ray
    worker reused for the next trial of a study skips the work), and the built-in
    images are generated once per machine into ``<cache>/splits/`` (written
    atomically, so concurrent trials never read half a file). Either copy is keyed by
    every argument and the generator's source, so a change to either makes a new one.
    """
    key = _key(source, train_images, test_images, seed, validation)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = cache_dir() / "splits" / f"{key}.pt"
    data = _read_cached(path) if source == BUILTIN else None
    if data is None:
        data = _build(source, train_images, test_images, seed, validation)
        if source == BUILTIN:
            _write_cached(path, data)
    _MEMORY[key] = data
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return data


def _key(source: str, *counts: int | None) -> str:
    """A name for one dataset: its arguments and what the data is made from (the
    generator's code for the built-in set, the file's size and time for a path)."""
    if source == BUILTIN:
        origin = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()
    else:
        path = Path(source).expanduser()
        stat = path.stat() if path.exists() else None
        origin = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if stat else source
    text = json.dumps([source, origin, *counts])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cached(path: Path) -> Dataset | None:
    try:
        return Dataset(**torch.load(path, weights_only=True))
    except Exception:  # missing, half-written by a killed process, or another format
        return None


def _write_cached(path: Path, data: Dataset) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{id(data)}.partial")
        torch.save(dict(data.__dict__), partial)
        partial.replace(path)  # atomic: a reader sees the whole file or none
    except OSError:
        pass  # a read-only cache only costs the time to generate again


def _build(
    source: str,
    train_images: int | None,
    test_images: int | None,
    seed: int,
    validation: int,
) -> Dataset:
    if source == BUILTIN:
        (x_train, y_train), (x_test, y_test), classes = shapes(
            (train_images or 5000) + validation, test_images or 1000, seed=seed
        )
    else:
        x_train, y_train, classes = load_split(source, "train")
        x_test, y_test, _ = load_split(source, "test")
    if validation >= len(x_train):
        raise ValueError(
            f"data.validation: {validation} is not fewer than the {len(x_train)} training "
            f"images of {source}"
        )
    kept, held = holdout(y_train, validation, seed)
    x_val, y_val = x_train[held], y_train[held]
    x_train, y_train = x_train[kept], y_train[kept]
    if source != BUILTIN:
        x_train, y_train = _subset(x_train, y_train, train_images, seed)
        x_test, y_test = _subset(x_test, y_test, test_images, seed + 1)
    counts = f"{len(x_train)} train, {len(x_val)} validation, {len(x_test)} test"
    description = f"built-in shapes ({counts})" if source == BUILTIN else f"{source} ({counts})"
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
        x_val,
        y_val,
    )


def holdout(labels: Tensor, count: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split indices ``0..N-1`` into ``(kept, held)``, ``count`` of them held out,
    stratified by class: class ``c`` gives ``count * n_c / N`` images, rounded so that
    the quotas sum to ``count`` (largest remainders first, then the lower class). Both
    index tensors are sorted; ``seed`` picks the images inside each class.

    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    >>> kept, held = holdout(labels, 5)
    >>> labels[held].bincount().tolist(), len(kept)
    ([2, 2, 1], 5)
    """
    total = len(labels)
    if not 0 <= count <= total:
        raise ValueError(f"count: {count} is outside [0, {total}]")
    if count == 0:
        return torch.arange(total), torch.arange(0)
    classes, sizes = labels.unique(return_counts=True)
    exact = sizes.double() * count / total
    quota = exact.floor().long()
    remainder = exact - quota
    # Largest remainder first; among equal remainders, the lower class first.
    order = sorted(range(len(classes)), key=lambda i: (-float(remainder[i]), i))
    for index in order[: count - int(quota.sum())]:
        quota[index] += 1
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (labels == label).nonzero().flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:take]])
    held_sorted = torch.cat(held).sort().values
    mask = torch.ones(total, dtype=torch.bool)
    mask[held_sorted] = False
    return mask.nonzero().flatten(), held_sorted


def _subset(images: Tensor, labels: Tensor, count: int | None, seed: int):
    if count is None or count >= len(images):
        return images, labels
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    order = order.sort().values  # keep the source order within the subset
    return images[order], labels[order]

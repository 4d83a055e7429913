"""Datasets as uint8 tensors: CIFAR in torchvision's format and image-folder trees
(:mod:`study.data.sources`), normalised for a network by :func:`to_float`. The names
of datasets a config may give are in :mod:`study.data.names` (no torch); the package
imports its other members on first use."""

from __future__ import annotations

from study.lazy import lazy_members

_EXPORTS = {
    "AUGMENTATIONS": "study.data.names",
    "CIFAR_MEAN": "study.data.normalize",
    "CIFAR_STD": "study.data.normalize",
    "DataSourceError": "study.data.sources",
    "augment": "study.data.augment",
    "cache_dir": "study.data.sources",
    "circular_offsets": "study.data.augment",
    "crop_at": "study.data.augment",
    "describe_source": "study.data.sources",
    "load_split": "study.data.sources",
    "pink_noise": "study.data.synthetic",
    "random_circular_shifts": "study.data.augment",
    "random_crop": "study.data.augment",
    "random_flip": "study.data.augment",
    "random_shift": "study.data.augment",
    "shapes": "study.data.synthetic",
    "shift_at": "study.data.augment",
    "to_float": "study.data.normalize",
}

__getattr__, __all__ = lazy_members(__name__, _EXPORTS)

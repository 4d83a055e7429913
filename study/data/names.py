"""The datasets a config can name, without importing torch (validating a config or a
search space needs none): the built-in task and the torchvision downloads, with their
image sizes. Anything else in ``data.source`` is a path (:mod:`study.data.sources`).
"""

from __future__ import annotations

BUILTIN = "shapes"
"""The built-in synthetic task (:func:`study.data.synthetic.shapes`)."""
DOWNLOADABLE = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
"""Named datasets torchvision downloads: name -> torchvision class."""
NAMED_SOURCES: tuple[str, ...] = (BUILTIN, *DOWNLOADABLE)
AUGMENTATIONS: tuple[str, ...] = ("none", "flip", "crop", "shift", "flip+crop", "flip+shift")
"""Training augmentations by name (:func:`study.data.augment.augment`)."""
IMAGE_SIZES = {"shapes": 32, "cifar10": 32, "cifar100": 32}
"""Image sizes known before any data is read (a dataset path's are checked when a trial
reads it)."""

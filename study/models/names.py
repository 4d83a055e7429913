"""The networks :mod:`study.models.networks` registers, by name, without importing torch
(a config names one; validating it needs no network built). ``tests/test_models.py``
checks that the registry and this list agree.
"""

from __future__ import annotations

BUILTIN_MODELS: tuple[str, ...] = (
    "densenet40_12",
    "resnet18",
    "resnet20",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
)

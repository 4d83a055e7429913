"""Where the tests find the real CIFAR-10 (the JPEG copy beside the checkout, or
``$STUDY_CIFAR10_JPEG``), and a skip that says why when it is not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_COPY = Path(__file__).resolve().parents[1] / "../shared/data/cifar10-jpeg.tar.gz"
CIFAR_JPEG = Path(os.environ.get("STUDY_CIFAR10_JPEG", SHARED_COPY))


def require_cifar10_jpeg() -> Path:
    """The JPEG copy of CIFAR-10, or a skip naming where it was looked for."""
    if not CIFAR_JPEG.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR_JPEG} (set STUDY_CIFAR10_JPEG)")
    return CIFAR_JPEG

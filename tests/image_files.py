"""Small image files written by tests: PNGs whose pixel value says which image they are,
and an image-folder tree of them (``root/{train,test}/{cat,dog}/*.png``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_folder(root: Path) -> Path:
    """``root/{train,test}/{cat,dog}/*.png``: uniform images whose value encodes them."""
    for split, count in (("train", 3), ("test", 2)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / f"{index:04d}.png").write_bytes(png_bytes(100 * label + index))
    return root

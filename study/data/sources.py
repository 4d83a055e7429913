"""Datasets on disk, read into uint8 arrays once and cached.

A *source* is ``cifar10`` or ``cifar100`` (torchvision's download, kept under
``$STUDY_DATA_DIR``, default ``<cache>/datasets``; fetched on first use where the
machine is online), or a path to one of:

- torchvision's CIFAR format: a ``cifar-10-batches-py`` or ``cifar-100-python`` folder
  (pickled batches, as ``torchvision.datasets.CIFAR10/100`` download them), or the
  folder that contains it;
- an image-folder tree, ``ROOT/{train,test}/<class>/<image>`` (the layout that
  ``torchvision.datasets.ImageFolder`` reads per split; class order is sorted names),
  or a ``.tar``/``.tar.gz``/``.tgz`` of one, such as the JPEG copy of CIFAR-10.

:func:`load_split` returns ``(images, labels, classes)``: ``(N, 3, H, W)`` uint8,
``(N,)`` int64 and the class names. Image folders are decoded once into
``<cache>/<name>-<split>-<key>.npz`` (``$STUDY_CACHE_DIR``, default
``~/.cache/antialiased-study``), keyed by the source's path, size and modification time.
For a folder tree that is the root folder's: images changed inside its class folders
are not noticed, so delete the cached file after editing a tree in place.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_CIFAR_FOLDERS = {"cifar-10-batches-py": "cifar10", "cifar-100-python": "cifar100"}
DOWNLOADABLE = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


class DataSourceError(ValueError):
    """A dataset path that cannot be read; the message says what was expected."""


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$STUDY_CACHE_DIR`` or
    ``~/.cache/antialiased-study``."""
    return Path(os.environ.get("STUDY_CACHE_DIR", Path.home() / ".cache" / "antialiased-study"))


def data_dir() -> Path:
    """Where ``cifar10``/``cifar100`` are downloaded: ``$STUDY_DATA_DIR`` or
    ``<cache>/datasets``."""
    return Path(os.environ.get("STUDY_DATA_DIR", cache_dir() / "datasets"))


def download(name: str) -> Path:
    """The folder holding torchvision's ``name`` (``cifar10``, ``cifar100``),
    downloading it first if it is not there yet."""
    root = data_dir()
    folder = next(f for f, n in _CIFAR_FOLDERS.items() if n == name)
    if not (root / folder).is_dir():
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, DOWNLOADABLE[name])
        try:
            dataset(root, train=False, download=True)
        except Exception as error:  # offline: URLError, socket errors, ...
            raise DataSourceError(
                f"data: {name} is not in {root} and could not be downloaded "
                f"({type(error).__name__}); give the path of a {folder} folder instead"
            ) from None
    return root / folder


def describe_source(path: Path) -> str:
    """``"cifar"``, ``"image-folder"`` or ``"tar"``; a :class:`DataSourceError` naming
    what a data path must be otherwise."""
    if not path.exists():
        raise DataSourceError(f"data: {path} does not exist")
    if path.is_file() and path.name.endswith(TAR_SUFFIXES):
        return "tar"
    if path.is_dir():
        if _cifar_folder(path) is not None:
            return "cifar"
        if any((path / split).is_dir() for split in SPLITS):
            return "image-folder"
    raise DataSourceError(
        f"data: {path} is not a CIFAR folder (cifar-10-batches-py, cifar-100-python), "
        "an image-folder tree with train/ or test/, or a .tar/.tar.gz of one"
    )


def load_split(source: str | Path, split: str = "test") -> tuple[Tensor, Tensor, list[str]]:
    """``(images (N, 3, H, W) uint8, labels (N,) int64, class names)`` of one split."""
    if split not in SPLITS:
        raise DataSourceError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    path = download(source) if source in DOWNLOADABLE else Path(source).expanduser()
    kind = describe_source(path)
    if kind == "cifar":
        images, labels, classes = _read_cifar(_cifar_folder(path), split)
    else:
        images, labels, classes = _cached_folder(path, split, kind)
    return torch.from_numpy(images), torch.from_numpy(labels).long(), classes


def _cifar_folder(path: Path) -> Path | None:
    if path.name in _CIFAR_FOLDERS:
        return path
    found = [path / name for name in _CIFAR_FOLDERS if (path / name).is_dir()]
    return found[0] if found else None


def _read_cifar(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """torchvision's pickled CIFAR batches: ``data`` rows of 3072 bytes (R, G, B planes
    of 32 x 32) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100)."""
    cifar100 = _CIFAR_FOLDERS[folder.name] == "cifar100"
    if cifar100:
        files, meta, names_key = [split], "meta", "fine_label_names"
    else:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, names_key = "batches.meta", "label_names"
    data, labels = [], []
    for name in files:
        batch = _unpickle(folder / name)
        data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch["fine_labels" if cifar100 else "labels"])
    classes = list(_unpickle(folder / meta)[names_key])
    return np.concatenate(data), np.asarray(labels, dtype=np.int64), classes


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataSourceError(f"data: {path} is missing from the CIFAR folder")
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _cached_folder(path: Path, split: str, kind: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    stem = path.name.split(".")[0]
    cached = cache_dir() / f"{stem}-{split}-{key[:12]}.npz"
    if cached.is_file():
        with np.load(cached) as arrays:
            return arrays["images"], arrays["labels"], arrays["classes"].tolist()
    files = _tar_images(path, split) if kind == "tar" else _folder_images(path, split)
    images, labels, classes = _decode(files, f"{path}: {split}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial.npz")
    np.savez(partial, images=images, labels=labels, classes=np.asarray(classes))
    partial.replace(cached)  # a cut-off run leaves no half-written cache behind
    return images, labels, classes


def _folder_images(root: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    folder = root / split
    if not folder.is_dir():
        raise DataSourceError(f"data: {root} has no {split}/ folder")
    for file in sorted(folder.glob("*/*")):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            yield file.parent.name, file.name, file.read_bytes()


def _tar_images(archive: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if len(parts) >= 3 and parts[-3] == split:
                yield parts[-2], parts[-1], tar.extractfile(member).read()


def _decode(files, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    named = sorted(files)  # (class, file name, bytes): by class, then by file name
    if not named:
        raise DataSourceError(f"data: no images found in {where}")
    classes = sorted({name for name, _, _ in named})
    images = [np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")) for _, _, raw in named]
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataSourceError(f"data: images in {where} differ in size: {sorted(shapes)[:3]}")
    index = {name: label for label, name in enumerate(classes)}
    labels = np.asarray([index[name] for name, _, _ in named], dtype=np.int64)
    return np.stack(images).transpose(0, 3, 1, 2).copy(), labels, classes

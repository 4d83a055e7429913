"""Datasets on disk, read into uint8 arrays once and cached.

A *source* is ``cifar10`` or ``cifar100`` (torchvision's download, kept under
``$STUDY_DATA_DIR``, default ``<cache>/datasets``; fetched on first use where the
machine is online), or a path to one of:

- torchvision's CIFAR format: a ``cifar-10-batches-py`` or ``cifar-100-python`` folder
  (pickled batches, as ``torchvision.datasets.CIFAR10/100`` download them), or the
  folder that contains it; read by those same classes (files must exist; their md5
  sums are not checked, so re-pickled or cut-down copies are read too);
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

import functools
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

from study.data.names import DOWNLOADABLE

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_CIFAR_FOLDERS = {"cifar-10-batches-py": "cifar10", "cifar-100-python": "cifar100"}


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
    """One split of a ``cifar-10-batches-py`` / ``cifar-100-python`` folder, read by
    ``torchvision.datasets.CIFAR10`` / ``CIFAR100``: ``.data`` (N, 32, 32, 3) uint8,
    ``.targets`` (fine labels for CIFAR-100) and ``.classes``."""
    dataset_class = _cifar_class(_CIFAR_FOLDERS[folder.name], split)
    for file in [name for name, _ in dataset_class.test_list + dataset_class.train_list] + [
        dataset_class.meta["filename"]
    ]:
        if not (folder / file).is_file():
            raise DataSourceError(f"data: {folder / file} is missing from the CIFAR folder")
    try:
        dataset = dataset_class(folder.parent, train=split == "train", download=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
        raise DataSourceError(
            f"data: {folder} is not readable as torchvision's CIFAR format "
            f"({type(error).__name__}: {error})"
        ) from None
    images = np.ascontiguousarray(np.asarray(dataset.data, dtype=np.uint8).transpose(0, 3, 1, 2))
    return images, np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)


@functools.cache
def _cifar_class(name: str, split: str) -> type:
    """torchvision's ``CIFAR10`` / ``CIFAR100``, narrowed to ``split``'s batch files, that
    checks the files exist but not their md5 sums.

    torchvision checks every batch file of both splits against the md5 of the official
    download; a copy made otherwise (a re-pickled or cut-down folder, such as the tests'
    fixtures) would be refused, and reading the test split would need the train batches.
    The subclass sets the same class attributes through which ``CIFAR100`` itself
    specialises ``CIFAR10`` (``train_list``, ``test_list``, ``meta``), with md5 ``None``,
    which ``torchvision.datasets.utils.check_integrity`` reads as "the file exists".
    """
    import torchvision.datasets

    base = getattr(torchvision.datasets, DOWNLOADABLE[name])
    files = [[file, None] for file, _ in (base.train_list if split == "train" else base.test_list)]
    attributes = {
        "__module__": __name__,
        "__doc__": f"{base.__name__}, {split} split, files checked for presence only.",
        "train_list": files if split == "train" else [],
        "test_list": files if split == "test" else [],
        "meta": {**base.meta, "md5": None},
    }
    return type(f"{base.__name__}{split.title()}Files", (base,), attributes)


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
    images = [_image(raw, f"{where}/{label}/{name}") for label, name, raw in named]
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataSourceError(f"data: images in {where} differ in size: {sorted(shapes)[:3]}")
    index = {name: label for label, name in enumerate(classes)}
    labels = np.asarray([index[name] for name, _, _ in named], dtype=np.int64)
    return np.stack(images).transpose(0, 3, 1, 2).copy(), labels, classes


def _image(raw: bytes, where: str) -> np.ndarray:
    """One encoded image -> ``(H, W, 3)`` uint8; a :class:`DataSourceError` naming the
    file when it cannot be decoded (a truncated or corrupt file)."""
    try:
        return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's decode errors
        raise DataSourceError(f"data: {where} is not a readable image ({error})") from None

"""Data sources: torchvision's pickled CIFAR format, image-folder trees and their
tarballs (decoded once into a cache), and the real CIFAR-10 JPEG copy where present."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import png_bytes, write_folder
from shared_data import require_cifar10_jpeg

from study.data import DataSourceError, describe_source, load_split, to_float


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))


def write_cifar10(root: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """A small ``cifar-10-batches-py`` folder in torchvision's pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with (folder / name).open("wb") as handle:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, handle)
        written[name] = data
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": [*names, "truck"]}, handle)
    return written


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, count in (("train", 6), ("test", 3)):
        data = np.full((count, 3072), 7, dtype=np.uint8)
        with (folder / split).open("wb") as handle:
            pickle.dump({"data": data, "fine_labels": list(range(count))}, handle)
    with (folder / "meta").open("wb") as handle:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)]}, handle)


def test_cifar10_pickles_read_in_order(tmp_path):
    written = write_cifar10(tmp_path)
    images, labels, classes = load_split(tmp_path, "train")
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    expected = np.concatenate([written[f"data_batch_{i}"] for i in range(1, 6)])
    assert np.array_equal(images.reshape(20, -1).numpy(), expected)  # R, G, B planes
    assert labels.dtype == torch.int64 and classes[-1] == "truck"
    test_images, _, _ = load_split(tmp_path / "cifar-10-batches-py", "test")
    assert np.array_equal(test_images.reshape(4, -1).numpy(), written["test_batch"])


def test_named_cifar10_reads_the_data_dir_without_downloading(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "datasets")
    monkeypatch.setenv("STUDY_DATA_DIR", str(tmp_path / "datasets"))
    images, _, _ = load_split("cifar10", "test")
    assert np.array_equal(images.reshape(4, -1).numpy(), written["test_batch"])


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    images, labels, classes = load_split(tmp_path, "test")
    assert images.shape == (3, 3, 32, 32)
    assert labels.tolist() == [0, 1, 2] and len(classes) == 100


def test_image_folder_and_its_tarball_decode_alike_and_are_cached(tmp_path):
    root = write_folder(tmp_path / "tree")
    images, labels, classes = load_split(root, "train")
    assert classes == ["cat", "dog"]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2, 100, 101, 102]
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="tree")
    from_tar = load_split(archive, "train")
    assert torch.equal(from_tar[0], images) and torch.equal(from_tar[1], labels)
    cached = sorted((tmp_path / "cache").glob("*.npz"))
    assert [p.name.split("-")[:2] for p in cached] == [["tree", "train"], ["tree", "train"]]
    # the cache answers: a decoded split is not decoded again...
    (root / "train" / "cat" / "0000.png").write_bytes(png_bytes(42))
    assert load_split(root, "train")[0][0, 0, 0, 0] == 0
    # ...until the source itself changes (size or modification time): a new key
    archive.write_bytes(b"not a tarball")
    with pytest.raises(tarfile.ReadError):
        load_split(archive, "train")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "is not a CIFAR folder"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "is not a CIFAR folder"),
    ],
)
def test_bad_sources_name_what_is_allowed(tmp_path, make, message):
    with pytest.raises(DataSourceError, match=message):
        describe_source(make(tmp_path))


def test_bad_split_and_missing_batch(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataSourceError, match="split"):
        load_split(tmp_path, "val")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataSourceError, match="test_batch is missing"):
        load_split(tmp_path, "test")


def test_cifar_is_read_by_torchvision_per_split_without_md5_checks(tmp_path):
    """torchvision's CIFAR10/100 classes read the batches; only the asked split's files
    (and the meta file) must exist, and copies that are not the official download (these
    fixtures) are read: md5 sums are not checked."""
    import torchvision.datasets

    from study.data import sources

    written = write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        (folder / f"data_batch_{i}").unlink()
    images, labels, classes = load_split(folder, "test")
    assert np.array_equal(images.reshape(4, -1).numpy(), written["test_batch"])
    assert images.is_contiguous() and classes[0] == "airplane" and len(classes) == 10
    assert labels.dtype == torch.int64 and labels.shape == (4,)
    with pytest.raises(DataSourceError, match=r"data_batch_1 is missing from the CIFAR folder"):
        load_split(folder, "train")
    for name, base in (("cifar10", torchvision.datasets.CIFAR10), ("cifar100", None)):
        base = base or torchvision.datasets.CIFAR100
        assert issubclass(sources._cifar_class(name, "train"), base)
    write_cifar100(tmp_path / "c100")
    _, _, fine = load_split(tmp_path / "c100" / "cifar-100-python", "train")
    assert fine[:2] == ["class0", "class1"] and len(fine) == 100


def test_unreadable_cifar_batch_names_the_folder(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(
        DataSourceError, match=r"cifar-10-batches-py is not readable as torchvision"
    ):
        load_split(folder, "test")


def test_empty_split_folder(tmp_path):
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DataSourceError, match="no images"):
        load_split(tmp_path, "test")


def test_to_float_standardises_per_channel():
    pixels = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = to_float(pixels, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out[0, :, 0, 0].tolist() == [-2.0, -1.0, -0.5]
    assert out[0, :, 0, 1].tolist() == [2.0, 1.0, 0.5]


def test_real_cifar10_jpeg_copy(tmp_path):
    images, labels, classes = load_split(require_cifar10_jpeg(), "test")
    assert images.shape == (10_000, 3, 32, 32)
    assert labels.bincount().tolist() == [1000] * 10
    assert classes[0] == "airplane" and classes[-1] == "truck"
    assert 80 < images.float().mean() < 160  # real photos, not blank decodes


def test_a_corrupt_image_is_named_in_a_one_line_error(tmp_path):
    root = write_folder(tmp_path / "tree")
    broken = root / "train" / "dog" / "0001.png"
    broken.write_bytes(broken.read_bytes()[:20])  # truncated
    with pytest.raises(DataSourceError, match=r"train/dog/0001\.png is not a readable image"):
        load_split(root, "train")
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing half-decoded is cached

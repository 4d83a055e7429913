"""The validation split: held out of the training images (seeded, stratified by class),
never trained on, the same for every trial of a study; and shift draws that are uniform
over the distinct circular shifts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from image_files import write_folder

from study.data import circular_offsets, random_circular_shifts
from study.data.dataset import holdout, load_dataset


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    fraction=st.floats(0, 1),
    seed=st.integers(0, 2**31),
)
def test_holdout_is_a_stratified_partition(sizes, fraction, seed):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    count = round(fraction * len(labels))
    kept, held = holdout(labels, count, seed)
    assert len(held) == count and len(kept) + len(held) == len(labels)
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(labels)))
    # Stratified: each class's share differs from its exact quota by less than one image.
    per_class = torch.bincount(labels[held], minlength=len(sizes))
    for c, n in enumerate(sizes):
        assert abs(per_class[c].item() - count * n / len(labels)) < 1
    assert torch.equal(holdout(labels, count, seed)[1], held)  # seeded


def test_validation_images_are_never_trained_on_and_shared_by_every_trial():
    data = load_dataset("shapes", 300, 50, seed=3, validation=60)
    assert len(data.train_images) == 300 and len(data.val_images) == 60
    train = {bytes(image.numpy()) for image in data.train_images}
    assert not any(bytes(image.numpy()) in train for image in data.val_images)
    assert torch.bincount(data.val_labels).min() >= 60 // data.num_classes
    # A different training subset size keeps the same validation images.
    again = load_dataset("shapes", 300, 50, seed=3, validation=60)
    assert torch.equal(again.val_images, data.val_images)
    other = load_dataset("shapes", 300, 50, seed=4, validation=60)
    assert not torch.equal(other.val_images, data.val_images)


def test_validation_as_large_as_the_training_split_is_refused(tmp_path, monkeypatch):
    """A real source cannot give more images than it has: a one-line error names it."""
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "tree")  # 6 training images
    with pytest.raises(ValueError, match=r"^data.validation: 6 is not fewer than the 6 "):
        load_dataset(str(root), validation=6)
    assert len(load_dataset(str(root), validation=2).val_images) == 2


def test_circular_offsets_are_distinct_shifts():
    for size in (1, 2, 7, 8, 32):
        for max_shift in range(0, size + 2):
            offsets = circular_offsets(size, max_shift)
            residues = (offsets % size).tolist()
            assert len(set(residues)) == len(residues)  # no shift counted twice
            if 2 * max_shift + 1 >= size:
                assert sorted(residues) == list(range(size))


def test_shift_draws_are_uniform_over_all_circular_shifts():
    """max_shift = H/2: each of the 32 shifts of an axis is equally likely (the old
    draw from [-16, 16] gave the shift of 16 twice the probability: 0.060 vs 0.030)."""
    shifts = random_circular_shifts(64_000, (32, 32), 16, torch.Generator().manual_seed(0))
    counts = torch.bincount(shifts[:, 0] % 32, minlength=32).double() / len(shifts)
    assert counts.min() > 0.028 and counts.max() < 0.035
    assert abs(counts[16].item() - 1 / 32) < 0.003


def test_datasets_are_made_once_per_process_and_machine(tmp_path, monkeypatch):
    """The same arguments give the same dataset from memory; a new process finds the
    built-in images on disk instead of generating them again; other arguments or
    another generator give another dataset."""
    import study.data.dataset as dataset

    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path))
    dataset._MEMORY.clear()
    first = load_dataset("shapes", 64, 16, seed=5, validation=8)
    assert load_dataset("shapes", 64, 16, seed=5, validation=8) is first
    files = list((tmp_path / "splits").glob("*.pt"))
    assert len(files) == 1
    dataset._MEMORY.clear()  # as a new process would start
    again = load_dataset("shapes", 64, 16, seed=5, validation=8)
    assert again is not first
    for name in ("train_images", "train_labels", "val_images", "test_images", "test_labels"):
        assert torch.equal(getattr(again, name), getattr(first, name)), name
    assert (again.mean, again.classes, again.description) == (
        first.mean,
        first.classes,
        first.description,
    )
    other = load_dataset("shapes", 64, 16, seed=5, validation=9)
    assert len(other.val_images) == 9 and len(list((tmp_path / "splits").glob("*.pt"))) == 2
    files[0].write_bytes(b"not a tensor file")  # a broken cache file is made again
    dataset._MEMORY.clear()
    assert torch.equal(
        load_dataset("shapes", 64, 16, seed=5, validation=8).val_images, first.val_images
    )

"""The procedural ``shapes`` dataset: determinism, layout, and that it is a task where a
small network learns and anti-aliasing visibly improves shift consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from study.data import pink_noise, to_float
from study.data.synthetic import SHAPE_CLASSES, shapes
from study.metrics import consistency, shift_probabilities
from study.models import build


def test_shapes_layout_and_dtypes():
    (x, y), (tx, ty), names = shapes(train=50, test=30, seed=0)
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (50,) and y.dtype == torch.int64
    assert tx.shape == (30, 3, 32, 32) and ty.shape == (30,) and ty.dtype == torch.int64
    assert names == [f"{s}-{t}" for s, t in SHAPE_CLASSES] and len(set(names)) == 10
    assert torch.bincount(y, minlength=10).tolist() == [5] * 10  # balanced, all present
    assert set(ty.tolist()) == set(range(10))
    assert int(x.min()) < 40 and int(x.max()) > 215  # uses the pixel range
    (x, _), _, _ = shapes(train=4, test=0, size=48)
    assert x.shape == (4, 3, 48, 48)


def test_shapes_is_deterministic_per_seed_and_differs_across_seeds():
    first, second, other = shapes(40, 20, seed=3), shapes(40, 20, seed=3), shapes(40, 20, seed=4)
    for a, b in zip(first[:2], second[:2], strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(first[0][0], other[0][0])
    assert not torch.equal(first[1][0], other[1][0])


def test_train_and_test_are_disjoint():
    (x, _), (tx, _), _ = shapes(200, 100, seed=0)
    same = (x.flatten(1)[:, None] == tx.flatten(1)[None]).all(-1)
    assert not bool(same.any())
    # the test stream does not depend on the train size
    assert torch.equal(shapes(10, 100, seed=0)[1][0], tx)


def test_bad_arguments_raise():
    for kwargs, field in [({"train": -1}, "train"), ({"test": 1.5}, "test"), ({"size": 4}, "size")]:
        with pytest.raises(ValueError, match=f"^{field}"):
            shapes(**kwargs)


def test_pink_noise_is_unchanged():
    noise = pink_noise(2, 16, seed=0)
    assert noise.shape == (2, 3, 16, 16)
    assert torch.allclose(noise.mean((2, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.equal(noise, pink_noise(2, 16, seed=0))


def _train(filter: str, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """vgg11_bn at width 1/8, SGD lr 0.05 momentum 0.9, batch 64, 5 epochs, seed 0."""
    torch.manual_seed(0)
    model = build("vgg11_bn", width=0.125, filter=filter)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(5):
        permutation = torch.randperm(len(images), generator=order)
        for start in range(0, len(images), 64):
            batch = permutation[start : start + 64]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """Both networks after identical training on 1000 images (~10-20 s on 2 CPU cores)."""
    (x, y), (tx, ty), _ = shapes(train=1000, test=300, seed=0)
    images, test_images = to_float(x), to_float(tx)
    models = {name: _train(name, images, y) for name in ("delta", "binomial-5")}
    return models, test_images, ty


def test_a_small_network_learns_shapes(trained):
    # Measured with this recipe, data and torch seeds 0/1/2 (the test uses 0): 0.64/0.59/0.53
    # for delta, 0.48/0.41/0.52 for binomial-5 on 300 test images; with 2000 images and
    # batch 128 (+ weight decay 5e-4): 0.91 delta, 0.71 binomial-5 on 500.
    models, images, labels = trained
    with torch.inference_mode():
        for name, model in models.items():
            accuracy = (model(images).argmax(1) == labels).float().mean().item()
            assert accuracy > 0.3, (name, accuracy)


def test_blurred_network_is_more_shift_consistent(trained):
    # Exact consistency over all 32x32 circular shifts of 50 test images, measured with
    # seeds 0/1/2: delta 0.81/0.85/0.75, binomial-5 0.98/0.99/1.00 (4 epochs instead of 5:
    # 0.90/0.83/0.86 vs 0.98/0.96/0.99); 2000 images, batch 128, 100 images: 0.95 vs 0.99.
    models, images, _ = trained
    scores = {name: consistency(shift_probabilities(m, images[:50])) for name, m in models.items()}
    assert scores["binomial-5"] > scores["delta"], scores

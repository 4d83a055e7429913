"""Shifting images (eq. 4) and the shift-invariance scores read from all-shift
probabilities: accuracy under shifts (Table 1), classification consistency and variation
(Section 4.2), accuracy by shift (Appendix D) and against a shift adversary (Appendix B).

References are brute force: explicit Python loops over pixels, shifts and pairs of shifts.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.metrics import (
    accuracy,
    accuracy_by_shift,
    adversarial_accuracy,
    consistency,
    consistency_per_image,
    correct_map,
    crop_shift,
    sampled_consistency,
    shift,
    shift_probabilities,
    variation,
)


def _random_probs(seed: int, n: int = 3, h: int = 4, w: int = 4, c: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, h, w, c, generator=generator).softmax(-1)


def _probs_from_top(top: torch.Tensor, classes: int) -> torch.Tensor:
    """``(N, H, W, classes)`` probabilities whose argmax is ``top`` ``(N, H, W)``."""
    return (3.0 * F.one_hot(top, classes).float()).softmax(-1)


def _probs_from_correct(correct: torch.Tensor, labels: torch.Tensor, classes: int = 3):
    """Probabilities whose argmax is ``labels[n]`` where ``correct`` is true, and the
    next class where it is false."""
    wrong = (labels + 1) % classes
    top = torch.where(correct, labels.view(-1, 1, 1), wrong.view(-1, 1, 1))
    return _probs_from_top(top, classes)


def _brute_survivors(correct: torch.Tensor, k: int) -> torch.Tensor:
    """Images correct at every shift in ``[-k, k]^2`` (indices modulo the size)."""
    n, height, width = correct.shape
    return torch.tensor(
        [
            all(
                correct[i, dh % height, dw % width]
                for dh in range(-k, k + 1)
                for dw in range(-k, k + 1)
            )
            for i in range(n)
        ]
    )


class ShiftInvariant(nn.Module):
    """Circular conv, ReLU, global average pool, linear: invariant to circular shifts."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PixelReader(nn.Module):
    """Classifies from the single pixel (0, 0), after a 1x1 conv to 5 channels: the
    extreme of a position-dependent classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, :, 0, 0]


def _seeded(module_type: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return module_type()


# --- shift and crop_shift -----------------------------------------------------------------


@pytest.mark.parametrize(("dh", "dw"), [(0, 0), (1, 0), (0, 1), (2, 3), (-1, 4), (7, -9)])
def test_shift_matches_eq4(dh, dw):
    """``out[..., h, w] = x[..., (h - dh) % H, (w - dw) % W]`` (eq. 4), pixel by pixel."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    out = shift(x, dh, dw)
    assert out.shape == x.shape
    for h in range(5):
        for w in range(7):
            assert torch.equal(out[..., h, w], x[..., (h - dh) % 5, (w - dw) % 7])


def test_shift_sign_convention():
    """A positive shift moves content down and right."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 1.0
    assert shift(x, 1, 1)[0, 0, 2, 3] == 1.0
    assert shift(x, 1, 1).sum() == 1.0


def test_shift_composes_and_wraps():
    """Shifts add, a shift by ``(H, W)`` is the identity, and ``-d`` undoes ``d``."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 6)
    for (a, b), (c, d) in itertools.product([(1, 2), (-3, 4), (5, 0)], [(2, -1), (4, 6)]):
        assert torch.equal(shift(shift(x, a, b), c, d), shift(x, a + c, b + d))
    assert torch.equal(shift(x, 5, 6), x)
    assert torch.equal(shift(x, 10, -12), x)
    assert torch.equal(shift(shift(x, 2, 3), -2, -3), x)
    assert not torch.equal(shift(x, 1, 0), x)


def _reflect(i: int, n: int) -> int:
    return -i if i < 0 else 2 * (n - 1) - i if i >= n else i


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_crop_shift_matches_brute_force(padding):
    """Pixels shifted in are zeros or mirrored (edge not repeated), the rest are
    ``x[h - dh, w - dw]``, for every shift with ``|dh| < H`` and ``|dw| < W``."""
    torch.manual_seed(2)
    height, width = 4, 5
    x = torch.randn(2, height, width)
    for dh in range(-height + 1, height):
        for dw in range(-width + 1, width):
            out = crop_shift(x, dh, dw, padding)
            assert out.shape == x.shape
            for h in range(height):
                for w in range(width):
                    src_h, src_w = h - dh, w - dw
                    inside = 0 <= src_h < height and 0 <= src_w < width
                    if padding == "zeros":
                        expected = x[:, src_h, src_w] if inside else torch.zeros(2)
                    else:
                        expected = x[:, _reflect(src_h, height), _reflect(src_w, width)]
                    assert torch.equal(out[:, h, w], expected), (dh, dw, h, w)


def test_crop_shift_small_examples():
    """Hand-written cases on a 1x4 row (as a one-channel image)."""
    row = torch.arange(1.0, 5.0).view(1, 1, 4)
    assert crop_shift(row, 0, 1).tolist() == [[[0.0, 1.0, 2.0, 3.0]]]
    assert crop_shift(row, 0, -2).tolist() == [[[3.0, 4.0, 0.0, 0.0]]]
    assert crop_shift(row, 0, 1, "reflect").tolist() == [[[2.0, 1.0, 2.0, 3.0]]]
    assert crop_shift(row, 0, -1, "reflect").tolist() == [[[2.0, 3.0, 4.0, 3.0]]]
    assert crop_shift(row, 0, 0).tolist() == row.tolist()
    column = torch.arange(1.0, 4.0).view(1, 3, 1)
    assert crop_shift(column, 1, 0).flatten().tolist() == [0.0, 1.0, 2.0]
    assert crop_shift(column, -1, 0, "reflect").flatten().tolist() == [2.0, 3.0, 2.0]


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        ("zeros", [[0.0, 1.0, 2.0, 3.0]]),
        ("reflect", [[2.0, 1.0, 2.0, 3.0]]),
    ],
)
def test_crop_shift_on_a_2d_tensor(padding, expected):
    """A plain ``(H, W)`` tensor, as in the docstring's example, works in every mode."""
    row = torch.arange(1.0, 5.0).view(1, 4)
    assert crop_shift(row, 0, 1, padding).tolist() == expected


@pytest.mark.parametrize(("dh", "dw"), [(4, 0), (-4, 0), (0, 5), (0, -5), (9, 9)])
def test_crop_shift_rejects_shifts_as_large_as_the_image(dh, dw):
    """A shift as large as the image would leave no pixel: ``ValueError`` naming it."""
    with pytest.raises(ValueError, match=r"^shift:"):
        crop_shift(torch.zeros(1, 4, 5), dh, dw)


# --- consistency --------------------------------------------------------------------------


def _brute_consistency(probs: torch.Tensor) -> list[float]:
    """Per image: the fraction of ordered pairs of shifts (same shift included) with the
    same top class."""
    n, height, width, _ = probs.shape
    shifts = [(h, w) for h in range(height) for w in range(width)]
    result = []
    for i in range(n):
        agree = sum(
            int(probs[i, h1, w1].argmax() == probs[i, h2, w2].argmax())
            for (h1, w1) in shifts
            for (h2, w2) in shifts
        )
        result.append(agree / len(shifts) ** 2)
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_consistency_equals_brute_force_over_pairs(seed):
    """Exact consistency (Section 4.2) is the agreement rate over all ordered pairs of
    the H x W shifts, averaged over images."""
    probs = _random_probs(seed, n=3, h=4, w=4, c=3)
    expected = _brute_consistency(probs)
    per_image = consistency_per_image(probs)
    assert per_image.shape == (3,)
    assert per_image.tolist() == pytest.approx(expected, abs=1e-12)
    assert consistency(probs) == pytest.approx(sum(expected) / 3, abs=1e-12)
    assert min(expected) < 1  # the random case is not trivially consistent


def test_consistency_on_non_square_shifts():
    """Same brute force on a 2x5 shift grid with 4 classes."""
    probs = _random_probs(7, n=2, h=2, w=5, c=4)
    assert consistency_per_image(probs).tolist() == pytest.approx(
        _brute_consistency(probs), abs=1e-12
    )


def test_constant_predictions_are_fully_consistent():
    """One top class at every shift: two random shifts always agree."""
    top = torch.zeros(2, 4, 4, dtype=torch.long)
    top[1] = 2
    probs = _probs_from_top(top, 3)
    assert consistency_per_image(probs).tolist() == [1.0, 1.0]
    assert consistency(probs) == 1.0


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_evenly_spread_predictions_give_one_over_k(k):
    """If the top class cycles evenly through ``k`` classes over the 16 shifts, two
    random shifts agree with probability exactly ``1/k``."""
    top = (torch.arange(16) % k).view(1, 4, 4)
    probs = _probs_from_top(top, 16)
    assert consistency_per_image(probs).item() == pytest.approx(1 / k, abs=1e-12)


def test_consistency_is_at_least_one_over_classes():
    """``sum_k p_k^2 >= 1/C`` for any vote distribution over C classes."""
    probs = _random_probs(3, n=20, h=4, w=4, c=5)
    per_image = consistency_per_image(probs)
    assert (per_image >= 1 / 5 - 1e-12).all()
    assert (per_image <= 1 + 1e-12).all()


# --- accuracy -----------------------------------------------------------------------------


def _correct_maps(seed: int, n: int, h: int, w: int, rate: float = 0.7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, w, generator=generator) < rate


def test_correct_map_reads_the_top_class():
    """``correct_map`` is true exactly where the argmax is the label."""
    labels = torch.tensor([0, 2, 1])
    correct = _correct_maps(0, 3, 4, 5)
    probs = _probs_from_correct(correct, labels)
    assert torch.equal(correct_map(probs, labels), correct)


def test_accuracy_at_zero_shift_and_mean_over_shifts():
    """``acc`` is the accuracy at shift (0, 0); ``acc_shift_mean`` the mean over every
    shift (Table 1)."""
    correct = torch.zeros(4, 3, 3, dtype=torch.bool)
    correct[0] = True  # right everywhere
    correct[1, 0, 0] = True  # right only unshifted
    correct[2, 1:, :] = True  # right at 6 of 9 shifts, not at (0, 0)
    labels = torch.tensor([0, 1, 2, 0])
    result = accuracy(_probs_from_correct(correct, labels), labels)
    assert result["acc"] == pytest.approx(2 / 4)
    assert result["acc_shift_mean"] == pytest.approx((9 + 1 + 6 + 0) / 36)


def test_accuracy_random_shift_is_seeded_and_unbiased():
    """``acc_shift_random`` (one random shift per image) is reproducible for a seed,
    varies with the seed, and averages to ``acc_shift_mean`` over many seeds."""
    correct = _correct_maps(1, 400, 6, 6, rate=0.5)
    labels = torch.arange(400) % 3
    probs = _probs_from_correct(correct, labels)
    runs = [accuracy(probs, labels, seed=seed)["acc_shift_random"] for seed in range(40)]
    assert runs[5] == accuracy(probs, labels, seed=5)["acc_shift_random"]
    assert len(set(runs)) > 5
    mean = accuracy(probs, labels)["acc_shift_mean"]
    assert sum(runs) / len(runs) == pytest.approx(mean, abs=0.02)
    assert all(value * 400 == pytest.approx(round(value * 400)) for value in runs)


def test_accuracy_random_shift_extremes():
    """Right (wrong) at every shift: the random-shift accuracy is 1 (0) for any seed."""
    labels = torch.tensor([0, 1])
    everywhere = _probs_from_correct(torch.ones(2, 5, 5, dtype=torch.bool), labels)
    nowhere = _probs_from_correct(torch.zeros(2, 5, 5, dtype=torch.bool), labels)
    for seed in range(3):
        assert accuracy(everywhere, labels, seed)["acc_shift_random"] == 1.0
        assert accuracy(nowhere, labels, seed)["acc_shift_random"] == 0.0


# --- variation ----------------------------------------------------------------------------


def test_variation_is_zero_for_shift_invariant_probabilities():
    """Probabilities that do not depend on the shift have zero variation."""
    torch.manual_seed(4)
    per_image = torch.randn(3, 1, 1, 4).softmax(-1)
    probs = per_image.expand(3, 5, 5, 4)
    result = variation(probs, torch.tensor([0, 3, 1]))
    assert result["variation"] == 0.0
    assert torch.equal(result["per_image"], torch.zeros(3, dtype=torch.float64))


def test_variation_by_hand():
    """Correct-class probabilities 0.1, 0.3, 0.6, 0.8 over a 2x2 shift grid: population
    standard deviation sqrt(0.29 / 4) (Section 4.2, Fig. 6)."""
    correct_class = torch.tensor([[0.1, 0.3], [0.6, 0.8]])
    probs = torch.stack([correct_class, 1 - correct_class], -1)[None]
    result = variation(probs, torch.tensor([0]))
    assert result["per_image"].item() == pytest.approx((0.29 / 4) ** 0.5, abs=1e-7)
    # The other class is 1 - p: the same spread.
    assert variation(probs, torch.tensor([1]))["per_image"].item() == pytest.approx(
        (0.29 / 4) ** 0.5, abs=1e-7
    )


def test_variation_equals_population_std_of_the_labelled_class():
    """Per image, ``std(unbiased=False)`` over shifts of ``probs[n, :, :, labels[n]]``,
    computed with loops; the summary is the mean over images."""
    probs = _random_probs(5, n=4, h=3, w=5, c=6)
    labels = torch.tensor([5, 0, 2, 2])
    result = variation(probs, labels)
    expected = []
    for i in range(4):
        values = [probs[i, h, w, labels[i]].item() for h in range(3) for w in range(5)]
        mean = sum(values) / len(values)
        expected.append((sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5)
    assert result["per_image"].tolist() == pytest.approx(expected, abs=1e-7)
    assert result["variation"] == pytest.approx(sum(expected) / 4, abs=1e-7)
    assert len(set(expected)) == 4


# --- accuracy by shift --------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(4, 4), (3, 5), (6, 2)])
def test_accuracy_by_shift(height, width):
    """The heatmap is the accuracy at each shift (Appendix D, Fig. 11), its (0, 0) entry
    and mean agree with :func:`accuracy`, and the diagonal is the heatmap's diagonal."""
    correct = _correct_maps(6, 5, height, width)
    labels = torch.tensor([0, 1, 2, 0, 1])
    probs = _probs_from_correct(correct, labels)
    result = accuracy_by_shift(probs, labels)
    heatmap = result["heatmap"]
    assert heatmap.shape == (height, width)
    for dh in range(height):
        for dw in range(width):
            assert heatmap[dh, dw].item() == pytest.approx(correct[:, dh, dw].float().mean())
    assert result["diagonal"].shape == (min(height, width),)
    assert torch.equal(result["diagonal"], torch.diagonal(heatmap))
    summary = accuracy(probs, labels)
    assert heatmap[0, 0].item() == pytest.approx(summary["acc"])
    assert heatmap.mean().item() == pytest.approx(summary["acc_shift_mean"])


# --- adversarial accuracy -----------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(6, 6), (5, 5), (4, 8)])
def test_adversarial_accuracy_matches_brute_force(height, width):
    """At budget k an image counts only if every shift in ``[-k, k]^2`` is classified
    correctly (Appendix B, Fig. 9); the curve starts at the plain accuracy, never rises,
    and its last entry (every shift) is the fraction correct at every shift."""
    correct = _correct_maps(8, 300, height, width, rate=0.93)
    labels = torch.arange(300) % 3
    probs = _probs_from_correct(correct, labels)
    curve = adversarial_accuracy(probs, labels)
    limit = min(height, width) // 2
    assert curve.shape == (limit + 1,)
    expected = [_brute_survivors(correct, k).float().mean().item() for k in range(limit + 1)]
    assert curve.tolist() == pytest.approx(expected, abs=1e-7)
    assert (curve[1:] <= curve[:-1]).all()
    assert curve[0].item() == pytest.approx(accuracy(probs, labels)["acc"])
    if height == width:  # [-H/2, H/2]^2 covers every shift
        assert curve[-1].item() == pytest.approx(correct.flatten(1).all(1).float().mean())
    assert len(set(expected)) > 2  # the curve actually falls


@pytest.mark.parametrize(
    ("wrong", "first_failure"),
    [((2, 0), 2), ((6, 0), 2), ((0, 2), 2), ((0, 6), 2), ((5, 3), 3), ((1, 7), 1), ((4, 4), 4)],
)
def test_adversarial_accuracy_single_wrong_shift(wrong, first_failure):
    """An image wrong at one shift only (here ``(2, 0)`` and its mirror ``(-2, 0) =
    (6, 0)`` on an 8x8 grid, and others) survives every budget below the shift's
    Chebyshev distance and fails from there on."""
    correct = torch.ones(2, 8, 8, dtype=torch.bool)
    correct[0, wrong[0], wrong[1]] = False
    labels = torch.tensor([1, 2])
    curve = adversarial_accuracy(_probs_from_correct(correct, labels), labels)
    expected = [1.0 if k < first_failure else 0.5 for k in range(5)]
    assert curve.tolist() == expected


def test_adversarial_accuracy_max_shift():
    """``max_shift`` truncates the curve: it is a prefix of the full curve."""
    correct = _correct_maps(9, 50, 6, 6, rate=0.9)
    labels = torch.zeros(50, dtype=torch.long)
    probs = _probs_from_correct(correct, labels)
    full = adversarial_accuracy(probs, labels)
    assert torch.equal(adversarial_accuracy(probs, labels, max_shift=1), full[:2])
    assert torch.equal(adversarial_accuracy(probs, labels, max_shift=0), full[:1])


# --- sampled consistency and models -------------------------------------------------------


def test_shift_invariant_model_is_fully_consistent():
    """A circular conv with global pooling is invariant to circular shifts: sampled and
    exact consistency are 1 and the all-shift probabilities do not depend on the shift."""
    model = _seeded(ShiftInvariant)
    torch.manual_seed(10)
    images = torch.randn(8, 3, 8, 8) + 3 * torch.randn(8, 3, 1, 1)  # images differ in colour
    assert sampled_consistency(model, images, max_shift=4, seed=0) == 1.0
    probs = shift_probabilities(model, images, method="naive")
    assert consistency(probs) == 1.0
    torch.testing.assert_close(probs, probs[:, :1, :1].expand_as(probs), atol=1e-6, rtol=0)
    assert probs.argmax(-1).unique().numel() > 1  # not one class for every image


def test_pixel_reader_is_inconsistent():
    """A classifier reading one pixel position changes its answer with the shift: exact
    consistency on random images is far below 1 (about 1/5 for 5 classes), and the
    sampled estimate with shifts covering the whole image is close to it."""
    model = _seeded(PixelReader)
    torch.manual_seed(11)
    images = torch.randn(300, 3, 8, 8)
    exact = consistency(shift_probabilities(model, images[:20], method="naive"))
    assert exact < 0.5
    sampled = sampled_consistency(model, images, max_shift=4, seed=0)
    assert sampled < 0.5
    assert sampled == pytest.approx(
        consistency(shift_probabilities(model, images, method="naive")), abs=0.1
    )


def test_sampled_consistency_without_shifts_is_one():
    """``max_shift=0`` compares each image with itself."""
    model = _seeded(PixelReader)
    images = torch.randn(16, 3, 8, 8)
    assert sampled_consistency(model, images, max_shift=0, seed=3) == 1.0


def test_sampled_consistency_is_seeded():
    """Same seed, same pairs of shifts, same value; other seeds draw other pairs; the
    batch size does not change the draw."""
    model = _seeded(PixelReader)
    torch.manual_seed(12)
    images = torch.randn(64, 3, 8, 8)
    values = [sampled_consistency(model, images, max_shift=4, seed=seed) for seed in range(6)]
    assert values[2] == sampled_consistency(model, images, max_shift=4, seed=2)
    assert values[2] == sampled_consistency(model, images, max_shift=4, seed=2, batch_size=5)
    assert len(set(values)) > 1


def test_sampled_consistency_restores_train_mode():
    """The model runs in eval mode and is handed back in train mode."""
    model = _seeded(ShiftInvariant).train()
    sampled_consistency(model, torch.randn(2, 3, 8, 8), max_shift=2)
    assert model.training


# --- invalid arguments --------------------------------------------------------------------


def test_invalid_probs_and_labels_name_the_field():
    """Wrong ranks, lengths and class indices raise ``ValueError`` naming the field."""
    probs = _random_probs(0, n=3, h=4, w=4, c=3)
    labels = torch.tensor([0, 1, 2])
    for function in [consistency, consistency_per_image]:
        with pytest.raises(ValueError, match=r"^probs:"):
            function(probs[0])
        with pytest.raises(ValueError, match=r"^probs:"):
            function(probs.numpy())
    scorers = [accuracy, variation, accuracy_by_shift, adversarial_accuracy, correct_map]
    for function in scorers:
        with pytest.raises(ValueError, match=r"^probs:"):
            function(probs.flatten(1, 2), labels)
        with pytest.raises(ValueError, match=r"^labels:"):
            function(probs, labels.view(3, 1))
        with pytest.raises(ValueError, match=r"^labels:"):
            function(probs, labels[:2])
        with pytest.raises(ValueError, match=r"^labels:"):
            function(probs, torch.tensor([0, 1, 3]))
        with pytest.raises(ValueError, match=r"^labels:"):
            function(probs, torch.tensor([-1, 1, 2]))


def test_invalid_max_shift_names_the_field():
    """Budgets beyond ``H // 2`` or below 0 raise ``ValueError`` naming ``max_shift``."""
    probs = _random_probs(0, n=2, h=6, w=6, c=3)
    labels = torch.tensor([0, 1])
    for max_shift in [4, -1]:
        with pytest.raises(ValueError, match=r"^max_shift:"):
            adversarial_accuracy(probs, labels, max_shift=max_shift)
    model = _seeded(ShiftInvariant)
    images = torch.randn(2, 3, 8, 8)
    for max_shift in [5, -1]:
        with pytest.raises(ValueError, match=r"^max_shift:"):
            sampled_consistency(model, images, max_shift=max_shift)


def test_invalid_images_name_the_field():
    """Images must be a float ``(N, C, H, W)`` tensor."""
    model = _seeded(ShiftInvariant)
    with pytest.raises(ValueError, match=r"^images:"):
        sampled_consistency(model, torch.randn(3, 8, 8), max_shift=1)
    with pytest.raises(ValueError, match=r"^images:"):
        sampled_consistency(model, torch.zeros(1, 3, 8, 8, dtype=torch.long), max_shift=1)
    with pytest.raises(ValueError, match=r"^images:"):
        shift_probabilities(model, torch.randn(1, 1, 3, 8, 8), method="naive")


def test_invalid_method_and_batch_size_name_the_field():
    """Unknown methods and batch sizes below 1 raise ``ValueError`` naming the field."""
    model = _seeded(ShiftInvariant)
    images = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"^method:"):
        shift_probabilities(model, images, method="exact")
    with pytest.raises(ValueError, match=r"^batch_size:"):
        shift_probabilities(model, images, batch_size=0)
    with pytest.raises(ValueError, match=r"^batch_size:"):
        shift_probabilities(model, images, method="naive", batch_size=-2)


def test_shifted_scores_match_their_definition():
    """acc at no shift, acc at the first random shift, agreement of the two shifts: the
    same numbers as computed by hand from the same seeded draws."""
    from study.data import random_circular_shifts
    from study.metrics import shifted_scores

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5),
    ).eval()
    images, labels = torch.randn(37, 3, 8, 8), torch.randint(0, 5, (37,))
    scores = shifted_scores(model, images, labels, max_shift=4, seed=7, batch_size=10)
    generator = torch.Generator().manual_seed(7)
    first = random_circular_shifts(37, (8, 8), 4, generator)
    second = random_circular_shifts(37, (8, 8), 4, generator)
    with torch.no_grad():
        plain = model(images).argmax(1)
        a = torch.stack(
            [model(shift(x[None], *s.tolist()))[0] for x, s in zip(images, first, strict=True)]
        )
        b = torch.stack(
            [model(shift(x[None], *s.tolist()))[0] for x, s in zip(images, second, strict=True)]
        )
    assert scores["acc"] == (plain == labels).sum().item() / 37
    assert scores["acc_shift"] == (a.argmax(1) == labels).sum().item() / 37
    assert scores["consistency"] == (a.argmax(1) == b.argmax(1)).sum().item() / 37
    assert 0 < scores["consistency"] < 1  # the test can fail: the model is not invariant


def test_shifted_scores_of_a_shift_invariant_model():
    from study.metrics import shifted_scores

    class Mean(torch.nn.Module):
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([m, -m], 1)

    images = torch.randn(20, 3, 8, 8)
    labels = (images.mean((1, 2, 3)) < 0).long()
    scores = shifted_scores(Mean(), images, labels, 4)
    assert {k: v for k, v in scores.items() if k != "loss"} == {
        "acc": 1.0,
        "acc_shift": 1.0,
        "consistency": 1.0,
    }
    # the mean cross-entropy of the unshifted logits, in nats
    logits = Mean()(images)
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert scores["loss"] == pytest.approx(expected, rel=1e-6)
    wrong = shifted_scores(Mean(), images, 1 - labels, 4)
    assert wrong["acc"] == 0.0 and wrong["loss"] > scores["loss"]

"""What a trial's metrics are called and measure, with nothing heavy imported (no
torch): the validation, per-epoch, test and final metric names with their directions,
the shift families, their scores, their grids and the grids' defaults.
Spaces, exports and status lines read these; :mod:`study.metrics.families` computes the
scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

METHODS: tuple[str, ...] = ("auto", "naive", "polyphase")
"""How all-shift probabilities are computed (:func:`study.metrics.shift_probabilities`)."""
FAMILIES: tuple[str, ...] = ("circular", "crop", "subpixel")
"""The shift families, in the order metrics and tables list them."""
SCORES: tuple[str, ...] = ("consistency", "acc_worst", "acc_mean")
"""The scores of every family (see the module docs)."""
SHOWN_BESIDE: tuple[str, ...] = ("test_consistency_crop", "test_consistency_subpixel")
"""The family scores that progress lines, ``study status`` and ``study pareto`` show
beside today's test accuracy and consistency (exports carry all of them)."""
DEFAULT_MARGIN = 2
"""``crop``: zero-fill shifts of up to 2 pixels each way (25 offsets). Chosen on
bench/shift_families.py (docs/PERFORMANCE.md): with 4 (81 offsets, the paper's crop
augmentation) the families alone took 2.6x a ResNet-20's whole test-time evaluation;
with 2 and quarter-pixel steps at most 1.5x (``eval.crop_margin: 4`` for the wider grid)."""
DEFAULT_STEPS = 4
"""``subpixel``: quarter-pixel steps (16 offsets)."""


VAL_METRICS: tuple[str, ...] = ("val_acc", "val_acc_shift", "val_consistency", "val_loss")
"""Per-epoch metrics on the validation split (also final: the last epoch's values);
``val_loss`` is the unshifted images' mean cross-entropy (nats), the others fractions."""
PER_EPOCH: dict[str, str] = {
    "val_acc": "max",
    "val_acc_shift": "max",
    "val_consistency": "max",
    "val_loss": "min",
    "train_loss": "min",
}
"""Metrics every epoch reports, with their natural direction (``train_loss``: the mean
cross-entropy over the epoch's steps, nats)."""
FRACTIONS: frozenset[str] = frozenset(m for m, way in PER_EPOCH.items() if way == "max")
"""Per-epoch metrics that are fractions of the validation split (binomial noise)."""


def family_metric_names(
    prefix: str = "test", families: Iterable[str] = FAMILIES
) -> tuple[str, ...]:
    """The metric names of ``families``' scores: ``{prefix}_{score}_{family}``.

    >>> family_metric_names(families=["crop"])
    ('test_consistency_crop', 'test_acc_worst_crop', 'test_acc_mean_crop')
    """
    return tuple(f"{prefix}_{score}_{family}" for family in families for score in SCORES)


def crop_offsets(margin: int) -> list[tuple[int, int]]:
    """The ``crop`` grid: every ``(dy, dx)`` with ``-margin <= dy, dx <= margin``, row-major.

    >>> crop_offsets(1)[:4]
    [(-1, -1), (-1, 0), (-1, 1), (0, -1)]
    """
    span = range(-margin, margin + 1)
    return [(dy, dx) for dy in span for dx in span]


def subpixel_offsets(steps: int) -> list[tuple[float, float]]:
    """The ``subpixel`` grid: ``(a / steps, b / steps)`` for ``0 <= a, b < steps``.

    >>> subpixel_offsets(2)
    [(0.0, 0.0), (0.0, 0.5), (0.5, 0.0), (0.5, 0.5)]
    """
    return [(a / steps, b / steps) for a in range(steps) for b in range(steps)]


def describe_family(family: str, margin: int = DEFAULT_MARGIN, steps: int = DEFAULT_STEPS) -> str:
    """One line saying what ``family``'s scores measured (an MLflow tag of each trial).

    >>> describe_family("crop", 4)
    'zero-fill shifts of up to 4 px each way (81 offsets; zeros = the dataset mean)'
    """
    check_grid(family, margin, steps)
    if family == "crop":
        offsets = (2 * margin + 1) ** 2
        return (
            f"zero-fill shifts of up to {margin} px each way "
            f"({offsets} offsets; zeros = the dataset mean)"
        )
    if family == "subpixel":
        return f"band-limited circular shifts in steps of 1/{steps} px ({steps**2} offsets)"
    return "every circular shift (H x W offsets)"


def check_grid(family: str, margin: int, steps: int, size: Sequence[int] | None = None) -> None:
    """A one-line ``ValueError`` naming the field unless ``family`` is known, ``0 <=
    margin <= min(H, W) / 2`` (``size``: the images' ``(H, W)``, where known) and
    ``steps >= 1``."""
    if family not in FAMILIES:
        raise ValueError(f"families: {family!r} is not one of {', '.join(FAMILIES)}")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"crop_margin: expected a whole number >= 0, got {margin!r}")
    if size is not None and margin > min(size) // 2:
        raise ValueError(
            f"crop_margin: {margin} must be at most {min(size) // 2} "
            f"(half the {size[0]}x{size[1]} images)"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"subpixel_steps: expected a whole number >= 1, got {steps!r}")


TEST_METRICS: tuple[str, ...] = (
    "test_acc",
    "test_acc_shift_random",
    "test_acc_shift_mean",
    "test_consistency",
    "test_variation",
    *family_metric_names("test"),
)
"""Final metrics on the test set, computed once at the end: all circular shifts, then
each shift family's three scores (:mod:`study.metrics.families`, ``eval.families``)."""
FINAL_METRICS: tuple[str, ...] = (
    *VAL_METRICS,
    *TEST_METRICS,
    "train_loss",
    "train_seconds",
    "eval_seconds",
)
"""The numeric final metrics of every trial: what a study may optimise."""

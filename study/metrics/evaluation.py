"""The full metric set of a trained classifier, in one call (what ``study report`` and
a trial's final evaluation write).

:func:`evaluate` returns a flat dict: scalars under their metric names (JSON-ready
through :func:`summary`), and the arrays the figures draw under ``*_per_image``,
``accuracy_heatmap``, ``offset_accuracy_<family>`` (accuracy at each offset of a
shift family's grid), ``accuracy_diagonal``, ``adversarial_accuracy``,
``feature_distance`` and ``total_variation``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from study.metrics.families import (
    DEFAULT_MARGIN,
    DEFAULT_STEPS,
    FAMILIES,
    check_grid,
    circular_scores,
    family_top_classes,
    grid_scores,
)
from study.metrics.features import feature_distance_maps
from study.metrics.probabilities import shift_probabilities_by
from study.metrics.scores import (
    accuracy,
    accuracy_by_shift,
    adversarial_accuracy,
    check_probs,
    consistency_per_image,
    variation,
)
from study.metrics.shifts import check_images
from study.metrics.smoothness import total_variation
from study.metrics.timing import forward_overhead


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    method: Literal["auto", "naive", "polyphase"] = "auto",
    feature_images: int = 8,
    feature_max_shift: int | None = None,
    baseline: nn.Module | None = None,
    timing_batch: int = 100,
    seed: int = 0,
    families: Sequence[str] = FAMILIES,
    crop_margin: int = DEFAULT_MARGIN,
    subpixel_steps: int = DEFAULT_STEPS,
    progress: bool = False,
) -> dict[str, Any]:
    """Every metric of Section 4.2 and Appendices B and D on ``images`` ``(N, C, H, W)``
    (float, normalised as the model expects) with class ``labels`` ``(N,)``.

    All ``H x W`` circular shifts of every image are evaluated (``method``: see
    :func:`study.metrics.shift_probabilities`). The per-layer feature maps (Fig. 4) use
    the first ``feature_images`` images (0 skips them) and shifts ``0 .. max_shift - 1``
    (default: all). With a ``baseline`` (the same network with ``filter="delta"``) the
    Table 2 forward-time overhead is measured on ``timing_batch`` images.

    ``families`` (:mod:`study.metrics.families`): each adds ``consistency_<family>``,
    ``acc_worst_<family>`` and ``acc_mean_<family>``, exact over its grid (``crop``:
    zero-fill shifts up to ``crop_margin`` px; ``subpixel``: steps of ``1 /
    subpixel_steps`` px); ``circular`` comes from the all-shift pass above, free.
    """
    check_images(images)
    for family in families:
        check_grid(family, crop_margin, subpixel_steps, images.shape[-2:])
    started = time.perf_counter()
    probs, used = shift_probabilities_by(model, images, method, progress=progress)
    check_probs(probs, labels)
    shift_seconds = time.perf_counter() - started
    spread = variation(probs, labels)
    by_shift = accuracy_by_shift(probs, labels)
    per_image = consistency_per_image(probs)
    result: dict[str, Any] = {
        **accuracy(probs, labels, seed),
        "consistency": per_image.mean().item(),
        "variation": spread["variation"],
        "images": len(images),
        "shifts": probs.shape[1] * probs.shape[2],
        "shift_method": used,
        "shift_seconds": shift_seconds,
        "consistency_per_image": per_image,
        "variation_per_image": spread["per_image"],
        "accuracy_heatmap": by_shift["heatmap"],
        "accuracy_diagonal": by_shift["diagonal"],
        "adversarial_accuracy": adversarial_accuracy(probs, labels),
        "total_variation": total_variation(model),
    }
    for family in families:
        family_started = time.perf_counter()
        if family == "circular":
            scores = circular_scores(probs, labels)
        else:
            top = family_top_classes(model, images, family, crop_margin, subpixel_steps)
            scores = grid_scores(top, labels)
            side = round(top.shape[1] ** 0.5)  # square grids
            correct = (top == labels.view(-1, 1)).double().mean(0)
            result[f"offset_accuracy_{family}"] = correct.view(side, side)
        result.update({f"{name}_{family}": value for name, value in scores.items()})
        result[f"shift_seconds_{family}"] = time.perf_counter() - family_started
    if feature_images:
        if feature_images < 2:
            raise ValueError(f"feature_images: need 0 (skip) or at least 2, got {feature_images}")
        result["feature_distance"] = feature_distance_maps(
            model, images[:feature_images], feature_max_shift, progress=progress
        )
    if baseline is not None:
        batch = images[:timing_batch]
        result.update(
            {f"timing_{k}": v for k, v in forward_overhead(model, baseline, batch).items()}
        )
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready form of an :func:`evaluate` result: every scalar, the curves as
    lists, the feature maps' per-layer means (the full maps stay in the figures)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "feature_distance":
            out[key] = {
                "layers": value["layers"],
                "resolution": [list(r) for r in value["resolution"]],
                "equivariance_mean": _rounded(value["equivariance"].mean((1, 2))),
                "invariance_mean": _rounded(value["invariance"].mean((1, 2))),
            }
        elif key in ("consistency_per_image", "variation_per_image", "accuracy_heatmap") or (
            key.startswith("offset_accuracy_")
        ):
            continue  # per-image and per-shift arrays go to figures, not to the summary
        elif isinstance(value, Tensor):
            out[key] = _rounded(value)
        elif isinstance(value, float):
            out[key] = None if math.isnan(value) else round(value, 6)
        else:
            out[key] = value
    return out


def _rounded(values: Tensor) -> list:
    return torch.round(values.double(), decimals=6).tolist()

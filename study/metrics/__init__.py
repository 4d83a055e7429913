"""Shift-invariance metrics (Section 4.2, Appendices B and D), for any image classifier.

Start from :func:`shift_probabilities`, the softmax at every circular shift of every
image; the scores in :mod:`study.metrics.scores` read it. :func:`evaluate` computes the
whole set at once, and :mod:`study.metrics.figures` draws each metric.

Modules, in the order data flows: ``shifts`` (eq. 4, naive all-shift pass) ->
``polyphase`` (the exact fast path) -> ``probabilities`` (picks one) -> ``scores``
(accuracy, consistency, variation, by-shift and adversarial accuracy); ``families``
(the same scores under circular, zero-fill crop and sub-pixel shift grids); ``features``
(Fig. 4 maps), ``smoothness`` (Fig. 7 TV), ``timing`` (Table 2) -> ``evaluate`` ->
``figures``.
"""

from __future__ import annotations

from study.metrics.evaluate import evaluate, summary
from study.metrics.features import feature_distance_maps, probed_layers
from study.metrics.polyphase import PolyphaseError, input_dependent_layers, structural_blockers
from study.metrics.probabilities import METHODS, shift_probabilities, shift_probabilities_by
from study.metrics.scores import (
    accuracy,
    accuracy_by_shift,
    adversarial_accuracy,
    consistency,
    consistency_per_image,
    correct_map,
    sampled_consistency,
    shifted_scores,
    variation,
)
from study.metrics.shifts import crop_shift, shift
from study.metrics.smoothness import normalized_tv, total_variation
from study.metrics.timing import forward_overhead

__all__ = [
    "METHODS",
    "PolyphaseError",
    "accuracy",
    "accuracy_by_shift",
    "adversarial_accuracy",
    "consistency",
    "consistency_per_image",
    "correct_map",
    "crop_shift",
    "evaluate",
    "feature_distance_maps",
    "forward_overhead",
    "input_dependent_layers",
    "normalized_tv",
    "probed_layers",
    "sampled_consistency",
    "shift",
    "shift_probabilities",
    "shift_probabilities_by",
    "shifted_scores",
    "structural_blockers",
    "summary",
    "total_variation",
    "variation",
]

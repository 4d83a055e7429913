"""Shift-invariance metrics (Section 4.2, Appendices B and D), for any image classifier.

Start from :func:`shift_probabilities`, the softmax at every circular shift of every
image; the scores in :mod:`study.metrics.scores` read it. :func:`evaluate` computes the
whole set at once, and :mod:`study.metrics.figures` draws each metric.

Modules, in the order data flows: ``shifts`` (eq. 4, naive all-shift pass) ->
``polyphase`` (the exact fast path) -> ``probabilities`` (picks one) -> ``scores``
(accuracy, consistency, variation, by-shift and adversarial accuracy); ``families``
(the same scores under circular, zero-fill crop and sub-pixel shift grids); ``features``
(Fig. 4 maps), ``smoothness`` (Fig. 7 TV), ``timing`` (Table 2) -> ``evaluation`` ->
``figures``.
"""

from __future__ import annotations

from study.lazy import lazy_members

_EXPORTS = {
    "METHODS": "study.metrics.names",
    "PolyphaseError": "study.metrics.polyphase",
    "accuracy": "study.metrics.scores",
    "accuracy_by_shift": "study.metrics.scores",
    "adversarial_accuracy": "study.metrics.scores",
    "consistency": "study.metrics.scores",
    "consistency_per_image": "study.metrics.scores",
    "correct_map": "study.metrics.scores",
    "crop_shift": "study.metrics.shifts",
    "evaluate": "study.metrics.evaluation",
    "feature_distance_maps": "study.metrics.features",
    "forward_overhead": "study.metrics.timing",
    "input_dependent_layers": "study.metrics.polyphase",
    "normalized_tv": "study.metrics.smoothness",
    "probed_layers": "study.metrics.features",
    "sampled_consistency": "study.metrics.scores",
    "shift": "study.metrics.shifts",
    "shift_probabilities": "study.metrics.probabilities",
    "shift_probabilities_by": "study.metrics.probabilities",
    "shifted_scores": "study.metrics.scores",
    "structural_blockers": "study.metrics.polyphase",
    "summary": "study.metrics.evaluation",
    "total_variation": "study.metrics.smoothness",
    "variation": "study.metrics.scores",
}

__getattr__, __all__ = lazy_members(__name__, _EXPORTS)

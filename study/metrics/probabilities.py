"""Softmax probabilities at every circular shift, by the cheapest exact method."""

from __future__ import annotations

import logging
from typing import Literal

from torch import Tensor, nn

from study.metrics.names import METHODS
from study.metrics.polyphase import PolyphaseError, polyphase_shift_probabilities
from study.metrics.shifts import naive_shift_probabilities

logger = logging.getLogger(__name__)


def shift_probabilities(
    model: nn.Module,
    images: Tensor,
    method: Literal["auto", "naive", "polyphase"] = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> Tensor:
    """``(N, H, W, classes)`` softmax probabilities of ``model`` for every circular
    shift ``(dh, dw)`` of every image (eq. 4), in eval mode, float32 on the CPU.

    ``method``: ``"naive"`` runs every shifted image; ``"polyphase"`` evaluates each
    subsampling phase once (exact, many times cheaper; needs every layer to commute
    with circular shifts, and raises :class:`PolyphaseError` otherwise); ``"auto"``
    checks the model (its layers, then a comparison with plain passes at a few shifts)
    and takes polyphase when it is exact, naive otherwise. ``batch_size``: shifted
    images per pass for naive (default 256), images per pass for polyphase (default 16).
    """
    return shift_probabilities_by(model, images, method, batch_size, progress)[0]


def shift_probabilities_by(
    model: nn.Module,
    images: Tensor,
    method: Literal["auto", "naive", "polyphase"] = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[Tensor, str]:
    """:func:`shift_probabilities`, and the method that computed them (``"polyphase"``
    or ``"naive"``)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size: expected a whole number >= 1, got {batch_size}")
    if method != "naive":
        try:
            probs = polyphase_shift_probabilities(model, images, batch_size or 16, progress)
            return probs, "polyphase"
        except PolyphaseError as error:
            if method == "polyphase":
                raise
            logger.info("shift_probabilities: naive evaluation (%s)", error)
    return naive_shift_probabilities(model, images, batch_size or 256, progress), "naive"

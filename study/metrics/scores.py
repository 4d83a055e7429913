"""Shift-invariance scores from all-shift probabilities (Section 4.2, Appendices B and D).

Every function here reads ``probs``, the ``(N, H, W, classes)`` tensor of
:func:`study.metrics.shift_probabilities`: the softmax of image ``n`` circularly shifted
by ``(dh, dw)``. Shifts are indices ``0 <= dh < H``; a shift of ``-k`` is ``H - k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.data.augment import random_circular_shifts, shift_at
from study.metrics.shifts import check_images, evaluating, model_device, shift


def check_probs(probs: Tensor, labels: Tensor | None = None) -> None:
    """A one-line ``ValueError`` unless ``probs`` is ``(N, H, W, C)`` and ``labels`` is
    ``(N,)`` of class indices."""
    if not isinstance(probs, Tensor) or probs.dim() != 4:
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"probs: expected a tensor of shape (N, H, W, classes), got {shape}")
    if labels is None:
        return
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != probs.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected shape ({probs.shape[0]},) to match probs, got {shape}")
    if labels.min() < 0 or labels.max() >= probs.shape[-1]:
        raise ValueError(f"labels: class indices must lie in [0, {probs.shape[-1]})")


def correct_map(probs: Tensor, labels: Tensor) -> Tensor:
    """``(N, H, W)`` bool: is image ``n`` at shift ``(dh, dw)`` classified correctly."""
    check_probs(probs, labels)
    return probs.argmax(-1) == labels.view(-1, 1, 1).to(probs.device)


def accuracy(probs: Tensor, labels: Tensor, seed: int = 0) -> dict[str, float]:
    """Accuracy without a shift and under shifts (Table 1, "Test accuracy").

    - ``acc``: at shift (0, 0) ("None").
    - ``acc_shift_mean``: the expected accuracy under a uniformly random shift,
      computed exactly as the mean over all H x W shifts.
    - ``acc_shift_random``: the paper's "Rand": one uniformly random shift per image,
      drawn with ``seed``.
    """
    correct = correct_map(probs, labels)
    count, height, width = correct.shape
    generator = torch.Generator().manual_seed(seed)
    dh = torch.randint(height, (count,), generator=generator)
    dw = torch.randint(width, (count,), generator=generator)
    return {
        "acc": correct[:, 0, 0].float().mean().item(),
        "acc_shift_mean": correct.float().mean().item(),
        "acc_shift_random": correct[torch.arange(count), dh, dw].float().mean().item(),
    }


def consistency_per_image(probs: Tensor) -> Tensor:
    """``(N,)``: for each image, the probability that two independent uniformly random
    circular shifts (the same shift allowed) give the same top class, exactly:
    ``sum_k (n_k / HW)^2`` where ``n_k`` counts the shifts classified as ``k``."""
    check_probs(probs)
    count, height, width, classes = probs.shape
    top = probs.argmax(-1).view(count, -1)
    votes = F.one_hot(top, classes).sum(1).double() / (height * width)
    return (votes**2).sum(1)


def consistency(probs: Tensor) -> float:
    """Classification consistency (Section 4.2), exact over all pairs of shifts:
    ``E[1{argmax P(Shift_1 X) = argmax P(Shift_2 X)}]`` for image X and shifts 1 and 2
    drawn independently and uniformly from all H x W circular shifts (the same shift
    may be drawn twice), averaged over images."""
    return consistency_per_image(probs).mean().item()


def sampled_consistency(
    model: nn.Module,
    images: Tensor,
    max_shift: int,
    seed: int = 0,
    batch_size: int = 256,
) -> float:
    """Classification consistency from one random pair of shifts per image, for cheap
    per-epoch use.

    Protocol: for each image, two circular shifts ``(h1, w1)`` and ``(h2, w2)`` are
    drawn independently and uniformly from the distinct shifts within ``max_shift``
    pixels each way (:func:`study.data.augment.random_circular_shifts`; ``seed`` fixes
    them), the image is shifted by each (eq. 4), and the two top classes are compared.
    With ``max_shift >= H/2`` every one of the ``H x W`` shifts is equally likely and
    this is an unbiased estimate of :func:`consistency`.
    """
    size = _shift_grid(images, max_shift)
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.cat(
        [random_circular_shifts(len(images), size, max_shift, generator) for _ in range(2)], 1
    )
    device = model_device(model)
    agree = 0
    with evaluating(model), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(device)
            pairs = offsets[start : start + batch_size].tolist()
            first = torch.stack(
                [shift(x, h1, w1) for x, (h1, w1, _, _) in zip(chunk, pairs, strict=True)]
            )
            second = torch.stack(
                [shift(x, h2, w2) for x, (_, _, h2, w2) in zip(chunk, pairs, strict=True)]
            )
            agree += (model(first).argmax(1) == model(second).argmax(1)).sum().item()
    return agree / len(images)


def shifted_scores(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    max_shift: int,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Accuracy unshifted and at a random shift, and the sampled consistency, in three
    forward passes (cheap, for per-epoch use).

    Each image gets two circular shifts ``s1``, ``s2`` drawn as in
    :func:`sampled_consistency` (``seed`` fixes them). Returns ``acc`` (no shift),
    ``acc_shift`` (at ``s1``: Table 1's "Rand") and ``consistency`` (the top classes
    at ``s1`` and ``s2`` agree: Section 4.2's protocol), each a fraction of the images,
    and ``loss``: the mean cross-entropy of the unshifted predictions (nats).
    """
    size = _shift_grid(images, max_shift)
    generator = torch.Generator().manual_seed(seed)
    first, second = (random_circular_shifts(len(images), size, max_shift, generator) for _ in "12")
    device = model_device(model)
    counts = torch.zeros(3, dtype=torch.long)
    loss = torch.zeros((), dtype=torch.float64)
    with evaluating(model), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(device)
            truth = labels[start : start + batch_size].to(device)
            rows = slice(start, start + len(chunk))
            logits = model(chunk).float()
            loss += F.cross_entropy(logits, truth, reduction="sum").double().cpu()
            plain = logits.argmax(1)
            at_first = model(shift_at(chunk, first[rows])).argmax(1)
            at_second = model(shift_at(chunk, second[rows])).argmax(1)
            counts += torch.stack(
                [(plain == truth).sum(), (at_first == truth).sum(), (at_first == at_second).sum()]
            ).cpu()
    acc, acc_shift, agree = (count / len(images) for count in counts.tolist())
    return {
        "acc": acc,
        "acc_shift": acc_shift,
        "consistency": agree,
        "loss": loss.item() / len(images),
    }


def variation(probs: Tensor, labels: Tensor) -> dict[str, Tensor | float]:
    """Classification variation (Section 4.2, Fig. 6): per image, the standard deviation
    over all H x W shifts of the probability of the correct class,
    ``sqrt(Var_{h,w} P_correct(Shift_{h,w}(X)))`` (population variance).

    Returns ``{"variation": mean over images, "per_image": (N,) tensor}``.
    """
    check_probs(probs, labels)
    correct = probs.gather(
        -1, labels.view(-1, 1, 1, 1).expand(-1, *probs.shape[1:3], 1).to(probs.device)
    )
    per_image = correct.flatten(1).double().std(1, unbiased=False)
    return {"variation": per_image.mean().item(), "per_image": per_image}


def accuracy_by_shift(probs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Accuracy as a function of shift (Appendix D, Fig. 11).

    ``heatmap``: ``(H, W)`` accuracy at each shift ``(dh, dw)``;
    ``diagonal``: ``(min(H, W),)`` accuracy at the diagonal shifts ``(d, d)``.
    """
    correct = correct_map(probs, labels).float()
    heatmap = correct.mean(0)
    size = min(heatmap.shape)
    diagonal = heatmap[torch.arange(size), torch.arange(size)]
    return {"heatmap": heatmap, "diagonal": diagonal}


def adversarial_accuracy(probs: Tensor, labels: Tensor, max_shift: int | None = None) -> Tensor:
    """Accuracy against a shift adversary (Appendix B, Fig. 9): an image counts as
    correct at budget ``k`` only if every shift in ``[-k, k]^2`` is classified
    correctly. Returns ``(max_shift + 1,)``, for ``k = 0 .. max_shift``; the default is
    ``H // 2`` (every shift). Entry 0 is the plain accuracy; the curve never rises."""
    correct = correct_map(probs, labels)
    height, width = correct.shape[1:]
    limit = min(height, width) // 2
    if max_shift is None:
        max_shift = limit
    if not 0 <= max_shift <= limit:
        raise ValueError(
            f"max_shift: {max_shift} must lie in [0, {limit}] for {height}x{width} shifts"
        )
    survived = correct[:, 0, 0].clone()
    curve = [survived.float().mean()]
    for k in range(1, max_shift + 1):
        ring_h = torch.tensor([k % height, -k % height])
        ring_w = torch.tensor([k % width, -k % width])
        span_h = torch.arange(-k, k + 1) % height
        span_w = torch.arange(-k, k + 1) % width
        rows = correct[:, ring_h][:, :, span_w].flatten(1).all(1)
        cols = correct[:, span_h][:, :, ring_w].flatten(1).all(1)
        survived &= rows & cols
        curve.append(survived.float().mean())
    return torch.stack(curve)


def _shift_grid(images: Tensor, max_shift: int) -> tuple[int, int]:
    """The images' ``(H, W)``, after checking them and that ``max_shift`` lies in
    ``[0, max(H, W) // 2]`` (a one-line ``ValueError`` otherwise)."""
    check_images(images)
    height, width = images.shape[-2:]
    limit = max(height, width) // 2
    if not 0 <= max_shift <= limit:
        raise ValueError(
            f"max_shift: {max_shift} must lie in [0, {limit}] for {height}x{width} images"
        )
    return height, width

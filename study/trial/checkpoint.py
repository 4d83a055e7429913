"""Model checkpoints that rebuild themselves: the arguments of
:func:`study.models.build` beside the weights.

A checkpoint is a ``torch.save`` dict: ``format``, ``model`` (``build_args``:
name, num_classes, width, filter as its canonical string, padding), ``state_dict``
(fixed filter taps are non-persistent buffers, so they are rebuilt from the spec,
while learnable taps are parameters and saved), ``data`` (the input normalisation and
where the data came from) and anything else the writer adds (a trial adds its
optimiser, scheduler and RNG states).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from study import models
from study.data import CIFAR_MEAN, CIFAR_STD

FORMAT = "antialiased-study/checkpoint-1"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint; the message says why."""


#: A trial's checkpoint file in its output folder (trained or simulated).
CHECKPOINT = "checkpoint.pt"
#: Beside it in a trial's folder (and in its child run): the final metrics with their
#: details, and the per-epoch history.
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (built by :func:`study.models.build`) and ``extra`` entries to
    ``path`` atomically (a temporary file, then a rename). ``extra["data"]`` defaults to
    the CIFAR normalisation."""
    if not hasattr(model, "build_args"):
        raise CheckpointError("model: was not built by study.models.build; it has no build_args")
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": dict(model.build_args),
        "state_dict": model.state_dict(),
        "data": {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)},
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, the checkpoint dict)``; a :class:`CheckpointError` naming
    the problem if ``path`` is not a checkpoint this version can rebuild."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except OSError as error:  # a name too long, a loop of links
        reason = error.strerror
        raise CheckpointError(f"checkpoint: {path} is not a usable path ({reason})") from None
    if not is_file:
        raise CheckpointError(f"checkpoint: {path} is not a file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not its own
        raise CheckpointError(
            f"checkpoint: {path} is not a torch checkpoint of weights ({type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {path} is not a {FORMAT} file")
    model = models.build(**payload["model"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint: {path} does not fit its model ({reason})") from None
    return model.to(map_location).eval(), payload


def checkpoint_history(path: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows a trial's checkpoint holds (a trained or a simulated trial's),
    without rebuilding its model."""
    return list(torch.load(Path(path), map_location="cpu", weights_only=True)["history"])

"""A simulated trial: closed-form metrics of the configuration, no training.

For measuring the service itself at sizes real training cannot reach (a thousand
trials on one machine) and for benchmarking samplers and early stopping against a
known front. It runs through exactly the path a real trial does (Ray Tune, Optuna,
MLflow, a checkpoint every epoch, retries and resume); every run it makes is tagged
``study.simulated`` and ``study pareto`` refuses its studies unless asked.

The model, ``simulate.enabled: true`` in a trial config. From the filter's power
response ``|H(f)|^2`` (``f`` in fractions of Nyquist, :func:`study.filters.response`):

- ``content = mean |H|^2 over f <= 1/4``: what the blur keeps of the image (1 for
  ``delta``);
- ``leak = mean |H|^2 over f >= 1/2``: what aliases on subsampling (1 for ``delta``,
  0 for an ideal half-band filter).

With ``flip`` and ``shift`` 1 when the augmentation flips or shifts (or crops):

- ``test_acc = 0.90 + 0.03 (1 - leak) - 0.12 (1 - content) + 0.01 flip - 0.004 shift
  + 0.003 z`` (antialiasing helps accuracy a little, blurring away content costs it;
  ``z ~ N(0, 1)`` fixed by the seed and the configuration: a seed's spread);
- ``test_consistency = 0.995 - 0.12 leak (1 - 0.6 shift)`` (the paper's Fig. 5:
  blurring, and less so shift augmentation, buy consistency), or ``1`` with
  ``model.downsample: aps`` (exactly invariant; ``test_acc`` 0.003 lower).
- ``adaptive``: the bands of ``binomial-{adaptive_taps}`` with half the lost content
  kept (it adapts to the content), ``test_acc`` 0.004 higher; ``ideal``: ``content =
  min(1, 4 cutoff)``, ``leak = max(0, 2 cutoff - 1)``, ``test_acc`` 0.002 lower (ringing).

Under the other shift families (:mod:`study.metrics.families`), with ``c`` the circular
consistency: ``crop`` loses ``0.06 (1 - 0.5 shift)`` more (new content enters at the
border; APS is no exception), ``subpixel`` loses ``0.5 leak`` of it, and ``0.04`` with
``aps`` (a half-pixel shift has no phase to pick); in each family ``acc_mean = acc - 0.03
(1 - consistency)`` and ``acc_worst = acc - 0.6 (1 - consistency)``.

The final values are those; the per-epoch validation values rise to them along
``1 - exp(-4 e / E)`` with Gaussian noise of standard deviation
``simulate.noise * exp(-3 e / E)`` (a validation score is a snapshot of the weights at
the epoch's end), ``val_loss = -ln val_acc``; the training loss is the cross-entropy of
the noise-free accuracy curve, ``-ln(0.1 + (acc - 0.1) progress)``, with a quarter of
that noise (it averages every step of the epoch). All deterministic for a seed. Each epoch sleeps
``simulate.epoch_seconds``. So for any space the true front is the non-dominated set of
these closed-form values over the space, computed exactly by enumerating it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from study.metrics.names import VAL_METRICS
from study.trial.checkpoint import HISTORY_FILE, METRICS_FILE
from study.trial.config import ConfigError, TrialConfig


def filter_bands(spec: str) -> tuple[float, float]:
    """``(content, leak)`` of a filter spec: its mean power response over ``f <= 1/4``
    and over ``f >= 1/2`` (fractions of Nyquist).

    >>> [round(v, 3) for v in filter_bands("delta")]
    [1.0, 1.0]
    >>> [round(v, 3) for v in filter_bands("binomial-5")]
    [0.825, 0.008]
    """
    from study import filters

    frequency, h = filters.response(spec, n=1025)
    power = np.abs(h) ** 2
    return float(power[frequency <= 0.25].mean()), float(power[frequency >= 0.5].mean())


def final_metrics(config: TrialConfig) -> dict[str, float]:
    """The closed-form test metrics of ``config`` (the module's formulas)."""
    model, kind = config.model, config.augment.kind
    content, leak = filter_bands(model.filter)
    bonus = 0.0
    if model.downsample == "adaptive":  # a binomial of its size, keeping half the detail
        content, leak = filter_bands(f"binomial-{model.adaptive_taps}")
        content, bonus = (1 + content) / 2, 0.004
    elif model.downsample == "ideal":  # a brick wall: all of the band below its cutoff
        cutoff = model.ideal_cutoff if model.ideal_cutoff is not None else 0.5  # 1/stride
        content = min(1.0, cutoff / 0.25)
        leak, bonus = max(0.0, (cutoff - 0.5) / 0.5), -0.002  # ringing
    flip = float("flip" in kind)
    shift = float("shift" in kind or "crop" in kind)
    spread = _normal(config, "seed")
    acc = 0.90 + 0.03 * (1 - leak) - 0.12 * (1 - content) + 0.01 * flip - 0.004 * shift
    acc += 0.003 * spread + bonus
    consistency = 0.995 - 0.12 * leak * (1 - 0.6 * shift)
    if model.downsample == "aps":
        acc, consistency = acc - 0.003, 1.0
    acc, consistency = _unit(acc), _unit(consistency)
    inconsistent = 1 - consistency
    by_family = {
        "circular": consistency,
        "crop": _unit(consistency - 0.06 * (1 - 0.5 * shift)),
        "subpixel": _unit(consistency - 0.5 * leak - (0.04 if model.downsample == "aps" else 0.0)),
    }
    families = {}
    for family in config.eval.families:
        agree = by_family[family]
        families.update(
            {
                f"test_consistency_{family}": agree,
                f"test_acc_worst_{family}": _unit(acc - 0.6 * (1 - agree)),
                f"test_acc_mean_{family}": _unit(acc - 0.03 * (1 - agree)),
            }
        )
    return {
        "test_acc": acc,
        "test_acc_shift_random": _unit(acc - 0.05 * inconsistent),
        "test_acc_shift_mean": _unit(acc - 0.03 * inconsistent),
        "test_consistency": consistency,
        "test_variation": 0.5 * inconsistent,
        **families,
    }


def epoch_row(config: TrialConfig, epoch: int, final: dict[str, float]) -> dict[str, Any]:
    """Epoch ``epoch`` (1-based) of ``config``: the validation metrics on their way to
    the final values, with noise shrinking over the epochs."""
    epochs = config.train.epochs
    progress = (1 - math.exp(-4 * epoch / epochs)) / (1 - math.exp(-4))
    noise = config.simulate.noise * math.exp(-3 * epoch / epochs)
    learnt = 0.1 + (final["test_acc"] - 0.1) * progress
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": max(0.01, -math.log(learnt) + 0.25 * noise * _normal(config, "loss", epoch)),
    }
    if config.data.validation:
        acc = 0.1 + (final["test_acc"] - 0.1) * progress + noise * _normal(config, "acc", epoch)
        consistency = 0.5 + (final["test_consistency"] - 0.5) * progress
        consistency += noise * _normal(config, "consistency", epoch)
        row.update(
            val_acc=_unit(acc),
            val_acc_shift=_unit(acc - 0.05 * (1 - consistency)),
            val_consistency=_unit(consistency),
            val_loss=-math.log(max(_unit(acc), 0.01)),
        )
    return row


class SimulatedTraining:
    """The simulated trainer behind :func:`study.trial.run_trial` (the loop is the same
    as for real training): an epoch is a row of :func:`epoch_row` after
    ``simulate.epoch_seconds`` of sleep; the checkpoint holds the config and the
    history; the end writes ``metrics.json`` and ``history.json``."""

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.seconds: dict[str, float] = {"setup": 0.0, "checkpoint": 0.0}
        self.final = final_metrics(config)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        tick = time.perf_counter()
        time.sleep(self.config.simulate.epoch_seconds)
        self.epoch = epoch + 1
        row = epoch_row(self.config, self.epoch, self.final)
        return {**row, "epoch_seconds": time.perf_counter() - tick}

    def epoch_line(self, row: dict[str, Any]) -> str:
        return f"epoch {row['epoch']}/{self.config.train.epochs} (simulated)"

    def save(self, path: Path) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"simulated": True, "config": self.config.to_dict(), "history": self.history}
        torch.save(state, path)

    def resume(self, path: Path) -> None:
        import torch

        payload = torch.load(path, weights_only=True)
        if payload.get("config") != self.config.to_dict():
            raise ConfigError("out", f"{path.parent} holds a trial with another config")
        self.history = list(payload["history"])
        self.epoch = len(self.history)

    def finish(self, out: Path | None) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        result = {
            **{k: last[k] for k in VAL_METRICS if k in last},
            **self.final,
            "train_loss": last.get("train_loss"),
            "epochs": len(self.history),
            "train_seconds": sum(row["epoch_seconds"] for row in self.history),
            "validation_seconds": 0.0,
            "eval_images": 0,
            "eval_shifts": 0,
            "eval_method": "simulated",
            "eval_seconds": 0.0,
            "data": "simulated",
            "device": "cpu",
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS_FILE).write_text(json.dumps(result, indent=2))
            (out / HISTORY_FILE).write_text(json.dumps(self.history, indent=2))
        return result

    def used_threads(self) -> int:
        return 1

    def trained_model(self) -> None:
        """Nothing was trained: no model to keep."""
        return None


def _normal(config: TrialConfig, what: str, epoch: int = 0) -> float:
    """A standard normal number fixed by the seed, the configuration, ``what`` and
    ``epoch``: the same trial gives the same numbers on any machine."""
    key = f"{config.seed}|{config.model}|{config.augment}|{what}|{epoch}".encode()
    seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    return float(np.random.default_rng(seed).standard_normal())


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))

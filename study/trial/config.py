"""The one configuration schema: a trial config is a search-space file with every
choice fixed.

A YAML file (or mapping) with these sections, all optional (defaults follow the
paper's Section 4.1)::

    model:   {name: vgg13_bn, width: 1.0, filter: binomial-5, padding: circular,
              downsample: blur, aps_norm: l2, adaptive_taps: 3, adaptive_groups: 2,
              ideal_cutoff: null, ideal_edge: zero}
    data:    {source: shapes, train_images: null, test_images: null, validation: 0, seed: 0}
    augment: {kind: none, padding: 4, mode: zeros, max_shift: 4}
    train:   {epochs: 200, batch_size: 128, lr: 0.1, momentum: 0.9, weight_decay: 5e-4,
              schedule: step, milestones: [100, 150], gamma: 0.1, ...}
    eval:    {images: 1000, method: auto, consistency_max_shift: 16, feature_images: 8,
              val_images: 0, val_method: sampled, families: [circular, crop, subpixel],
              crop_margin: 2, subpixel_steps: 4}
    simulate: {enabled: false, epoch_seconds: 0.0, noise: 0.02}   # no training: see
              # study.trial.simulated
    seed: 0
    device: auto
    study:   {...}   # read by the study service (search, objectives); a trial ignores it

In a search-space file any value may instead be a search dimension, a mapping with one
of the keys ``choice``, ``uniform``, ``loguniform``, ``int`` (see :mod:`study.service.space`
and docs/study.md); a trial refuses those until ``--set`` fixes them.
Every error is a :class:`ConfigError` whose message names the field: ``train.lr: ...``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from study.data.names import AUGMENTATIONS, IMAGE_SIZES
from study.filters import FilterSpecError, parse
from study.layers.choices import APS_NORMS, DOWNSAMPLERS, PADDING_MODES
from study.layers.downsampling import FIELD_NAMES, Downsampling
from study.metrics.names import DEFAULT_MARGIN, DEFAULT_STEPS, FAMILIES, METHODS
from study.models.names import BUILTIN_MODELS

#: Receives each epoch's metrics row, then the final one (``done`` True): Tune's report.
Report = Callable[[dict[str, Any]], None]


SEARCH_KEYS = ("choice", "uniform", "loguniform", "int")
SCHEDULES = ("step", "cosine", "onecycle", "constant")
VAL_METHODS = ("sampled", "exact")
FIGURES = ("all", "essential", "none")
MAX_CROP_MARGIN = 512
MAX_SUBPIXEL_STEPS = 64


class ConfigError(ValueError):
    """A config value that is not allowed: ``"<field>: <problem; what is allowed>"``,
    always one line (control characters in names and values are escaped)."""

    def __init__(self, field: str, problem: str) -> None:
        field, problem = _one_line(field) or "''", _one_line(problem)
        super().__init__(f"{field}: {problem}")
        self.field = field


def _one_line(text: str) -> str:
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class ModelConfig:
    """The network (:func:`study.models.build`); ``filter`` is a canonical spec string.

    ``downsample`` (:class:`study.layers.Downsampling`): ``blur`` (blur-pool, the
    paper's), ``aps`` (adaptive polyphase sampling after the blur, Chaman & Dokmanic
    2021, picking each image's phase by ``aps_norm``: ``l2``, ``l1``, ``linf``),
    ``adaptive`` (a predicted ``adaptive_taps``-square low-pass per pixel and per one of
    ``adaptive_groups`` channel groups, Zou et al. 2020) or ``ideal`` (the ideal
    low-pass up to ``ideal_cutoff`` x Nyquist, default ``1/stride`` at each layer, the
    bin on the cutoff weighted by ``ideal_edge``: ``zero``, the reference's, or ``half``;
    Michaeli et al. 2023). Each operator's
    fields are read only with it; ``adaptive`` and ``ideal`` need ``filter: delta``.
    """

    name: str = "vgg13_bn"
    width: float = 1.0
    filter: str = "delta"
    padding: str = "circular"
    downsample: str = "blur"
    aps_norm: str = "l2"
    adaptive_taps: int = 3
    adaptive_groups: int = 2
    ideal_cutoff: float | None = None
    ideal_edge: str = "zero"

    def check(self, at: str) -> None:
        if self.name not in BUILTIN_MODELS:  # a network a user registered, or none
            from study.models import MODELS, available_models

            if self.name not in MODELS:
                _fail(f"{at}.name", repr(self.name), available_models())
        _range(f"{at}.width", self.width, 0, 16, low_open=True)
        if self.padding not in PADDING_MODES:
            _fail(f"{at}.padding", repr(self.padding), PADDING_MODES)
        if self.downsample not in DOWNSAMPLERS:
            _fail(f"{at}.downsample", repr(self.downsample), DOWNSAMPLERS)
        if self.aps_norm not in APS_NORMS:
            _fail(f"{at}.aps_norm", repr(self.aps_norm), APS_NORMS)
        try:
            self.operator()
            if self.downsample == "adaptive":  # do the groups divide every layer's channels?
                import torch

                from study.models import build

                with torch.device("meta"):
                    build(**self.build_args(10))
        except ValueError as error:
            name, _, problem = str(error).partition(": ")
            name = {"groups": "adaptive_groups"}.get(name, name)  # a layer's word for it
            raise ConfigError(f"{at}.{name}", problem) from None

    def operator(self) -> Downsampling:
        """The downsampling operator these fields describe."""
        return Downsampling.from_fields({name: getattr(self, name) for name in FIELD_NAMES})

    def build_args(self, num_classes: int) -> dict[str, Any]:
        """The arguments of :func:`study.models.build` for this network."""
        return {
            "name": self.name,
            "num_classes": num_classes,
            "width": self.width,
            "padding": self.padding,
            **{name: getattr(self, name) for name in FIELD_NAMES},
        }

    @property
    def downsampling(self) -> str:
        """The canonical string of the downsampling: the filter spec for ``blur``,
        ``aps(norm=l2, filter=binomial-3)`` for ``aps``, ``ideal(cutoff=0.5)``, ..."""
        return str(self.operator())


@dataclass(frozen=True)
class DataConfig:
    """``source``: ``shapes`` (built in, no download), ``cifar10``/``cifar100``
    (torchvision's download) or a dataset path (see :mod:`study.data.sources`);
    ``None`` counts mean the whole split.

    ``validation``: training images held out (stratified by class) and never trained
    on; per-epoch metrics and ``val_*`` objectives come from them. ``seed`` fixes the
    data: the validation hold-out, the subsets and the built-in images (the trial's own
    ``seed`` fixes weights, batch order and augmentation), so every trial of a study
    sees the same validation images.
    """

    source: str = "shapes"
    train_images: int | None = None
    test_images: int | None = None
    validation: int = 0
    seed: int = 0

    def check(self, at: str) -> None:
        for name in ("train_images", "test_images"):
            value = getattr(self, name)
            if value is not None:
                _range(f"{at}.{name}", value, 1, 10_000_000)
        _range(f"{at}.validation", self.validation, 0, 10_000_000)
        _range(f"{at}.seed", self.seed, 0, 2**63 - 1)


@dataclass(frozen=True)
class AugmentConfig:
    """Shift-based augmentation, applied on the trial's device: ``crop`` pads by
    ``padding`` (``mode`` zeros or circular) and crops at random; ``shift`` is a random
    circular shift of up to ``max_shift`` pixels each way."""

    kind: str = "none"
    padding: int = 4
    mode: str = "zeros"
    max_shift: int = 4

    def check(self, at: str) -> None:
        if self.kind not in AUGMENTATIONS:
            _fail(f"{at}.kind", repr(self.kind), AUGMENTATIONS)
        if self.mode not in ("zeros", "circular"):
            _fail(f"{at}.mode", repr(self.mode), ("zeros", "circular"))
        _range(f"{at}.padding", self.padding, 0, 64)
        _range(f"{at}.max_shift", self.max_shift, 0, 64)


@dataclass(frozen=True)
class TrainConfig:
    """SGD with momentum; the paper's CIFAR schedule is 100 + 50 + 50 epochs at
    0.1, 0.01, 0.001 (Section 4.1). ``filter_lr``: learning rate of learnable filter
    taps (default: ``lr``), which get no weight decay."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "step"
    milestones: tuple[int, ...] = (100, 150)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    filter_lr: float | None = None
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    def check(self, at: str) -> None:
        _range(f"{at}.epochs", self.epochs, 1, 100_000)
        _range(f"{at}.batch_size", self.batch_size, 1, 65_536)
        _range(f"{at}.lr", self.lr, 0, 100, low_open=True)
        _range(f"{at}.momentum", self.momentum, 0, 1, high_open=True)
        _range(f"{at}.weight_decay", self.weight_decay, 0, 1)
        _range(f"{at}.gamma", self.gamma, 0, 1, low_open=True)
        _range(f"{at}.label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        if self.filter_lr is not None:
            _range(f"{at}.filter_lr", self.filter_lr, 0, 100)
        if self.schedule not in SCHEDULES:
            _fail(f"{at}.schedule", repr(self.schedule), SCHEDULES)
        if list(self.milestones) != sorted(set(self.milestones)) or any(
            m < 1 for m in self.milestones
        ):
            raise ConfigError(
                f"{at}.milestones", f"{list(self.milestones)} must be increasing epochs >= 1"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation. Once, at the end of the trial: all-shift metrics on the first
    ``images`` test images (``0``: all) and Fig. 4's maps on ``feature_images`` of them
    (0 skips them). After every epoch, on the validation split (``data.validation``):
    accuracy and consistency on up to ``val_images`` images (``0``: all), the consistency
    ``sampled`` (one random pair of circular shifts per image, within
    ``consistency_max_shift``) or ``exact`` (all shifts, like the test set's).
    ``figures``: ``all`` of them, ``essential`` (training curves, the accuracy by
    shift and by crop and sub-pixel offset; about 0.5 s instead of 1.7 s of CPU) or
    ``none``. ``log_model``: the study service logs the trained network as an MLflow
    model (``mlflow.pytorch``).

    ``families``: the shift families the test set is also scored under
    (:mod:`study.metrics.families`: ``circular``, ``crop``, ``subpixel``), each exact
    over its grid: ``crop`` zero-fill shifts of up to ``crop_margin`` pixels each way
    (at most half the image), ``subpixel`` band-limited shifts in steps of ``1 /
    subpixel_steps`` pixel."""

    images: int = 1000
    method: str = "auto"
    consistency_max_shift: int = 16
    feature_images: int = 8
    feature_shifts: int | None = None
    val_images: int = 0
    val_method: str = "sampled"
    figures: str = "all"
    log_model: bool = True
    families: tuple[str, ...] = FAMILIES
    crop_margin: int = DEFAULT_MARGIN
    subpixel_steps: int = DEFAULT_STEPS

    def check(self, at: str) -> None:
        for family in self.families:
            if family not in FAMILIES:
                _fail(f"{at}.families", repr(family), FAMILIES)
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"{at}.families", f"{list(self.families)} names a family twice")
        _range(f"{at}.crop_margin", self.crop_margin, 0, MAX_CROP_MARGIN)
        _range(f"{at}.subpixel_steps", self.subpixel_steps, 1, MAX_SUBPIXEL_STEPS)
        _range(f"{at}.images", self.images, 0, 10_000_000)
        _range(f"{at}.val_images", self.val_images, 0, 10_000_000)
        if self.method not in METHODS:
            _fail(f"{at}.method", repr(self.method), METHODS)
        if self.val_method not in VAL_METHODS:
            _fail(f"{at}.val_method", repr(self.val_method), VAL_METHODS)
        if self.figures not in FIGURES:
            _fail(f"{at}.figures", repr(self.figures), FIGURES)
        _range(f"{at}.consistency_max_shift", self.consistency_max_shift, 0, 512)
        if self.feature_images == 1:
            raise ConfigError(f"{at}.feature_images", "1 is not allowed; use 0 (skip) or >= 2")
        _range(f"{at}.feature_images", self.feature_images, 0, 4096)
        if self.feature_shifts is not None:
            _range(f"{at}.feature_shifts", self.feature_shifts, 1, 512)


@dataclass(frozen=True)
class SimulateConfig:
    """A simulated trial (:mod:`study.trial.simulated`), for measuring the service and
    benchmarking samplers: with ``enabled``, nothing is trained or evaluated; the
    metrics are closed-form functions of the configuration, each epoch sleeps
    ``epoch_seconds``, and the per-epoch validation noise starts at ``noise``."""

    enabled: bool = False
    epoch_seconds: float = 0.0
    noise: float = 0.02

    def check(self, at: str) -> None:
        _range(f"{at}.epoch_seconds", self.epoch_seconds, 0, 86_400)
        _range(f"{at}.noise", self.noise, 0, 1)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; build it with :func:`load_config` or
    :func:`from_mapping`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    seed: int = 0
    device: str = "auto"

    def check(self, at: str = "") -> None:
        _range("seed", self.seed, 0, 2**63 - 1)
        size = IMAGE_SIZES.get(self.data.source)
        if size is not None:
            check_crop_margin(self.eval.crop_margin, (size, size))
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError("device", f"{self.device!r}; allowed: auto, cpu, cuda, cuda:N")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples): YAML/JSON-ready and round-trippable."""
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 0.1, ...}``: one level, as MLflow params."""
        out = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out


def check_crop_margin(margin: int, size: Sequence[int]) -> None:
    """``eval.crop_margin`` against the images' ``(H, W)``: at most half the smaller side."""
    if margin > min(size) // 2:
        raise ConfigError(
            "eval.crop_margin",
            f"{margin} is over half the {size[0]}x{size[1]} images; allowed: 0 to {min(size) // 2}",
        )


def from_mapping(raw: Mapping[str, Any] | None) -> TrialConfig:
    """Validate a nested mapping into a :class:`TrialConfig` (unknown keys, types,
    ranges, filter specs, fixed search dimensions)."""
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError("config", f"expected a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw or {})
    study = raw.pop("study", None)
    if study is not None and not isinstance(study, Mapping):
        raise ConfigError("study", f"expected a mapping, got {type(study).__name__}")
    return _build(TrialConfig, raw, "")


def _build(cls: type, raw: Any, at: str):
    if not isinstance(raw, Mapping):
        raise ConfigError(at or "config", f"expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        name = f"{at}.{key}" if at else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(name, f"unknown key{hint}; allowed: {', '.join(fields)}")
        _no_search(value, name)
        values[key] = _convert(hints[key], value, name)
    config = cls(**values)
    config.check(at)
    return config


def _no_search(value: Any, at: str) -> None:
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in SEARCH_KEYS:
        raise ConfigError(
            at,
            f"is a search dimension ({next(iter(value))}); a trial needs a fixed value, "
            f"e.g. --set {at}=...",
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_search(item, f"{at}.{key}")


def _convert(hint: Any, value: Any, at: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, at)
    if at.endswith("model.filter") or at == "filter":
        try:
            return str(parse(value))
        except FilterSpecError as error:
            inner = error.under(at)
            raise ConfigError(inner.field, inner.problem) from None
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item_hint = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            kind = "whole numbers" if item_hint is int else "names"
            raise ConfigError(at, f"expected a list of {kind}, got {value!r}")
        return tuple(_convert(item_hint, item, f"{at}[{i}]") for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(at, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(at, f"expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(at, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(at, f"expected text, got {value!r}")
        return value
    raise TypeError(f"{at}: no conversion for {hint}")  # a schema bug, not user input


def _range(at: str, value: float, low: float, high: float, low_open=False, high_open=False) -> None:
    if not math.isfinite(value):
        raise ConfigError(at, f"{value} is not a finite number")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(at, f"{value} is outside {left}{low}, {high}{right}")


def _fail(at: str, value: str, allowed: Sequence[str]) -> typing.NoReturn:
    raise ConfigError(at, f"{value} is not allowed; allowed: {', '.join(allowed)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

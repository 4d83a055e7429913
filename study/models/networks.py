"""The paper's networks for 32x32 images, with their downsampling chosen by filter spec.

Every network is registered by name (:data:`MODELS`) and built by :func:`build`.
``filter="delta"`` builds the plain network, the paper's baseline; any other spec puts
a blur before every subsampling, where the paper does (Section 3.2, Appendix A):

* ``vgg13_bn`` (Section 4.1): blocks of 2 conv-BN-ReLU then MaxPool, 64-128-256-512-512
  channels until 1x1, linear head. Pools become MaxBlurPool (eq. 3).
* ``densenet40_12`` (Appendix A; andreasveit/densenet-pytorch, no bottleneck, no
  compression): its transitions' 2x2 AvgPool *is* a rect-2 blur, so the filter replaces
  it (``rect-2`` builds exactly the baseline).
* ``resnet20``, ``resnet18`` (He et al.'s CIFAR ResNets, 1x1-conv shortcuts): each
  strided 3x3 conv runs at stride 1 and is followed by a blur-pool after its ReLU, and
  each shortcut blur-pools before its 1x1 conv (as antialiased-cnns and timm do).

``width`` scales every channel count (at least 1), so tests and CPU studies run small
versions of the same networks; ``padding`` is the padding mode of every convolution and
blur (``circular`` is the paper's testbed, Section 4.1).

``downsample="aps"`` swaps every subsampling for adaptive polyphase sampling
(:mod:`study.layers.aps`; Chaman & Dokmanic, CVPR 2021), blurred first with ``filter``
(``delta``: plain APS), choosing by ``aps_norm``: VGG's pools become MaxAPSPool
(dense max-pool, blur, APS), DenseNet's transitions blur (the filter replaces the 2x2
box, as with ``blur``: ``rect-2`` keeps it) then APS, and ResNet's strided convs run at
stride 1 followed by blur + APS, the shortcut's APS following the main branch's phases
(so both branches subsample the same grid). With circular padding the network's output
is then the same at every circular shift of the input.

>>> model = build("vgg13_bn", width=0.125, filter="binomial-5")
>>> model(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from study.filters import FilterSpec
from study.layers import (
    APS_NORMS,
    PADDING_MODES,
    APSPool2d,
    Downsampling,
    Padding,
    check_choice,
)
from study.layers.choices import FilterLike

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a constructor ``fn(num_classes, width, filter, padding, downsample,
    aps_norm) -> nn.Module``."""

    def add(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = constructor
        return constructor

    return add


def available_models() -> list[str]:
    """The registered network names."""
    return sorted(MODELS)


def build(
    name: str,
    num_classes: int = 10,
    width: float = 1.0,
    filter: FilterLike = "delta",
    padding: Padding = "circular",
    downsample: str = "blur",
    aps_norm: str = "l2",
    adaptive_taps: int = 3,
    adaptive_groups: int = 2,
    ideal_cutoff: float | None = None,
    ideal_edge: str = "zero",
) -> nn.Module:
    """Build a registered network; bad arguments raise a one-line ``ValueError``.

    ``downsample`` (:class:`~study.layers.Downsampling`): ``blur`` (blur-pool, the
    paper's), ``aps`` (adaptive polyphase sampling after the blur, choosing the phase
    by ``aps_norm``: ``l2``, ``l1``, ``linf``), ``adaptive`` (a predicted
    ``adaptive_taps``-square low-pass per pixel and per one of ``adaptive_groups``
    channel groups; ``filter`` must be ``delta``) or ``ideal`` (the ideal low-pass up to
    ``ideal_cutoff`` x Nyquist, default ``1/stride``, the bin on the cutoff weighted by
    ``ideal_edge``; ``filter`` must be ``delta``). The model's ``spec``
    attribute is the parsed filter spec, ``downsampling`` the canonical string of the
    whole choice (``aps(norm=l2, filter=binomial-3)``), and ``build_args`` the arguments
    that rebuild it (what a checkpoint stores, see :mod:`study.trial.checkpoint`; the
    operator's own arguments only for the operator that reads them).
    """
    if name not in MODELS:
        raise ValueError(
            f"model: unknown network {name!r}; allowed: {', '.join(available_models())}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a whole number >= 1, got {num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= 16:
        raise ValueError(f"width: expected a number in (0, 16], got {width!r}")
    check_choice("padding", padding, PADDING_MODES)
    check_choice("aps_norm", aps_norm, APS_NORMS)
    operator = Downsampling(
        downsample, filter, aps_norm, adaptive_taps, adaptive_groups, ideal_cutoff, ideal_edge
    )
    spec = operator.spec
    down = _Down(operator, padding)
    model = MODELS[name](
        num_classes=num_classes, width=float(width), filter=spec, padding=padding, down=down
    )
    _init_weights(model)
    model.spec = spec
    model.downsampling = str(operator)
    model.build_args = {
        "name": name,
        "num_classes": num_classes,
        "width": float(width),
        "filter": str(spec),
        "padding": padding,
    }
    if operator.kind != "blur":
        model.build_args.update(operator.params())
    return model


class _Down:
    """How a network subsamples: its :class:`~study.layers.Downsampling` and padding."""

    def __init__(self, operator: Downsampling, padding: Padding) -> None:
        self.operator, self.padding = operator, padding

    @classmethod
    def blur(cls, spec: FilterSpec, padding: Padding) -> _Down:
        return cls(Downsampling("blur", spec), padding)

    @property
    def plain(self) -> bool:
        """Plain strided layers: blur-pool with the ``delta`` filter."""
        return self.operator.plain

    def pool(self, channels: int, stride: int) -> nn.Module:
        return self.operator.pool(channels, stride, self.padding)

    def max_pool(self, channels: int) -> nn.Module:
        return self.operator.dense_pool("max", channels, 2, 2, self.padding)


def _channels(base: int, width: float) -> int:
    return max(1, round(base * width))


def _conv(
    c_in: int, c_out: int, kernel: int, padding: Padding, stride: int = 1, bias: bool = False
) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=bias, padding_mode=padding)


# --- VGG ---------------------------------------------------------------------------------

_VGG = {
    "vgg11_bn": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13_bn": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16_bn": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
}


class VGG(nn.Module):
    """VGG with batch norm for 32x32 inputs (torchvision's layer layout, CIFAR head)."""

    def __init__(
        self,
        config,
        num_classes: int,
        width: float,
        filter: FilterSpec,
        padding: Padding,
        down: _Down | None = None,
    ) -> None:
        super().__init__()
        down = down or _Down.blur(filter, padding)
        layers: list[nn.Module] = []
        c_in = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2) if down.plain else down.max_pool(c_in))
                continue
            c_out = _channels(item, width)
            layers += [
                _conv(c_in, c_out, 3, padding, bias=True),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # 1x1 already at 32 px; lets other sizes through
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


for _name, _config in _VGG.items():
    register_model(_name)(lambda config=_config, **kw: VGG(config, **kw))


# --- DenseNet-40-12 -----------------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, padding: Padding) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = _conv(c_in, growth, 3, padding)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(self.relu(self.bn(x)))], 1)


class _Transition(nn.Module):
    def __init__(self, channels: int, padding: Padding, down: _Down) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = _conv(channels, channels, 1, padding)
        self.pool = nn.AvgPool2d(2, 2) if down.plain else down.pool(channels, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class DenseNet(nn.Module):
    """DenseNet for 32x32 inputs: 3 dense blocks of basic layers, no compression."""

    def __init__(
        self,
        depth: int,
        growth: int,
        num_classes: int,
        width: float,
        filter: FilterSpec,
        padding: Padding,
        down: _Down | None = None,
    ) -> None:
        super().__init__()
        down = down or _Down.blur(filter, padding)
        growth = _channels(growth, width)
        per_block = (depth - 4) // 3
        channels = 2 * growth
        self.stem = _conv(3, channels, 3, padding)
        blocks: list[nn.Module] = []
        for index in range(3):
            for _ in range(per_block):
                blocks.append(_DenseLayer(channels, growth, padding))
                channels += growth
            if index < 2:
                blocks.append(_Transition(channels, padding, down))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.head(self.blocks(self.stem(x))), 1))


@register_model("densenet40_12")
def densenet40_12(**kwargs) -> nn.Module:
    return DenseNet(40, 12, **kwargs)


# --- CIFAR ResNets ------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut; with a filter, stride s becomes blur-pool s after the
    first ReLU, and blur-pool s before the shortcut's 1x1 conv (with APS, the shortcut's
    APS follows the phases of the main branch's)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        filter: FilterSpec,
        padding: Padding,
        down: _Down | None = None,
    ) -> None:
        super().__init__()
        down = down or _Down.blur(filter, padding)
        blurred = stride > 1 and not down.plain
        conv_stride = 1 if blurred else stride
        self.conv1 = _conv(c_in, c_out, 3, padding, conv_stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = nn.ReLU(inplace=True)
        self.aa = down.pool(c_out, stride) if blurred else nn.Identity()
        self.conv2 = _conv(c_out, c_out, 3, padding)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            short_aa = down.pool(c_in, stride) if blurred else nn.Identity()
            if isinstance(short_aa, APSPool2d):
                short_aa.follow(self.aa)
            self.shortcut = nn.Sequential(
                short_aa,
                _conv(c_in, c_out, 1, padding, conv_stride),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.aa(self.act1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR ResNet: 3x3 stem at full resolution, stages of basic blocks."""

    def __init__(
        self,
        stages,
        blocks: int,
        num_classes: int,
        width: float,
        filter: FilterSpec,
        padding: Padding,
        down: _Down | None = None,
    ) -> None:
        super().__init__()
        c_in = _channels(stages[0], width)
        self.stem = nn.Sequential(
            _conv(3, c_in, 3, padding), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        for index, base in enumerate(stages):
            c_out = _channels(base, width)
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(c_in, c_out, stride, filter, padding, down))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@register_model("resnet20")
def resnet20(**kwargs) -> nn.Module:
    return ResNet((16, 32, 64), 3, **kwargs)


@register_model("resnet18")
def resnet18(**kwargs) -> nn.Module:
    return ResNet((64, 128, 256, 512), 2, **kwargs)


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)

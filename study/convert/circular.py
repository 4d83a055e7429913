"""Circular padding everywhere: the paper's testbed (Section 4.1)."""

from __future__ import annotations

from torch import nn

from study.convert.report import Change, ConversionReport, announce, short
from study.convert.tree import padding_of, set_submodule
from study.layers import BLUR_TYPES, CircularAvgPool2d, CircularMaxPool2d


def circular(model: nn.Module, *, log: bool = True) -> nn.Module:
    """Switch every convolution, blur, pool and pad of ``model`` to circular padding, in
    place (Section 4.1: kernels wrap around the edge, so circular shifts commute with
    every layer but subsampling). Returns the model."""
    report = ConversionReport()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and module.padding_mode != "circular":
            before = short(module)
            module.padding_mode = "circular"
            report.replaced.append(Change(name, before, short(module)))
        elif isinstance(module, BLUR_TYPES) and module.padding != "circular":
            before = short(module)
            module.padding = "circular"
            report.replaced.append(Change(name, before, short(module)))
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and padding_of(module) != (0, 0):
            if isinstance(module, CircularMaxPool2d | CircularAvgPool2d):
                continue
            wrapped = _circular_pool(module)
            set_submodule(model, name, wrapped)
            report.replaced.append(Change(name, short(module), type(wrapped).__name__))
        elif isinstance(
            module, nn.ZeroPad2d | nn.ConstantPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d
        ):
            set_submodule(model, name, nn.CircularPad2d(module.padding))
            report.replaced.append(Change(name, short(module), "CircularPad2d"))
    announce(report, "circular", log)
    return model


def _circular_pool(pool: nn.MaxPool2d | nn.AvgPool2d) -> nn.Module:
    """The same pool, padding circularly."""
    if isinstance(pool, nn.MaxPool2d):
        return CircularMaxPool2d(
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,
            pool.return_indices,
            pool.ceil_mode,
        )
    return CircularAvgPool2d(
        pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, True, pool.divisor_override
    )

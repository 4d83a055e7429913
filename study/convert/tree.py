"""The model's module tree: find the downsampling layers, swap a module, keep devices."""

from __future__ import annotations

from torch import nn

from study.layers import BLUR_TYPES
from study.layers.geometry import pair


def moved(new: nn.Module, old: nn.Module, model: nn.Module) -> nn.Module:
    """``new`` on the device (and floating dtype) of ``old``'s tensors, else of the
    model's first tensor."""
    for source in (old, model):
        tensor = next(iter((*source.parameters(), *source.buffers())), None)
        if tensor is not None:
            if tensor.is_floating_point():
                return new.to(device=tensor.device, dtype=tensor.dtype)
            return new.to(tensor.device)
    return new


def is_downsampling(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, *BLUR_TYPES)):
        stride = module.stride if module.stride is not None else module.kernel_size
        return pair(stride) != (1, 1)
    return False


def all_circular(model: nn.Module) -> bool:
    padded = [m for m in model.modules() if isinstance(m, nn.Conv2d) and padding_of(m) != (0, 0)]
    return bool(padded) and all(m.padding_mode == "circular" for m in padded)


def padding_of(module: nn.Module) -> tuple[int, int]:
    padding = module.padding
    if isinstance(padding, str):
        return (0, 0) if padding == "valid" else (-1, -1)
    return pair(padding)


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)

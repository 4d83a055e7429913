"""Packages whose members are imported on first use (PEP 562): a reader that needs one
light module of a package (what metrics are called, what a config may name) does not
import torch, Ray or MLflow because the package's ``__init__`` would.

    # in a package's __init__.py
    __getattr__, __all__ = lazy_members(__name__, {"to_float": "study.data.normalize"})

>>> getattr_, names = lazy_members("study.data", {"BUILTIN": "study.data.names"})
>>> getattr_("BUILTIN"), names
('shapes', ['BUILTIN'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_members(
    package: str, members: Mapping[str, str]
) -> tuple[Callable[[str], Any], list[str]]:
    """The package's ``__getattr__`` (``members``: name -> module that defines it) and
    its ``__all__``."""

    def __getattr__(name: str) -> Any:
        if name in members:
            return getattr(importlib.import_module(members[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(members)

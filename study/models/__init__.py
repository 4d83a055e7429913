"""The paper's networks, registered by name and built by :func:`build`
(:mod:`study.models.networks`); :data:`~study.models.names.BUILTIN_MODELS` names them
without importing torch. Every other name (``build``, ``MODELS``, ``register_model``,
``available_models``, the network classes) is imported from ``networks`` on first use.
"""

from __future__ import annotations

from typing import Any

from study.models.names import BUILTIN_MODELS

__all__ = ["BUILTIN_MODELS", "MODELS", "available_models", "build", "register_model"]


def __getattr__(name: str) -> Any:
    """``study.models.<name>`` from :mod:`study.models.networks` (models pickled before
    the package was split name their classes here, and load through this)."""
    if name.startswith("__"):
        raise AttributeError(f"module 'study.models' has no attribute {name!r}")
    import importlib

    networks = importlib.import_module("study.models.networks")
    try:
        return getattr(networks, name)
    except AttributeError:
        raise AttributeError(f"module 'study.models' has no attribute {name!r}") from None

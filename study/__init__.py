"""Distributed hyperparameter studies for anti-aliased CNNs.

The package reads in the order data flows (docs/ARCHITECTURE.md is the map):

- the science: :mod:`study.filters` (low-pass designs) -> :mod:`study.layers`
  (blur-downsample layers) -> :mod:`study.convert` (model surgery) and
  :mod:`study.models` (the paper's networks) -> :mod:`study.data` (datasets,
  on-device augmentation) -> :mod:`study.metrics` (shift invariance, Section 4.2);
- :mod:`study.trial`: one configuration trained and evaluated, no Ray needed;
- :mod:`study.mlflow_layout` (the MLflow layout every reader and writer shares) and
  :mod:`study.pareto`: fronts, read back from MLflow, exported, and written to the
  parent run;
- :mod:`study.service`: search spaces, Ray Tune + Optuna + MLflow;
- :mod:`study.cli`: the ``study`` command on top, and :mod:`study.api` for Python:
  ``study.run(...)``, ``study.load(name)``, ``study.studies()``.
"""

from typing import Any

__version__ = "0.1.0"
_API = ("Study", "load", "run", "studies")


def __getattr__(name: str) -> Any:
    """``study.run``, ``study.load``, ``study.studies``, ``study.Study`` from
    :mod:`study.api`, imported on first use (``import study`` stays light)."""
    if name in _API:
        from study import api

        return getattr(api, name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")

"""Distributed hyperparameter studies for anti-aliased CNNs.

The package reads in the order data flows:

- the science: :mod:`study.filters` (low-pass designs) -> :mod:`study.layers`
  (blur-downsample layers) -> :mod:`study.convert` (model surgery) and
  :mod:`study.models` (the paper's networks) -> :mod:`study.data` (datasets,
  on-device augmentation) -> :mod:`study.metrics` (shift invariance, Section 4.2);
- :mod:`study.trial`: one configuration trained and evaluated, no Ray needed;
- :mod:`study.service`: search spaces, Ray Tune + Optuna + MLflow;
- :mod:`study.pareto`: fronts read back from MLflow and exported;
- :mod:`study.cli`: the ``study`` command on top.
"""

__version__ = "0.1.0"

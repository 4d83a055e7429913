"""Distributed hyperparameter studies for anti-aliased CNNs.

The package reads in the order data flows: :mod:`study.filters` (low-pass designs) ->
:mod:`study.layers` (blur-downsample layers) -> :mod:`study.convert` (model surgery) and
:mod:`study.models` (the paper's networks) -> later: data, training, metrics, trials,
study orchestration, tracking and Pareto export.
"""

__version__ = "0.1.0"

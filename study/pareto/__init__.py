"""Pareto fronts of studies (the paper's Fig. 5 and Table 1), read back from MLflow.

:mod:`study.pareto.front` (non-dominated sorting, hypervolume; pure numpy) ->
:mod:`study.pareto.store` (complete trials from MLflow; the parent run's live front) ->
:mod:`study.pareto.export` (csv, json, png, svg, html, md) ->
:mod:`study.pareto.command` (``study pareto``). Nothing heavy is imported here.
"""

"""Pareto fronts of studies (the paper's Fig. 5 and Table 1), read back from MLflow.

:mod:`study.pareto.front` (non-dominated sorting, hypervolume; pure numpy) ->
:mod:`study.pareto.records` (a study's complete trials as records) ->
:mod:`study.pareto.export` (csv, json, png, svg, html, md) ->
:mod:`study.pareto.store` (complete trials from MLflow; the parent run's live front) ->
:mod:`study.pareto.command` (``study pareto``). Each module imports only modules before
it. Nothing heavy is imported here.
"""

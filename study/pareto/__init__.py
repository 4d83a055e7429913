"""Pareto fronts of studies (the paper's Fig. 5 and Table 1), read back from MLflow.

:mod:`study.pareto.front` (non-dominated sorting, hypervolume; moocore) ->
:mod:`study.pareto.records` (a study's complete trials as records) ->
:mod:`study.pareto.encoding` (the plots' colours, markers, labels) ->
:mod:`study.pareto.tables` (csv, json, md) and :mod:`study.pareto.plots` (png, svg,
html), written by name through :mod:`study.pareto.export` ->
:mod:`study.pareto.store` (complete trials from MLflow; the parent run's live front) ->
:mod:`study.pareto.command` (``study pareto``). Nothing heavy is imported here.
"""

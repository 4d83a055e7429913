"""One trial: a validated config (:mod:`~study.trial.config`) trained and evaluated by
:func:`run_trial` (:mod:`~study.trial.run`), checkpointed every epoch
(:mod:`~study.trial.checkpoint`), and re-evaluated from a checkpoint by ``study report``
(:mod:`~study.trial.report`). Nothing here needs Ray: a trial runs alone as well as
inside a study.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CHECKPOINT": "study.trial.run",
    "FINAL_METRICS": "study.trial.run",
    "ConfigError": "study.trial.config",
    "TrialConfig": "study.trial.config",
    "TrialFailed": "study.trial.run",
    "load_config": "study.trial.documents",
    "resolve_device": "study.trial.run",
    "run_trial": "study.trial.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The names above, imported on first use: a config is read and validated
    (:mod:`~study.trial.config`) without importing torch."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'study.trial' has no attribute {name!r}")

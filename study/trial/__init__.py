"""One trial: a validated config (:mod:`~study.trial.config`) trained and evaluated by
:func:`run_trial` (:mod:`~study.trial.run`), checkpointed every epoch
(:mod:`~study.trial.checkpoint`), and re-evaluated from a checkpoint by ``study report``
(:mod:`~study.trial.report`). Nothing here needs Ray: a trial runs alone as well as
inside a study.
"""

from __future__ import annotations

from study.lazy import lazy_members

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

__getattr__, __all__ = lazy_members(__name__, _EXPORTS)

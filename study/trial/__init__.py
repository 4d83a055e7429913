"""One trial: a validated config (:mod:`~study.trial.config`) trained and evaluated by
:func:`run_trial` (:mod:`~study.trial.run`), checkpointed every epoch
(:mod:`~study.trial.checkpoint`), and re-evaluated from a checkpoint by ``study report``
(:mod:`~study.trial.report`). Nothing here needs Ray: a trial runs alone as well as
inside a study.
"""

from study.trial.config import ConfigError, TrialConfig
from study.trial.documents import load_config
from study.trial.run import CHECKPOINT, FINAL_METRICS, TrialFailed, resolve_device, run_trial

__all__ = [
    "CHECKPOINT",
    "FINAL_METRICS",
    "ConfigError",
    "TrialConfig",
    "TrialFailed",
    "load_config",
    "resolve_device",
    "run_trial",
]

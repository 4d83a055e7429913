"""A study's terminal: the service's own lines and its progress bar, not Ray's, Tune's
and Optuna's bookkeeping. Each upstream message silenced here is one the service has
made irrelevant, named with the reason (docs/study.md lists them); every other warning
still shows, and ``study --verbose`` silences nothing.
"""

from __future__ import annotations

import logging

import optuna

#: Upstream log records the service has made irrelevant: (logger, start of the
#: message, why it is irrelevant).
IRRELEVANT: tuple[tuple[str, str, str], ...] = (
    (
        "ray.tune.analysis.experiment_analysis",
        "Failed to fetch metrics for",
        "Tune's per-trial result files are off unless asked for (STUDY_TUNE_RESULT_FILES): "
        "MLflow holds every metric, and the study reads them there; Tune's ResultGrid "
        "still looks for the files and prints one error line per trial",
    ),
    (
        "ray.tune.search.optuna.optuna_search",
        "`Study.stop` is supposed to be invoked",
        "the grid sampler stops the Optuna study when its grid is used up, which Optuna "
        "only allows inside optimize(); the trial is recorded before that (Optuna's tell "
        "sets its state in a finally block)",
    ),
    (
        "ray._private.authentication.authentication_token_setup",
        "Token authentication is enabled",
        "a private local Ray instance the service starts: its token never leaves the "
        "machine; a cluster's nodes say it where they are started",
    ),
)
#: Loggers whose INFO lines restate what the service says itself: Ray's instance start,
#: Tune's experiment-state writes. (Optuna's study creation and loading: through
#: ``optuna.logging.set_verbosity``, since Optuna resets its logger's level to INFO the
#: first time it configures it.)
INFO_ONLY = ("ray", "ray.tune", "ray.train")


class _DropIrrelevant(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_upstream() -> None:
    """Silence, for this process, what :data:`IRRELEVANT` and :data:`INFO_ONLY` name,
    Optuna's INFO lines, and Tune's own terminal output (its configuration box names
    internals such as ``SearchGenerator``; the service prints its own lines: the command
    sets ``RAY_AIR_NEW_OUTPUT=0``, Tune's old reporter, silent at ``verbose=0``). Idempotent."""
    for name, start, _why in IRRELEVANT:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropIrrelevant) and f.start == start for f in logger.filters):
            logger.addFilter(_DropIrrelevant(start))
    for name in INFO_ONLY:
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

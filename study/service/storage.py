"""An Optuna RDB storage that never writes its password down and waits out outages.

Ray Tune pickles the searcher, and with it the Optuna storage, into every experiment
snapshot (``searcher-state-*.pkl`` in the results folder). Optuna's ``RDBStorage``
pickles its URL as given, password included; :class:`RedactingRDBStorage` pickles the
redacted URL and, when unpickled (``study resume``), takes the password back from the
environment (:func:`study.secrets.reveal`).

A database restart or failover mid-study (PostgreSQL going away for a minute) must not
end the study: every storage call that finds the database unreachable is tried again,
every 5 s, for up to ``$STUDY_STORAGE_PATIENCE_S`` seconds (default 1800), with one
line printed when the outage starts and one when it ends. Connections are checked
before use (SQLAlchemy's ``pool_pre_ping``), so those a restart broke are replaced
instead of failing the first call after it. Calls that the database answers with an
error (a constraint, a bad value) fail at once, as before.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages._cached_storage import _CachedStorage  # what create_study wraps RDB in

from study.secrets import redact, reveal
from study.settings import seconds_setting

#: Storage calls that wait out an outage: every call of Optuna's storage API that
#: touches the database, and the private ones Optuna's ``_CachedStorage`` makes.
_PUBLIC = [
    name
    for name in vars(optuna.storages.BaseStorage)
    if not name.startswith("_") and name not in ("check_trial_is_updatable", "remove_session")
]
PATIENT_CALLS = (
    *_PUBLIC,
    "record_heartbeat",
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
)
_calls = threading.local()  # how deep in patient calls this thread is: the outermost waits


def storage_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database is away (refused or lost connection), not
    that it refused a statement. Optuna wraps SQLAlchemy's errors in
    ``StorageInternalError``; the cause tells."""
    from sqlalchemy import exc

    cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) else error
    if isinstance(cause, exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError)


def _patient(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def waiting(self: RedactingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = None
        while True:
            _calls.depth = getattr(_calls, "depth", 0) + 1
            try:
                result = call(self, *args, **kwargs)
            except Exception as error:
                if _calls.depth > 1 or not storage_unreachable(error):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.patience
                    if not self.outage_reported:
                        print(
                            f"Optuna storage {redact(self.url)} unreachable"
                            f" ({type(error.__cause__ or error).__name__}): waiting up to"
                            f" {self.patience:.0f} s for it",
                            flush=True,
                        )
                        self.outage_reported = True
                if now > deadline:
                    raise
                time.sleep(min(5.0, max(self.patience / 10, 0.1)))
                continue
            finally:
                _calls.depth -= 1
            if self.outage_reported:
                print(f"Optuna storage {redact(self.url)} reachable again", flush=True)
                self.outage_reported = False
            return result

    return waiting


class RedactingRDBStorage(optuna.storages.RDBStorage):
    """``optuna.storages.RDBStorage`` whose pickled state holds the redacted URL, and
    whose calls wait up to ``patience`` seconds for an unreachable database."""

    def __init__(self, url: str, patience: float | None = None) -> None:
        super().__init__(url, engine_kwargs={"pool_pre_ping": True})
        self.patience = _patience(patience)
        self.outage_reported = False

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "url": redact(self.url)}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "url": reveal(state["url"], "study.optuna_storage")})
        self.patience = _patience(None)  # this run's setting, not the pickled one
        self.outage_reported = False


def _patience(given: float | None) -> float:
    return seconds_setting("STUDY_STORAGE_PATIENCE_S") if given is None else given


for _name in PATIENT_CALLS:
    setattr(RedactingRDBStorage, _name, _patient(getattr(optuna.storages.RDBStorage, _name)))


class SnapshotCache(_CachedStorage):
    """Optuna's cache of an RDB storage (what ``optuna.create_study`` wraps one in),
    pickled without the trials it holds.

    Tune pickles the searcher, and with it the study's storage, at every experiment
    snapshot; Optuna's ``_CachedStorage`` pickled every trial it had read, so each
    snapshot grew with the study (docs/SCALE.md). Optuna's ``JournalStorage`` drops its
    cache when pickled; so does this one (keeping each study's name, directions and
    distributions): unpickled, it reads the trials back from the database on first use.
    """

    def __getstate__(self) -> dict[Any, Any]:
        with self._lock:
            state = super().__getstate__()
            studies = {}
            for study_id, info in self._studies.items():
                lean = copy.copy(info)
                lean.trials, lean.unfinished_trial_ids = {}, set()
                lean.last_finished_trial_id = -1  # read every trial again
                studies[study_id] = lean
        return {
            **state,
            "_studies": studies,
            "_trial_id_to_study_id_and_number": {},
            "_study_id_and_number_to_trial_id": {},
        }


def cached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` as a study uses it: an RDB storage behind a :class:`SnapshotCache`
    (where Optuna would put its own cache), any other as it is."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return SnapshotCache(storage)
    return storage

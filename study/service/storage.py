"""An Optuna RDB storage that never writes its password down.

Ray Tune pickles the searcher, and with it the Optuna storage, into every experiment
snapshot (``searcher-state-*.pkl`` in the results folder). Optuna's ``RDBStorage``
pickles its URL as given, password included; :class:`RedactingRDBStorage` pickles the
redacted URL and, when unpickled (``study resume``), takes the password back from the
environment (:func:`study.service.secrets.reveal`).
"""

from __future__ import annotations

from typing import Any

import optuna

from study.service.secrets import redact, reveal


class RedactingRDBStorage(optuna.storages.RDBStorage):
    """``optuna.storages.RDBStorage`` whose pickled state holds the redacted URL."""

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "url": redact(self.url)}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "url": reveal(state["url"], "study.optuna_storage")})

"""The parent run's live Pareto front, refreshed off Tune's event loop.

Recomputing the front reads every complete child run from MLflow, renders a figure and
uploads three artifacts (:func:`study.pareto.store.update_parent_front`): a fraction of
a second for a small study, and work that grows with the study. Done after every
finished trial inside Tune's callback, it held up the scheduling of the next trials
(2.2 s of an 8-trial smoke study) and cost O(n^2) over a study of n trials.

:class:`FrontRefresher` takes it off the loop: a finished trial only marks the front
stale (:meth:`~FrontRefresher.request`, constant time); one background thread refreshes
it at most every ``every_s`` seconds (``$STUDY_FRONT_REFRESH_S``, default 30) and never
for more than ``share`` (5 %) of the time (a refresh that took ``d`` seconds waits at
least ``d / share`` before the next: at 1,000 trials one took 4 s, so 80 s apart; a
fixed 30 s made the refreshes 28 % of that study's driver CPU, docs/SCALE.md), and
:meth:`~FrontRefresher.close` refreshes it once more, synchronously, when the study
ends, so the final front is always complete. A refresh that fails (the tracking server
away) is tried again after the interval, and at the end.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable

from study.settings import seconds_setting


def refresh_interval() -> float:
    """Seconds between two refreshes of the live front (``$STUDY_FRONT_REFRESH_S``)."""
    return seconds_setting("STUDY_FRONT_REFRESH_S")


class FrontRefresher:
    """Runs ``refresh`` in a background thread when asked, at most every ``every_s``
    seconds, and once more on :meth:`close` if anything was asked since the last run.

    >>> calls = []
    >>> refresher = FrontRefresher(lambda: calls.append(len(calls)), every_s=3600)
    >>> refresher.request(); refresher.request(); refresher.request()
    >>> refresher.close()  # the last request is honoured at the end
    >>> 1 <= len(calls) <= 2
    True
    """

    def __init__(
        self, refresh: Callable[[], object], every_s: float | None = None, share: float = 0.05
    ) -> None:
        self.refresh = refresh
        self.every_s = refresh_interval() if every_s is None else every_s
        self.share = share
        self._gap = self.every_s  # seconds from the start of one refresh to the next
        self.refreshes = 0
        self._stale = False
        self._last = -float("inf")
        self._wake = threading.Condition()
        self._closing = False
        self._busy = threading.Lock()  # one refresh at a time, the thread's or close()'s
        self._thread = threading.Thread(target=self._loop, name="front-refresh", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Mark the front stale; returns at once."""
        with self._wake:
            self._stale = True
            self._wake.notify()

    def close(self, timeout: float = 300.0) -> None:
        """Stop the thread; refresh once more, here, if a request is pending."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():  # a refresh hangs (the tracking server away)
            warnings.warn("the parent run's front was not refreshed at the end", stacklevel=1)
        elif self._stale:
            self._run()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self._stale:
                    self._wake.wait()
                while not self._closing and (due := self._last + self._gap) > (
                    now := time.monotonic()
                ):
                    self._wake.wait(due - now)
                if self._closing:
                    return
            self._run()

    def _run(self) -> None:
        with self._busy:
            self._stale = False
            self._last = time.monotonic()
            try:
                self.refresh()
                self.refreshes += 1
            except Exception as error:  # the study goes on; the next request retries
                from study.mlflow_layout import error_gist
                from study.service.tracking import tracking_unreachable

                self._stale = True
                self._gap = self.every_s  # a failure's time says nothing of a refresh's
                if tracking_unreachable(error):  # the relay's lines say it: once
                    return
                warnings.warn(
                    f"could not refresh the parent run's front: {error_gist(error)}", stacklevel=1
                )
                return
            took = time.monotonic() - self._last
            self._gap = max(self.every_s, took / self.share if self.share > 0 else 0.0)

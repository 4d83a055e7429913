"""The driver's MLflow writes, sent off Tune's event loop, in order, through outages.

Two kinds of work go through one :class:`Relay`, strictly in the order they came:

* the spools of trials that ended (or were stopped at a rung) while MLflow was away:
  their records travel in the trial's last checkpoint (:mod:`study.service.outbox`),
  which Tune persisted where the driver can read it;
* the driver's own writes: a trial stopped at a rung (``mark_pruned``), a trial that
  failed (``mark_failed``), the scheduler's decision log, the parent's counts and end.

One background thread sends them; while the server is away it holds them, says so in
one line, and one more when it is back with what it held. :meth:`Relay.close` waits for
the rest when the study ends, up to the patience (``$STUDY_TRACKING_PATIENCE_S``):
what is still held then stays in the trials' checkpoints, and ``study resume`` sends it.
A delivered spool leaves a ``delivered`` mark beside it, so a resume sends none twice.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from study.secrets import redact
from study.service.delivery import RELAYED_CALLS
from study.service.outbox import SPOOL, Outbox

DELIVERED = "delivered"


class Relay:
    """Sends the driver's records and the trials' spools to ``uri`` from one thread."""

    def __init__(self, uri: str, patience: float | None = None, every_s: float = 2.0) -> None:
        self.uri = uri
        self.every_s = every_s
        self.queue: list[tuple[Outbox, Any]] = []  # (outbox, where its spool came from)
        self.patience = Outbox(uri, "study", patience, quiet=True).patience
        self.down_since: float | None = None
        self.held: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._folder = Path(tempfile.mkdtemp(prefix="study-relay-"))
        self._thread = threading.Thread(target=self._loop, name="tracking-relay", daemon=True)
        self._thread.start()

    # -- what the driver hands over ----------------------------------------------------------
    def call(self, name: str, **kwargs: Any) -> None:
        """Run ``tracking.<name>(uri, **kwargs)`` in order with the rest."""
        if name not in RELAYED_CALLS:
            raise ValueError(f"relay: {name!r} is not one of {', '.join(RELAYED_CALLS)}")
        outbox = Outbox(self.uri, "study", self.patience, quiet=True)
        outbox.records.append(("call", {"name": name, "kwargs": kwargs}))
        self._enqueue(outbox, None, "driver updates")

    def add_spool(self, trial_id: str, checkpoint) -> int:
        """Queue the records a trial's checkpoint (a ``ray.tune.Checkpoint``) carries
        in its spool, unless they were delivered before; returns how many."""
        local = self._folder / f"{trial_id}-{len(self.queue)}"
        try:
            with checkpoint.as_directory() as folder:
                spool = Path(folder) / SPOOL
                if not spool.is_dir() or (spool / DELIVERED).exists():
                    return 0
                shutil.copytree(spool, local)
        except FileNotFoundError:
            return 0
        outbox = Outbox(self.uri, f"trial {trial_id}", self.patience, quiet=True)
        count = outbox.load(local)
        if count:
            self._enqueue(outbox, checkpoint, "trials' records")
        return count

    def _enqueue(self, outbox: Outbox, checkpoint, what: str) -> None:
        with self._lock:
            self.queue.append((outbox, checkpoint))
            if self.down_since is not None:
                self.held[what] += 1
        self._wake.set()

    # -- sending -----------------------------------------------------------------------------
    def pending(self) -> int:
        """Records not yet sent."""
        with self._lock:
            return sum(len(outbox.records) for outbox, _ in self.queue)

    def flush(self) -> bool:
        """Send what is queued, in order; False while the server is away."""
        while True:
            with self._lock:
                if not self.queue:
                    break
                outbox, checkpoint = self.queue[0]
            if not outbox.flush():
                self._went_away(outbox)
                return False
            if checkpoint is not None:
                _mark_delivered(checkpoint)
            with self._lock:
                self.queue.pop(0)
                kind = "trials' records" if checkpoint is not None else "driver updates"
                if self.down_since is not None:
                    self.sent[kind] += 1
        if self.down_since is not None:
            sent = ", ".join(f"{n} {what}" for what, n in self.sent.items()) or "nothing"
            print(
                f"study: MLflow at {redact(self.uri)} reachable again after "
                f"{time.time() - self.down_since:.0f} s: held back and now written: {sent}",
                flush=True,
            )
            self.down_since, self.held, self.sent = None, Counter(), Counter()
        return True

    def _went_away(self, outbox: Outbox) -> None:
        if self.down_since is not None:
            return
        self.down_since = outbox.down_since or time.time()
        with self._lock:
            for _queued, checkpoint in self.queue:
                self.held["trials' records" if checkpoint is not None else "driver updates"] += 1
        print(
            f"study: MLflow at {redact(self.uri)} unreachable ({outbox.last_error}): holding "
            "the driver's updates and finished trials' records back; the study goes on",
            flush=True,
        )

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.every_s)
            self._wake.clear()
            if not self._closing:
                self.flush()

    def close(self, timeout: float | None = None) -> int:
        """Stop the thread and send the rest, retrying for up to ``timeout`` seconds
        (default: the patience); returns how many records are still held."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        deadline = time.monotonic() + (self.patience if timeout is None else timeout)
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(min(self.every_s, max(0.05, deadline - time.monotonic())))
        left = self.pending()
        if not left:
            shutil.rmtree(self._folder, ignore_errors=True)
        return left


def _mark_delivered(checkpoint) -> None:
    """Leave ``tracking/delivered`` in the checkpoint's spool (local or remote storage)."""
    try:
        path = f"{checkpoint.path}/{SPOOL}/{DELIVERED}"
        with checkpoint.filesystem.open_output_stream(path) as stream:
            stream.write(b"1\n")
    except Exception as error:  # a resume would then send it again: say so
        print(f"study: could not mark a delivered spool ({error})", flush=True)

"""MLflow writes as records that wait out a tracking outage: nothing is lost, nothing
fails a trial before its patience is spent, nothing is written twice.

Every write of a trial to its child run (and of the driver to the study's runs) is a
*record*: a kind and a JSON-ready payload, files named by path. An :class:`Outbox` sends
its records in order as soon as the server answers; while it does not (no connection, a
timeout, a 5xx answer), they wait and the caller goes on: a trial keeps training. Two
lines say so, one when the server goes away and one when it is back, with what was held
and then written.

A trial's records outlive its process: whenever the trial hands Tune a checkpoint while
records wait, :meth:`Outbox.spool` writes them (and the files they name) into the
checkpoint's ``tracking/`` folder, which Tune persists beside it. A retried or resumed
attempt starts from that checkpoint and sends them first; a trial that *ends* during an
outage ends at once (the next trial starts), and the driver's
:class:`study.service.relay.Relay` writes its spool when the server answers again.

Writing twice is avoided by what the run holds: the child run is found by its trial id
before it is created, and epochs the run already holds are not logged again.

:class:`TrialLogger` is a trial's face of it (what ``study.service.trainable`` calls);
the MLflow requests themselves are :mod:`study.service.tracking`'s.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from study import mlflow_layout
from study.mlflow_layout import describe_dataset
from study.secrets import redact
from study.service import tracking
from study.service.delivery import DELIVER
from study.service.tracking import TrackingTimeout

SPOOL = "tracking"


#: The result key saying how many records a reported checkpoint carries in its spool.
PENDING = "tracking_pending"


RECORDS = "records.json"


#: What each kind of record is called in the outage lines.
WHAT = {
    "run": "the run",
    "attach": "the run",
    "params": "params",
    "dataset": "the dataset",
    "tags": "tags",
    "epoch": "epochs",
    "final": "final metrics",
    "file": "artifacts",
    "folder": "artifacts",
    "filter": "the filter figure",
    "model": "the model",
    "end": "the run's end",
    "call": "driver updates",
}


Record = tuple[str, dict[str, Any]]


class Outbox:
    """Records for one MLflow client, sent in order, held while the server is away.

    ``label`` starts the outage lines (``trial 3c827242``). ``patience``: seconds an
    outage may last before :meth:`overdue` says so (``$STUDY_TRACKING_PATIENCE_S``,
    default 1800). ``state`` is what delivered records learned (the child run's id, the
    epochs it holds)."""

    def __init__(
        self, uri: str, label: str, patience: float | None = None, quiet: bool = False
    ) -> None:
        import mlflow

        from study.settings import seconds_setting

        self.client = mlflow.MlflowClient(uri)
        self.label = label
        self.patience = (
            seconds_setting("STUDY_TRACKING_PATIENCE_S") if patience is None else patience
        )
        self.records: list[Record] = []
        self.state: dict[str, Any] = {}
        self.down_since: float | None = None  # wall clock (time.time) of the outage start
        self.held: Counter[str] = Counter()
        self.quiet = quiet  # no outage lines: a relay speaks for its outboxes
        self.last_error = ""

    # -- sending -----------------------------------------------------------------------------
    def put(self, kind: str, **payload: Any) -> None:
        """Queue one record behind the others and send what can be sent."""
        if kind not in DELIVER:
            raise ValueError(f"record: unknown kind {kind!r}")
        self.records.append((kind, payload))
        if self.down_since is not None:
            self.held[kind] += 1
        self.flush()

    def flush(self) -> bool:
        """Send the records in order; False (the rest kept) while the server is away.
        A record the server refuses (a bad value: a 4xx answer) is dropped with a
        warning line, never retried forever."""
        while self.records:
            kind, payload = self.records[0]
            try:
                DELIVER[kind](self.client, self.state, payload)
            except Exception as error:
                if tracking.tracking_unreachable(error):
                    self.last_error = mlflow_layout.error_gist(error)
                    if self.down_since is None:
                        self.down_since = time.time()
                        self.held = Counter(k for k, _ in self.records)
                        if not self.quiet:
                            print(
                                f"{self.label}: MLflow at {self.where} unreachable "
                                f"({self.last_error}): holding its records back "
                                f"({self.describe_held()}); work goes on",
                                flush=True,
                            )
                    return False
                if kind in ("run", "attach"):  # no run to write to: that is no outage
                    self.records.pop(0)
                    raise
                gist = mlflow_layout.error_gist(error)
                print(f"{self.label}: MLflow refused {WHAT[kind]} ({gist}); left out", flush=True)
            self.records.pop(0)
        if self.down_since is not None:
            if not self.quiet:
                print(
                    f"{self.label}: MLflow at {self.where} reachable again after "
                    f"{time.time() - self.down_since:.0f} s: {self.describe_held()} written",
                    flush=True,
                )
            self.down_since, self.held = None, Counter()
        return True

    def describe_held(self) -> str:
        """``3 epochs, tags, the model``: what waited during the outage."""
        parts = []
        for kind, count in self.held.items():
            name = WHAT[kind]
            parts.append(f"{count} {name}" if count > 1 and kind == "epoch" else name)
        return ", ".join(dict.fromkeys(parts)) or "nothing"

    @property
    def where(self) -> str:
        return redact(self.client.tracking_uri)

    def overdue(self) -> bool:
        """Whether the server has been away for longer than the patience."""
        return self.down_since is not None and time.time() - self.down_since > self.patience

    def timeout(self) -> TrackingTimeout:
        """The one-line error of an overdue outage."""
        waited = time.time() - (self.down_since or time.time())
        return TrackingTimeout(
            f"MLflow at {self.where} unreachable for {waited:.0f} s (patience "
            f"{self.patience:.0f} s, STUDY_TRACKING_PATIENCE_S); its records are kept with "
            "the trial's checkpoint: `study resume` writes them once the server is back"
        )

    def wait(self, timeout: float, every: float = 2.0) -> bool:
        """Retry for up to ``timeout`` seconds; True once everything is sent."""
        deadline = time.monotonic() + timeout
        while not self.flush():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(every, max(0.05, deadline - time.monotonic())))
        return True

    # -- spooling ----------------------------------------------------------------------------
    def spool(self, folder: Path) -> int:
        """Write the waiting records into ``folder`` (files they name copied beside them,
        paths made relative); returns how many. Nothing is written when none wait."""
        if not self.records:
            return 0
        files = folder / "files"
        files.mkdir(parents=True, exist_ok=True)
        written = []
        for index, (kind, payload) in enumerate(self.records):
            payload = dict(payload)
            if "path" in payload:
                source = Path(payload["path"])
                target = files / f"{index}-{source.name}"
                if source.is_dir():
                    shutil.copytree(source, target)
                elif source.is_file():
                    shutil.copy(source, target)
                payload["path"] = str(target.relative_to(folder))
            written.append([kind, payload])
        document = {"state": _plain_state(self.state), "records": written}
        (folder / RECORDS).write_text(json.dumps(document, indent=1, default=str))
        return len(written)

    def load(self, folder: Path) -> int:
        """Queue, before anything else, the records a spool in ``folder`` holds (paths
        made absolute again); returns how many. Nothing if there is no spool."""
        path = folder / RECORDS
        if not path.is_file():
            return 0
        document = json.loads(path.read_text())
        loaded: list[Record] = []
        for kind, payload in document["records"]:
            if "path" in payload:
                payload["path"] = str(folder / payload["path"])
            loaded.append((kind, payload))
        for key, value in document.get("state", {}).items():
            self.state.setdefault(key, set(value) if key == "logged" else value)
        self.records[:0] = loaded
        return len(loaded)


def _plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: sorted(v) if isinstance(v, set) else v for k, v in state.items()}


class TrialLogger:
    """Logs one trial's params, per-epoch metrics (step = epoch), final metrics, model and
    figures into its child run, through an :class:`~study.service.outbox.Outbox`.

    Nothing here waits for the server or fails when it is away: every write is a record
    sent in order as soon as the server answers (the child run itself is found or
    created by the first one), epochs the run already holds are not logged again, and
    :meth:`spool` writes what still waits into a checkpoint folder, which a retried
    attempt or the driver sends later. Give ``run_id`` to log into an existing run,
    else ``parent``, ``trial_id`` and ``name`` to find or create the trial's child run.
    ``work``: a folder for what must wait on disk (the model)."""

    def __init__(
        self,
        uri: str,
        run_id: str | None = None,
        patience: float | None = None,
        *,
        parent: str | None = None,
        trial_id: str | None = None,
        name: str | None = None,
        work: Path | None = None,
        started_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.outbox = Outbox(uri, f"trial {trial_id or run_id}", patience)
        self.client = self.outbox.client
        self.work = work
        if run_id is not None:
            self.outbox.put("attach", run_id=run_id)
        else:
            self.outbox.put(
                "run", parent=parent, trial_id=trial_id, name=name, tags=dict(started_tags or {})
            )

    @property
    def run_id(self) -> str | None:
        """The child run's id, once the server has been reached."""
        return self.outbox.state.get("run_id")

    @property
    def patience(self) -> float:
        return self.outbox.patience

    def pending(self) -> int:
        """Records still waiting for the server."""
        return len(self.outbox.records)

    def overdue(self) -> bool:
        """The server has been away for longer than the patience."""
        return self.outbox.overdue()

    def spool(self, folder: Path) -> int:
        """Write the waiting records into ``folder`` (see :meth:`Outbox.spool`)."""
        return self.outbox.spool(folder)

    def load(self, folder: Path) -> int:
        """Send first the records an earlier attempt spooled into ``folder``."""
        loaded = self.outbox.load(folder)
        self.outbox.flush()
        return loaded

    def drain(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (default: the patience) until everything is
        sent; :class:`~study.service.outbox.TrackingTimeout` otherwise."""
        if not self.outbox.wait(self.patience if timeout is None else timeout):
            raise self.outbox.timeout()

    # -- records -------------------------------------------------------------------------
    def params(self, flat: Mapping[str, Any]) -> None:
        """Log the params the run does not hold yet (a retry logs none twice)."""
        params = {key: "None" if value is None else str(value) for key, value in flat.items()}
        self.outbox.put("params", params=params)

    def tags(self, tags: Mapping[str, str]) -> None:
        self.outbox.put("tags", tags={k: str(v) for k, v in tags.items()})

    def epoch(self, row: Mapping[str, Any]) -> None:
        """One epoch's numeric metrics (step = epoch) in one request, unless the run
        holds that epoch already (an earlier attempt logged it)."""
        self.outbox.put("epoch", row=_scalars(row))

    def backfill(self, rows: list[Mapping[str, Any]]) -> None:
        """Log the epochs of ``rows`` (a checkpoint's history) that the run lacks."""
        for row in rows:
            self.epoch(row)

    def final(self, metrics: Mapping[str, Any], out: Path) -> None:
        """Final metrics, ``metrics.json``, ``history.json`` and ``figures/``, then
        FINISHED. Returns at once: what the server cannot take now waits (and is
        spooled into the trial's last checkpoint)."""
        self.outbox.put("final", metrics=_scalars(metrics))
        from study.trial.checkpoint import HISTORY_FILE, METRICS_FILE

        for name in (METRICS_FILE, HISTORY_FILE):
            self.outbox.put("file", path=str(out / name))
        self.outbox.put("folder", path=str(out / "figures"), artifact_path="figures")
        self.outbox.put("end", status="FINISHED")

    def dataset(self, data: Mapping[str, Any]) -> None:
        """The training data as the run's MLflow dataset input (context ``training``): a
        name and digest that say which images (source, counts, split seed), so the UI
        groups the runs trained on the same data. ``data``: the ``data.*`` config."""
        name, digest, described = describe_dataset(data)
        self.outbox.put("dataset", name=name, digest=digest, source=described)

    def model(self, model, example) -> None:
        """The trained network as an MLflow model under ``model``, with its signature and
        one test image as input example: ``mlflow.pytorch.load_model("runs:/RUN/model")``
        gives it back (where this package is installed: its layers are pickled by
        reference), and the UI registers it. ``model``: an ``nn.Module`` in eval mode;
        ``example``: ``(1, C, H, W)`` float, normalised as in training. Saved to
        ``work/model`` first, so that it can wait for the server like any record."""
        import tempfile

        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            logits = model(example)
        inputs = example.detach().cpu().numpy()
        signature = infer_signature(inputs, logits.detach().cpu().numpy())
        folder = Path(tempfile.mkdtemp(prefix="model-", dir=self.work))
        mlflow.pytorch.save_model(
            model,
            str(folder / "model"),
            signature=signature,
            input_example=inputs,
            pip_requirements=tracking.model_requirements(),
            serialization_format="pickle",
        )
        self.outbox.put("model", path=str(folder / "model"))

    def filter_figure(self, spec: str) -> None:
        """The filter's taps and frequency response (``figures/filter.png``)."""
        self.outbox.put("filter", spec=str(spec))


def _scalars(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready values of a metrics row (numbers, strings, None)."""
    return {k: v for k, v in row.items() if isinstance(v, int | float | str | None)}

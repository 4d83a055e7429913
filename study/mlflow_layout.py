"""The MLflow layout of a study, in one place: what the service writes and every
reader (``study status``, ``study pareto``, the Python API, the tests) reads.

One parent run per study, tagged ``study.name=NAME`` and ``study.role=parent``, holding
the space as written (``space/``), the resolved space (``study.yaml``), the front
(``pareto/``) and the scheduler's log; one child run per trial, tagged
``mlflow.parentRunId``, ``study.role=trial`` and ``study.trial_id``, holding the trial's
params, per-epoch metrics (step = epoch), final metrics (``final.<name>``), the filter's
description and figure, ``metrics.json``, ``history.json``, figures and the model.

Also here, because reader and writer must agree on them: how a store is reached
(:func:`tracking_uri`, :func:`connect`), how runs are listed (all pages), how a study's
parent run is found (:func:`parent_run`: one rule), and how a trial ended
(:func:`trial_state`). ``mlflow`` is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from study.secrets import redact
from study.settings import environment

DEFAULT_DB = "mlflow.db"
TRIAL_TAG = "study.trial_id"
STUDY_TAG = "study.name"
#: On a simulated study's parent and child runs (:mod:`study.trial.simulated`).
SIMULATED_TAG = "study.simulated"
STUDY_DOCUMENT = "study.yaml"
#: The space file as written, under this folder of the parent run.
SPACE_FOLDER = "space"
#: A trial's child run: the filter's description and response figure, and the tag
#: naming its logged MLflow model (artifact ``model``).
FILTER_DOCUMENT = "filter.json"
FILTER_FIGURE = "figures/filter.png"
MODEL_TAG = "study.model_uri"
# An MLflow server with logins (`mlflow server --app-name basic-auth`) that refused the
# request, by MLflow's error code: what to tell the user.
LOGIN_REFUSED = {
    "UNAUTHENTICATED": "asks for a login (401): set MLFLOW_TRACKING_USERNAME and "
    "MLFLOW_TRACKING_PASSWORD (or check them)",
    "PERMISSION_DENIED": "refused the user MLFLOW_TRACKING_USERNAME (403): it lacks a "
    "permission on this server",
}
#: A trial stopped early by the scheduler: child run ``KILLED`` with these tags.
PRUNED_TAG = "study.pruned"
STOPPED_TAG = "study.stopped_at_epoch"
#: Decision fields as tags of the stopped child run: ``study.rung`` (its epoch), ...
RUNG_FIELDS = ("rung", "rank", "population", "quota", "front", "bracket", "surely_better")
DECISIONS = "scheduler/decisions.json"
PARENT_TAG = "mlflow.parentRunId"
#: MLflow 3's UI opens an experiment on the view its kind names: the runs table for
#: model development (without the tag it guesses, and an empty experiment opens on the
#: GenAI overview of traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
ROLE_TAG = "study.role"
#: Searched values are params ``optuna.<name>``.
OPTUNA_PREFIX = "optuna."
#: The layout before metrics were grouped: final metrics were ``final.<name>``, the
#: others kept their trial names (``val_acc``, ``train_loss``, ``rung.val_acc``). Read,
#: never written (:func:`final_metrics`, :func:`logged_epochs`).
FINAL_PREFIX = "final."
#: Values that describe a run rather than measure it: tags ``study.<name>``, not metrics.
RUN_FACTS = ("epochs", "eval_images", "eval_shifts", "threads")
#: Timings a trial reports every epoch (``time/<name>``); its final timings are totals
#: over the run (``time/total_<name>``).
EPOCH_TIMES = ("epoch_seconds", "validation_seconds", "images_per_second")
#: How many known study names a "no study" error lists.
KNOWN_LISTED = 10
#: MLflow's run description (markdown, the UI's "Description" box); the parent's holds
#: its live front between these two markers, a user's own text around them is kept.
NOTE_TAG = "mlflow.note.content"
FRONT_NOTE_BEGIN, FRONT_NOTE_END = "<!-- study front -->", "<!-- /study front -->"
#: What the UI's Source column shows for a run.
SOURCE_NAME_TAG, SOURCE_TYPE_TAG = "mlflow.source.name", "mlflow.source.type"


class StudyNotFound(ValueError):
    """No parent run of that name: one line, ``name: no study ...``."""


def metric_key(name: str, final: bool = False) -> str | None:
    """The MLflow key of a trial's metric ``name`` (``final``: one of its final metrics,
    else a per-epoch one), or None for :data:`RUN_FACTS` (tags instead). MLflow's UI
    groups a run's charts into sections by the part before ``/``: the scores on the test
    and validation splits first, then training, then time.

    >>> [metric_key(n) for n in ("val_acc", "train_loss", "lr", "epoch_seconds")]
    ['val/acc', 'train/loss', 'train/lr', 'time/epoch_seconds']
    >>> [metric_key(n, final=True) for n in ("test_consistency_crop", "eval_seconds", "epochs")]
    ['test/consistency_crop', 'time/total_eval_seconds', None]
    """
    if final and name in RUN_FACTS:
        return None
    if name.endswith("_seconds") or name in EPOCH_TIMES:
        return f"time/total_{name}" if final else f"time/{name}"
    if name == "lr":
        return "train/lr"
    for split in ("test", "val", "train"):
        if name.startswith(f"{split}_"):
            return f"{split}/{name.removeprefix(f'{split}_')}"
    return f"final/{name}" if final else name


def final_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A finished child run's final metrics by their trial names (``test_acc``,
    ``val_consistency``, ``train_seconds``, ...), from ``run.data.metrics`` in either
    layout: this one (:func:`metric_key`) or the one before (``final.<name>``).

    >>> final_metrics({"test/acc": 0.9, "val/loss": 1.2, "time/total_train_seconds": 8.0,
    ...                "time/epoch_seconds": 2.0, "train/lr": 0.1})
    {'test_acc': 0.9, 'val_loss': 1.2, 'train_seconds': 8.0}
    >>> final_metrics({"final.test_acc": 0.8, "val_acc": 0.7})
    {'test_acc': 0.8}
    """
    found: dict[str, float] = {}
    for key, value in metrics.items():
        section, slash, rest = key.partition("/")
        if key.startswith(FINAL_PREFIX):
            name = key.removeprefix(FINAL_PREFIX)
        elif not slash or key == "train/lr":
            continue
        elif section in ("test", "val", "train"):
            name = f"{section}_{rest}"
        elif section == "time" and rest.startswith("total_"):
            name = rest.removeprefix("total_")
        elif section == "final":
            name = rest
        else:
            continue
        found.setdefault(name, float(value))
    return found


def logged_epochs(client: Any, run_id: str) -> set[int]:
    """The epochs (steps) whose metrics ``run_id`` holds, in either layout."""
    return {
        int(m.step)
        for key in (metric_key("train_loss"), "train_loss")
        for m in client.get_metric_history(run_id, key)
    }


def describe_dataset(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(name, digest, source) of a trial's training data as an MLflow dataset input,
    from its ``data.*`` config: the same images (source, counts, split seed) give the
    same digest, so the UI groups the runs trained on them.

    >>> describe_dataset({"source": "/data/cifar10-jpeg.tar.gz", "train_images": 3000})[:2]
    ('cifar10-jpeg.tar.gz (3000 training images)', '5564603a')
    """
    described = json.dumps({key: data.get(key) for key in sorted(data)}, default=str)
    digest = hashlib.sha256(described.encode()).hexdigest()[:8]
    source = Path(str(data.get("source"))).name or str(data.get("source"))
    return f"{source} ({data.get('train_images') or 'all'} training images)", digest, described


def log_dataset(client: Any, run_id: str, name: str, digest: str, source: str) -> bool:
    """Log the dataset ``(name, digest, source)`` as ``run_id``'s training input unless
    the run holds that digest already (a retry, a resume); returns whether it logged."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    held = client.get_run(run_id).inputs.dataset_inputs
    if any(item.dataset.digest == digest for item in held):
        return False
    dataset = Dataset(name, digest, source_type="code", source=source)
    entry = DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])
    client.log_inputs(run_id, [entry])
    return True


def tracking_uri(configured: str | None = None) -> str:
    """The study's tracking URI: the space's ``tracking_uri``, else
    ``$MLFLOW_TRACKING_URI``, else a SQLite database in the working directory (MLflow 3
    refuses the plain ``./mlruns`` file store by default)."""
    from study.paths import absolute_sqlite, default_root

    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return absolute_sqlite(uri)  # trials run in other folders
    return f"sqlite:///{default_root() / DEFAULT_DB}"


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """No retries and a short timeout for MLflow's HTTP client (default: 7 retries with
    backoff, minutes on a dead host)."""
    with environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
        yield


def error_gist(error: BaseException) -> str:
    """The gist of a connection error: ``Connection refused`` rather than urllib3's
    nested repr; otherwise the first line, cut at 160 characters."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    if errno:
        return errno.group(1).strip()
    line = text.splitlines()[0]
    return line if len(line) <= 160 else line[:157] + "..."


def connect(uri: str, create: bool = False, field: str = "tracking_uri"):
    """An ``mlflow.MlflowClient`` on ``uri``, checked to answer with one request and no
    retries; a one-line ``ValueError`` naming ``field`` otherwise. Without ``create`` a
    ``sqlite:///`` URI must name an existing file (reading never creates a database)."""
    import logging

    import mlflow

    # "Creating initial MLflow database tables..." is not news to a user, and neither is
    # "SQLAlchemy engine could not be created" before the one-line error below says so.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.ERROR)
    if uri.startswith("sqlite:///") and not create:
        path = uri[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:" and not Path(path).is_file():
            raise ValueError(f"{field}: no MLflow database at {path} ({redact(uri)})")
    try:
        _database_answers(uri)  # MLflow's own check retries for 100 s
        with fail_fast():
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)
    except Exception as error:
        refused = LOGIN_REFUSED.get(getattr(error, "error_code", ""))
        if refused:
            raise ValueError(f"{field}: {redact(uri)} {refused}") from None
        raise ValueError(f"{field}: cannot reach {redact(uri)} ({error_gist(error)})") from None
    return client


def _database_answers(uri: str) -> None:
    """One connection attempt to a database store (PostgreSQL, MySQL, ...; not SQLite,
    not a server), raising what it raises: MLflow's client would retry a database that
    does not answer 10 times with backoff, about 100 s, before saying so."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if "://" not in uri or scheme in ("sqlite", "http", "https", "file", "databricks"):
        return
    from mlflow.store.db.utils import create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(uri)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


PAGE = 1000


def all_experiment_ids(client) -> list[str]:
    """Every experiment id in the store (all pages)."""
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def search_all_runs(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching ``filter_string``, across pages (and chunks of experiments)."""
    runs: list = []
    for start in range(0, len(experiment_ids), 100):
        token = None
        while True:
            page = client.search_runs(
                experiment_ids[start : start + 100],
                filter_string=filter_string,
                max_results=PAGE,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
    return runs


def child_runs(uri: str, parent_id: str) -> list:
    """Every child run of the parent run ``parent_id`` (all pages)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_run(parent_id).info.experiment_id
    return search_all_runs(client, [experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")


def trial_state(run) -> str:
    """How a child run's trial ended, as every reader counts it: ``PRUNED`` (stopped
    early by the scheduler: status ``KILLED`` with tag ``study.pruned``), else the run's
    status (``FINISHED`` = complete, ``FAILED``, ``RUNNING``, ``KILLED`` = interrupted
    or orphaned)."""
    if run.data.tags.get(PRUNED_TAG) == "true":
        return "PRUNED"
    return run.info.status


def parent_run(client: Any, name: str) -> Any | None:
    """The parent run of study ``name``, or None: the newest started one in the
    experiment named ``name`` when that holds one, else the newest in any experiment.
    The one rule every command uses (a name can be used twice: another experiment, a
    parent made by hand)."""
    if "'" in name or "\n" in name:
        raise ValueError(f"name: {name!r} may not contain quotes or newlines")
    query = f"tags.`{STUDY_TAG}` = '{name}' and tags.`{ROLE_TAG}` = 'parent'"
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        found = search_all_runs(client, [experiment.experiment_id], query)
        if found:
            return max(found, key=lambda run: run.info.start_time or 0)
    found = search_all_runs(client, all_experiment_ids(client), query)
    return max(found, key=lambda run: run.info.start_time or 0) if found else None


def find_parent(client: Any, name: str) -> Any:
    """:func:`parent_run`, or :class:`StudyNotFound` naming the studies the store has."""
    found = parent_run(client, name)
    if found is not None:
        return found
    known = known_studies(client)
    if not known:
        raise StudyNotFound(f"name: no study {name!r} (the store has no studies)")
    listed = ", ".join(known[:KNOWN_LISTED])
    more = f", ... ({len(known)} in all)" if len(known) > KNOWN_LISTED else ""
    raise StudyNotFound(f"name: no study {name!r}; known: {listed}{more}")


def known_studies(client: Any) -> list[str]:
    """Names of every study with a parent run in the store, sorted."""
    ids = all_experiment_ids(client)
    parents = search_all_runs(client, ids, f"tags.`{ROLE_TAG}` = 'parent'")
    return sorted({run.data.tags.get(STUDY_TAG, "") for run in parents} - {""})

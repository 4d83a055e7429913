"""A study's complete trials, read back from MLflow, and the parent run's live front.

Layout (:mod:`study.mlflow_layout`, written by :mod:`study.service.tracking`): one
parent run per study, tagged ``study.name=NAME`` and ``study.role=parent``; one child
run per trial, tagged ``mlflow.parentRunId``; a child whose status is ``FINISHED`` is a
complete trial (a trial stopped early by the scheduler is ``KILLED`` with tag
``study.pruned`` and never counts: :func:`study.mlflow_layout.trial_state`). Its params
hold the flattened trial config (``model.filter``, ``augment.kind``, ...,
``filter.family``, ``filter.taps``) and the searched values as ``optuna.<name>``; its
final metrics are ``final.<name>``, and an objective ``NAME:max|min`` reads
``final.NAME``.

Every user-facing failure is a :class:`ParetoError`: one line, ``<field>: <problem>``.
``mlflow`` is imported only inside the functions that talk to the store.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import mlflow_layout
from study.mlflow_layout import OPTUNA_PREFIX, PARENT_TAG, STUDY_TAG, TRIAL_TAG
from study.pareto import front as fr
from study.pareto.records import StudyTrials, TrialRecord


class ParetoError(ValueError):
    """A user-facing error, one line: ``<field>: <problem>``."""


@dataclass(frozen=True)
class FrontSummary:
    """What :func:`update_parent_front` logged."""

    study: str
    parent_run_id: str
    complete: int
    front_size: int
    hypervolume: float
    reference: tuple[float, ...]
    front_run_ids: tuple[str, ...]


@functools.lru_cache(maxsize=256)
def _describe(spec: str) -> dict[str, Any] | None:
    """:func:`study.filters.identify` of ``spec``: not its frequency response
    (:func:`study.filters.describe`), whose scipy.signal import (about 1.4 s) a front of
    fixed FIR families does not need."""
    from study import filters

    try:
        return filters.identify(spec)
    except Exception:  # an unparseable or unknown spec: keep what the params say
        return None


def connect(uri: str) -> Any:
    """An ``mlflow.MlflowClient`` on ``uri``, checked to answer (one request, no retries).

    A ``sqlite:///`` URI must name an existing file: reading never creates a database.
    """
    try:
        return mlflow_layout.connect(uri, create=False)
    except ValueError as error:
        raise ParetoError(str(error)) from None


def find_parent(client: Any, name: str) -> Any:
    """The parent run of study ``name`` (:func:`study.mlflow_layout.parent_run`'s rule,
    the one every command follows), or a :class:`ParetoError` naming the known ones."""
    try:
        return mlflow_layout.find_parent(client, name)
    except ValueError as error:
        raise ParetoError(str(error)) from None


def _record(
    run: Any, study: str, objectives: Mapping[str, str], describe: bool = True
) -> TrialRecord | None:
    metrics = mlflow_layout.final_metrics(run.data.metrics)
    values = {name: metrics.get(name, math.nan) for name in objectives}
    if not all(math.isfinite(v) for v in values.values()):
        return None
    params = run.data.params
    spec = params.get("model.filter", "")
    info = _describe(spec) if spec and describe else None
    family = params.get("filter.family") or (info or {}).get("family") or spec.split("(")[0]
    taps_text = params.get("filter.taps")
    try:
        taps = int(taps_text) if taps_text not in (None, "", "None") else None
    except ValueError:
        taps = None
    if taps is None and info is not None:
        taps = int(info["taps"])
    weights = tuple(info["weights"]) if info else ()
    downsample = params.get("model.downsample", "blur")
    if downsample in ("adaptive", "ideal"):  # their own low-pass: no fixed taps to show
        family, taps, weights = downsample, None, ()
    return TrialRecord(
        study=study,
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        trial_id=run.data.tags.get(TRIAL_TAG, ""),
        filter=_downsampling(str(info["filter"]) if info else spec, params),
        family=str(family),
        taps=taps,
        weights=weights,
        augment=params.get("augment.kind", "-"),
        objectives=values,
        metrics=metrics,
        params={k: v for k, v in params.items() if k.startswith(OPTUNA_PREFIX)},
        end_time=int(run.info.end_time or 0),
    )


def load_children(
    client: Any,
    parent: Any,
    objectives: Mapping[str, str],
    study: str | None = None,
    describe: bool = True,
) -> StudyTrials:
    """The complete trials under ``parent`` (a ``mlflow.entities.Run``), in completion
    order. Without ``describe`` the filters are named from the runs' params alone
    (no canonical spec, no taps' weights; nothing imports scipy): what ``study status``
    shows. Raises :class:`ParetoError` when an objective is logged by no complete trial;
    returns an empty :class:`StudyTrials` when there are no complete trials."""
    study = study or parent.data.tags.get(STUDY_TAG) or parent.info.run_name or "?"
    children = mlflow_layout.search_all_runs(
        client, [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    statuses = Counter(mlflow_layout.trial_state(run) for run in children)
    finished = [run for run in children if mlflow_layout.trial_state(run) == "FINISHED"]
    logged = sorted(
        {name for run in finished for name in mlflow_layout.final_metrics(run.data.metrics)}
    )
    if finished:
        for name in objectives:
            if name not in logged:
                shown = ", ".join(logged) if logged else "none"
                raise ParetoError(
                    f"objectives: {name}: no complete trial of study {study!r} logged it; "
                    f"logged: {shown}"
                )
    records = [
        r for run in finished if (r := _record(run, study, objectives, describe)) is not None
    ]
    records.sort(key=lambda r: (r.end_time, r.run_id))
    return StudyTrials(
        study=study,
        experiment_id=parent.info.experiment_id,
        parent_run_id=parent.info.run_id,
        objectives=dict(objectives),
        records=records,
        statuses=dict(statuses),
        missing=len(finished) - len(records),
        simulated=parent.data.tags.get(mlflow_layout.SIMULATED_TAG) == "true",
    )


def _downsampling(spec: str, params: Mapping[str, str]) -> str:
    """The filter as a front shows it: ``binomial-3``, or the operator that replaced
    blur-pooling (``model.downsample``): ``aps(binomial-3)``, ``ideal(cutoff=0.5)``, ..."""
    from study.labels import downsampling_label

    fields = {k.removeprefix("model."): v for k, v in params.items() if k.startswith("model.")}
    return downsampling_label(spec, fields)


def study_objectives(parent: Any) -> dict[str, str]:
    """The objectives a study was run with (its parent's ``study.objectives`` param)."""
    text = parent.data.params.get("study.objectives")
    if not text:
        raise ParetoError(
            "objectives: the study's parent run records none; give --objectives NAME:DIR,..."
        )
    return fr.parse_objectives(text)


def load_study(
    tracking_uri: str | None,
    name: str,
    objectives: str | Mapping[str, str] | None = None,
    client: Any | None = None,
) -> StudyTrials:
    """Study ``name``'s complete trials, judged on ``objectives`` (default: the study's
    own). ``tracking_uri`` is resolved by :func:`study.mlflow_layout.tracking_uri`.
    Raises :class:`ParetoError` for an unreachable store, an unknown study, an objective
    no trial logged, or no complete trial."""
    from study.mlflow_layout import tracking_uri as resolve

    client = client or connect(resolve(tracking_uri))
    parent = find_parent(client, name)
    try:
        objectives = (
            fr.parse_objectives(objectives) if objectives is not None else study_objectives(parent)
        )
    except ValueError as error:
        raise ParetoError(str(error)) from None
    trials = load_children(client, parent, objectives, name)
    if not trials.records:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(trials.statuses.items())) or "no runs"
        extra = f", {trials.missing} FINISHED without the objectives" if trials.missing else ""
        raise ParetoError(f"name: study {name!r} has no complete trials yet ({counts}{extra})")
    return trials


def _with_front(parent: Any, note: str) -> str:
    """The parent's description with its front section replaced by ``note``; a user's
    own text before or after the section is kept."""
    begin, end = mlflow_layout.FRONT_NOTE_BEGIN, mlflow_layout.FRONT_NOTE_END
    text = parent.data.tags.get(mlflow_layout.NOTE_TAG, "")
    before, _, rest = text.partition(begin)
    after = rest.partition(end)[2] if rest else ""
    return f"{before}{begin}\n{note}\n{end}{after}"


def _add_datasets(client: Any, parent: Any, child_run_id: str) -> None:
    """The datasets the newest complete trial trained on, as the parent's inputs too (the
    runs table's Dataset column), each logged once."""
    held = {item.dataset.digest for item in parent.inputs.dataset_inputs}
    for item in client.get_run(child_run_id).inputs.dataset_inputs:
        if item.dataset.digest not in held:
            dataset = item.dataset
            mlflow_layout.log_dataset(
                client, parent.info.run_id, dataset.name, dataset.digest, dataset.source
            )


def update_parent_front(
    tracking_uri: str,
    parent_run_id: str,
    objectives: str | Mapping[str, str],
    reference: Sequence[float] | None = None,
) -> FrontSummary | None:
    """Recompute the front of the complete children of ``parent_run_id`` and log it to the
    parent: metrics ``hypervolume`` and ``front_size`` at step = number of complete trials,
    artifacts ``pareto/pareto.csv``, ``pareto/pareto.json``, ``pareto/pareto.png``,
    ``pareto/table.md`` (the paper's Table 1 layout), its
    description (the front, each trial linked to its child run) and the datasets its
    trials trained on.

    Called by the service after every finished trial. Returns what was logged, or None
    (logging nothing) while no trial is complete. Raises :class:`ParetoError` when an
    objective is logged by no complete trial.
    """
    import mlflow

    from study.pareto import plots, tables

    try:
        objectives = fr.parse_objectives(objectives)
    except ValueError as error:
        raise ParetoError(str(error)) from None
    client = mlflow.MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    trials = load_children(client, parent, objectives)
    if not trials.records:
        return None
    ref = trials.reference(reference)
    hv = trials.hypervolume(ref)
    front = trials.front()
    step = len(trials.records)
    client.log_metric(parent_run_id, "hypervolume", hv, step=step)
    client.log_metric(parent_run_id, "front_size", float(len(front)), step=step)
    with tempfile.TemporaryDirectory(prefix="pareto-") as folder:
        out = Path(folder)
        tables.write_csv([trials], out, trials_csv=False)
        tables.write_json([trials], out / "pareto.json", ref)
        plots.write_image([trials], out / "pareto.png", ref)
        tables.write_table([trials], out / "table.md")
        client.log_artifacts(parent_run_id, str(out), "pareto")
    note = tables.front_note(trials, hv, ref)
    client.set_tag(parent_run_id, mlflow_layout.NOTE_TAG, _with_front(parent, note))
    _add_datasets(client, parent, trials.records[-1].run_id)
    return FrontSummary(
        study=trials.study,
        parent_run_id=parent_run_id,
        complete=step,
        front_size=len(front),
        hypervolume=hv,
        reference=tuple(float(v) for v in ref),
        front_run_ids=tuple(r.run_id for r in front),
    )

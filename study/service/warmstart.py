"""A new study's Optuna study, made before Ray Tune starts: objectives named, chosen
configurations queued first, and (``study run --from OLD``) the complete trials of an
earlier study copied in, so TPE, NSGA-II and GP learn from them.

Ray's ``OptunaSearch`` then loads this study (it creates studies with
``load_if_exists=True``) and samples on from there. Everything goes through Optuna's
public API: ``create_study``, ``Study.set_metric_names`` (so optuna-dashboard shows
named objectives), ``Study.enqueue_trial`` and ``Study.add_trial`` with
``optuna.trial.create_trial``.

A trial of the earlier study is copied when it is COMPLETE, was scored on the new
study's objectives (by name, in any order), and every parameter it has is a dimension
of the new space holding its value: a warm start never feeds a sampler a point outside
its space. Copied trials carry the user attributes ``warm_start_from`` (the earlier
study) and ``warm_start_trial`` (its number there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.secrets import reveal
from study.service.samplers import optuna_storage
from study.trial.config import ConfigError

if TYPE_CHECKING:
    import optuna

    from study.service.plan import StudyPlan
    from study.service.space import SearchSpace


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` did: points queued, trials copied (and skipped, with why)."""

    enqueued: int
    copied: int
    skipped: dict[str, int]


def prepare(space: SearchSpace, study_plan: StudyPlan, warm_from: str | None = None) -> Prepared:
    """Create the study's Optuna study with named objectives, queue ``study.enqueue``'s
    points, and copy ``warm_from``'s usable trials (see the module notes)."""
    import optuna

    directions = ["maximize" if mode == "max" else "minimize" for mode in study_plan.modes]
    study = optuna.create_study(
        study_name=study_plan.name,
        storage=optuna_storage(study_plan.optuna_storage),
        directions=directions,
        load_if_exists=True,
    )
    with warnings.catch_warnings():  # "experimental since 3.2": stable in every release since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(study_plan.metrics))
    for point in space.settings.enqueue:
        study.enqueue_trial(dict(point), skip_if_exists=True)
    copied, skipped = 0, {}
    if warm_from is not None:
        old = load_earlier(warm_from, study_plan.tracking_uri)
        copied, skipped = copy_trials(old, study, space, study_plan.metrics, warm_from)
    return Prepared(len(space.settings.enqueue), copied, skipped)


def check_warm_start(warm_from: str, space: SearchSpace, study_plan: StudyPlan) -> None:
    """One-line errors before anything starts: ``--from`` names another study, the
    sampler can learn from it, and the earlier study scored the new objectives."""
    if warm_from == study_plan.name:
        raise ConfigError("--from", f"{warm_from!r} is the new study itself; give an earlier one")
    if space.settings.sampler == "grid":
        raise ConfigError(
            "--from",
            "grid evaluates every point anyway; warm starts are for random, tpe, nsga2 and gp",
        )
    old = load_earlier(warm_from, study_plan.tracking_uri)
    names = _metric_names(old)
    missing = [m for m in study_plan.metrics if m not in names]
    if missing:
        raise ConfigError(
            "--from",
            f"study {warm_from!r} optimised {', '.join(names)}, not {', '.join(missing)}",
        )


def load_earlier(name: str, tracking_uri: str) -> optuna.Study:
    """The Optuna study of an earlier study ``name``, found through its MLflow parent
    run's ``study.yaml`` (its storage, password revealed from the environment)."""
    import optuna

    from study.service.tracking import study_document

    try:
        document = study_document(tracking_uri, name)
    except ValueError as error:
        raise ConfigError("--from", str(error).split(": ", 1)[-1]) from None
    settings = document.get("study", {})
    url = reveal(settings.get("optuna_storage") or "", "--from")
    if not url:
        raise ConfigError("--from", f"study {name!r} records no Optuna storage")
    try:
        old = optuna.load_study(study_name=name, storage=optuna_storage(url))
    except KeyError:
        raise ConfigError("--from", f"no Optuna study {name!r} in its storage") from None
    if not old.metric_names:  # a study from before metric names: take its objectives
        objectives = settings.get("objectives") or {}
        if len(objectives) == len(old.directions):
            old.set_metric_names(list(objectives))
    return old


def _metric_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [])


def copy_trials(
    old: optuna.Study,
    new: optuna.Study,
    space: SearchSpace,
    metrics: list[str],
    label: str,
) -> tuple[int, dict[str, int]]:
    """Add ``old``'s usable COMPLETE trials to ``new`` (values reordered to
    ``metrics``, distributions the new space's). Returns (copied, skipped by reason)."""
    from optuna.trial import TrialState, create_trial

    names = _metric_names(old)
    order = [names.index(m) for m in metrics]
    distributions = space.distributions()
    copied, skipped = 0, {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for trial in old.get_trials(deepcopy=False):
        if trial.state != TrialState.COMPLETE or trial.values is None:
            skip(trial.state.name.lower())
            continue
        params = dict(trial.params)
        if any(name not in distributions for name in params):
            skip("parameter not in the new space")
            continue
        try:
            space.check_point(params, "--from")
        except ConfigError:
            skip("value outside the new space")
            continue
        new.add_trial(
            create_trial(
                params=params,
                distributions={name: distributions[name] for name in params},
                values=[trial.values[i] for i in order],
                user_attrs={"warm_start_from": label, "warm_start_trial": trial.number},
            )
        )
        copied += 1
    return copied, skipped


__all__ = ["Prepared", "check_warm_start", "copy_trials", "load_earlier", "prepare"]

"""Search spaces: a trial config in which some values are search dimensions.

A search-space file is a trial config (see :mod:`study.trial.config`) plus a ``study``
section, where any value may be a *dimension*, a mapping with exactly one key:

- ``{choice: [a, b, ...]}``: one of the alternatives. An alternative may itself hold
  dimensions, which exist only when it is chosen: the space is conditional. A filter
  family choosing its own parameters reads::

      filter:
        choice:
          - delta
          - binomial-5
          - {family: firwin, taps: {int: [3, 7]}, cutoff: {uniform: [0.2, 0.6]}}
          - {family: learnable, init: {choice: [binomial-3, binomial-5]}}

- ``{uniform: [low, high]}``, ``{loguniform: [low, high]}``: a float;
- ``{int: [low, high]}`` or ``{int: [low, high, step]}``: a whole number.

Dimensions may also sit in lists, such as the band edges of a least-squares design
(``bands: [0, {uniform: [0.2, 0.45]}, {uniform: [0.55, 0.9]}, 1]``; disjoint ranges
keep every sample valid).

Spaces are sampled define-by-run (:meth:`SearchSpace.sample` asks an Optuna trial for
each dimension it meets), so only the dimensions of the chosen alternatives exist.
Parameter names are dotted paths; a dimension inside an alternative is named after it:
``model.filter`` then ``model.filter[firwin].cutoff``.

The ``study`` section (:class:`StudySettings`) says what to optimise and how.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from study.metrics.names import FAMILIES, FINAL_METRICS, TEST_METRICS, VAL_METRICS
from study.pareto.front import check_direction
from study.service.dimensions import (  # Dimension: pickled spaces name it here too
    Corner,
    Dimension,
    Fixed,
    allowed,
    allows,
    choice_label,
    find_dimensions,
    is_dimension,
    sample_value,
)
from study.service.samplers import ADAPTIVE, SAMPLERS
from study.service.scheduler_settings import (
    SchedulerSettings,
    check_budget,
    parse_scheduler,
    signal_warnings,
)
from study.trial.config import ConfigError, TrialConfig, from_mapping
from study.trial.documents import apply_override, read_yaml

FAMILY_SUFFIXES = tuple(f"_{family}" for family in FAMILIES)


MAX_GRID = 100_000


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StudySettings:
    """The ``study`` section.

    - ``name``: unique study name (Optuna study, MLflow parent run, Ray experiment);
      default: the file's stem.
    - ``objectives``: metric -> ``max`` or ``min``, any final metric a trial reports;
      its prefix names the split it is measured on: ``val_*`` (the validation split,
      needs ``data.validation``) or ``test_*`` (the test set). Adaptive samplers should
      optimise ``val_*`` (:meth:`SearchSpace.protocol_warning`).
    - ``sampler``: grid, random, tpe, nsga2 or gp; ``seed`` seeds it.
    - ``trials``: how many trials in all; ``concurrent``: at most this many at once.
    - ``cpus``, ``gpus``: resources per trial (fractions allowed).
    - ``retries``: how often a failed trial is retried (it resumes from its checkpoint).
    - ``scheduler``: early stopping (:mod:`~study.service.scheduler_settings`), e.g. ``{kind:
      mo-asha, grace: 2, eta: 3, metrics: [val_acc, val_consistency]}``; None: every
      trial runs all ``train.epochs``.
    - ``enqueue``: configurations to evaluate first, each a mapping of parameter names
      to values (``{model.filter: delta, augment.kind: none}``); parameters left out
      are sampled. Not with ``grid`` (it evaluates every point anyway).
    - ``tracking_uri``: MLflow (default ``$MLFLOW_TRACKING_URI``, else
      ``sqlite:///mlflow.db``); ``experiment``: default ``$MLFLOW_EXPERIMENT_NAME``,
      else the study name.
    - ``optuna_storage``: an RDB URL or a journal file path (default
      ``$STUDY_OPTUNA_STORAGE``, else ``<storage_path>/<name>/optuna.journal``);
      ``storage_path``: Ray's results, a folder or a URI such as ``s3://bucket/prefix``
      (default ``$STUDY_STORAGE_PATH``, else ``./ray_results``).
    """

    name: str = "study"
    objectives: Mapping[str, str] = field(
        default_factory=lambda: {"test_acc": "max", "test_consistency": "max"}
    )
    sampler: str = "tpe"
    seed: int = 0
    trials: int = 8
    concurrent: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    retries: int = 1
    scheduler: SchedulerSettings | None = None
    enqueue: tuple[Mapping[str, Any], ...] = ()
    tracking_uri: str | None = None
    experiment: str | None = None
    optuna_storage: str | None = None
    storage_path: str | None = None


class SearchSpace:
    """A parsed, validated search-space file."""

    def __init__(self, raw: Mapping[str, Any], settings: StudySettings) -> None:
        self.raw = dict(raw)
        self.settings = settings
        self.dimensions: list[Dimension] = list(find_dimensions(self.raw, ""))
        self._check()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled by Tune with the searcher: storage URLs go with their passwords
        redacted (a trial never needs them; see :mod:`study.secrets`)."""
        from dataclasses import replace

        from study.secrets import redact

        settings = self.settings
        hidden = {
            name: redact(value)
            for name in ("optuna_storage", "tracking_uri")
            if isinstance(value := getattr(settings, name), str)
        }
        state = {k: v for k, v in self.__dict__.items() if k != "_corner_cache"}
        return {**state, "settings": replace(settings, **hidden)}

    @classmethod
    def load(
        cls, path: str | Path, overrides: Sequence[str] = (), name: str | None = None
    ) -> SearchSpace:
        """Read ``path``, apply ``--set`` overrides (to the config or to ``study.*``),
        validate everything up front."""
        raw = read_yaml(path)
        for override in overrides:
            apply_override(raw, override)
        _absolute_data_paths(raw)
        return cls.parse(raw, default_name=Path(path).stem, name=name)

    @classmethod
    def parse(
        cls, raw: Mapping[str, Any], default_name: str = "study", name: str | None = None
    ) -> SearchSpace:
        """A space from a mapping such as a YAML file holds (see :meth:`document`)."""
        if not isinstance(raw, Mapping):
            raise ConfigError("space", f"expected a mapping of sections, got {type(raw).__name__}")
        raw = copy.deepcopy(dict(raw))
        study = raw.pop("study", None) or {}
        if not isinstance(study, Mapping):
            raise ConfigError("study", f"expected a mapping, got {type(study).__name__}")
        study = {"name": default_name, **study}
        if name is not None:
            study["name"] = name
        return cls(raw, _settings(study))

    def document(self) -> dict[str, Any]:
        """The whole space as one mapping, settings resolved: what ``study resume``
        reads back (:meth:`parse` of it gives an equal space)."""
        settings = asdict(self.settings)
        settings["objectives"] = dict(settings["objectives"])
        settings["enqueue"] = [dict(point) for point in settings["enqueue"]]
        if settings["scheduler"] is not None:
            settings["scheduler"]["metrics"] = dict(settings["scheduler"]["metrics"])
        return {"study": settings, **copy.deepcopy(self.raw)}

    def sample(self, trial) -> dict[str, Any]:
        """Define-by-run: the trial config (a plain mapping) for one Optuna ``trial``."""
        return sample_value(copy.deepcopy(self.raw), "", trial)

    def distributions(self) -> dict[str, Any]:
        """Every dimension as the Optuna distribution define-by-run sampling gives it
        (parameter name -> ``optuna.distributions.BaseDistribution``)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        out: dict[str, Any] = {}
        for dimension in self.dimensions:
            args = dimension.args
            if dimension.kind == "choice":
                labels = [choice_label(v, i) for i, v in enumerate(args)]
                out[dimension.name] = CategoricalDistribution(labels)
            elif dimension.kind == "int":
                low, high, step = (*args, 1)[:3]
                out[dimension.name] = IntDistribution(low, high, step=step)
            else:
                log = dimension.kind == "loguniform"
                out[dimension.name] = FloatDistribution(args[0], args[1], log=log)
        return out

    def check_point(self, point: Mapping[str, Any], at: str) -> dict[str, Any]:
        """``point`` (parameter name -> value, some parameters may be left out) checked
        against this space: every name a dimension, every value allowed by it, and the
        trial it makes (missing parameters at their low corner) a valid config. Returns
        the point; one-line :class:`ConfigError` naming ``at`` otherwise."""
        if not isinstance(point, Mapping) or not point:
            raise ConfigError(at, "give a mapping of parameter names to values")
        distributions = self.distributions()
        for name, value in point.items():
            if name not in distributions:
                known = ", ".join(sorted(distributions)) or "none (the space has no dimensions)"
                raise ConfigError(f"{at}.{name}", f"not a parameter of this space; known: {known}")
            if not allows(distributions[name], value):
                raise ConfigError(
                    f"{at}.{name}", f"{value!r} is not allowed; {allowed(distributions[name])}"
                )
        try:
            from_mapping(self.sample(Fixed(dict(point))))
        except ConfigError as error:
            raise ConfigError(error.field, f"{_problem(error)} (in {at})") from None
        return dict(point)

    def config(self, values: Mapping[str, Any]) -> TrialConfig:
        """The validated trial config of a sampled mapping."""
        return from_mapping(values)

    def grid(self) -> dict[str, list]:
        """Optuna's ``GridSampler`` search space: every dimension must be a choice of
        plain values or an integer range, none nested in an alternative."""
        grid = {}
        for dimension in self.dimensions:
            if "[" in dimension.name:
                raise ConfigError(
                    "study.sampler",
                    f"grid cannot search the conditional dimension {dimension.name}; "
                    "use random, tpe, nsga2 or gp",
                )
            if dimension.kind == "choice":
                grid[dimension.name] = [choice_label(v, i) for i, v in enumerate(dimension.args)]
            elif dimension.kind == "int":
                low, high, step = (*dimension.args, 1)[:3]
                grid[dimension.name] = list(range(low, high + 1, step))
            else:
                raise ConfigError(
                    "study.sampler",
                    f"grid needs choices or int ranges; {dimension.name} is {dimension.kind}",
                )
        return grid

    def data_sources(self) -> set[str]:
        """Every ``data.source`` a trial of this space may read (each alternative once)."""
        return {config.data.source for config in self._corner_configs()}

    def simulated(self) -> bool:
        """Whether any trial of this space is simulated (``simulate.enabled``)."""
        return any(config.simulate.enabled for config in self._corner_configs())

    def grid_size(self) -> int:
        """How many trials ``grid`` runs: the product of the dimensions' sizes."""
        return math.prod(len(values) for values in self.grid().values())

    def budget(self) -> int:
        """``train.epochs``, one value for every trial: the early-stopping budget. A
        searched ``train.epochs`` (or alternatives with different ones) is refused while
        ``study.scheduler`` is set: rungs compare trials at the same epochs."""
        for dimension in self.dimensions:
            if re.sub(r"\[[^\]]*\]", "", dimension.name) == "train.epochs":
                raise ConfigError(
                    "study.scheduler",
                    f"train.epochs is searched ({dimension.name}); early stopping compares "
                    "trials at the same epochs and needs one budget per study: fix "
                    "train.epochs, or set study.scheduler: none",
                )
        epochs = sorted({config.train.epochs for config in self._corner_configs()})
        if len(epochs) > 1:
            raise ConfigError(
                "study.scheduler",
                f"train.epochs differs between alternatives ({epochs}); early stopping "
                "needs one budget per study",
            )
        return epochs[0]

    def validation_images(self) -> int:
        """``data.validation`` of the trials, the smallest where alternatives differ
        (the early-stopping noise margin is then the widest: it errs towards keeping)."""
        return min(config.data.validation for config in self._corner_configs())

    def _corner_configs(self) -> list[TrialConfig]:
        """The trial configs of the space's corners (each alternative of every choice
        once, the ends of every range), validated once and kept (not pickled)."""
        if "_corner_cache" not in self.__dict__:
            self.__dict__["_corner_cache"] = [from_mapping(self.sample(c)) for c in _corners(self)]
        return self.__dict__["_corner_cache"]

    def _check(self) -> None:
        settings = self.settings
        for index, point in enumerate(settings.enqueue):
            self.check_point(point, f"study.enqueue[{index}]")
        for metric, direction in settings.objectives.items():
            if metric not in FINAL_METRICS:
                raise ConfigError(
                    f"study.objectives.{metric}",
                    f"not a metric a trial reports; allowed: {', '.join(FINAL_METRICS)}",
                )
            check_direction(f"study.objectives.{metric}", direction, ConfigError)
        if settings.sampler == "grid" and self.grid_size() > MAX_GRID:
            sizes = " x ".join(str(len(v)) for v in self.grid().values())
            raise ConfigError(
                "study.sampler",
                f"grid of {sizes} = {self.grid_size()} trials is over {MAX_GRID}; "
                "shrink the choices or use random, tpe, nsga2 or gp",
            )
        # Every alternative must make a valid trial: sample each corner once.
        on_validation = [f"study.objectives.{m}" for m in settings.objectives if m in VAL_METRICS]
        if settings.scheduler is not None:
            on_validation += [
                f"study.scheduler.metrics.{m}"
                for m in settings.scheduler.metrics
                if m in VAL_METRICS
            ]
        try:
            configs = self._corner_configs()
        except ConfigError as error:
            raise ConfigError(error.field, f"{_problem(error)} (in a sampled trial)") from None
        for config in configs:
            missing = [
                m
                for m in settings.objectives
                if m.endswith(FAMILY_SUFFIXES) and m.rsplit("_", 1)[1] not in config.eval.families
            ]
            if missing:
                raise ConfigError(
                    f"study.objectives.{missing[0]}",
                    f"needs the {missing[0].rsplit('_', 1)[1]} family in eval.families "
                    f"(a sampled trial has {list(config.eval.families)})",
                )
            if on_validation and config.data.validation == 0:
                raise ConfigError(
                    on_validation[0],
                    "is measured on the validation split, but data.validation is 0; hold "
                    "out training images with data.validation: N",
                )
        if settings.scheduler is not None:
            check_budget(settings.scheduler, self.budget())

    def warnings(self, trials: int) -> list[str]:
        """What ``study run`` says before it starts (one line each): the protocol's
        warning, the sampler's cost at ``trials`` trials, and rungs that would rank on
        noise (:func:`~study.service.scheduler_settings.signal_warnings`)."""
        from study.service.samplers import cost_warning

        found = [self.protocol_warning(), cost_warning(self.settings.sampler, trials)]
        if self.settings.scheduler is not None:
            found += signal_warnings(
                self.settings.scheduler, self.budget(), self.validation_images()
            )
        return [warning for warning in found if warning]

    def protocol_warning(self) -> str | None:
        """One line when an adaptive sampler chooses by test-set metrics (its front is
        then optimistically biased and no untouched number is left), else None."""
        settings = self.settings
        on_test = [m for m in settings.objectives if m in TEST_METRICS]
        if settings.sampler not in ADAPTIVE or not on_test:
            return None
        return (
            f"the {settings.sampler} sampler optimises test-set metrics ({', '.join(on_test)}): "
            "it selects by the test set; hold out data.validation: N and optimise val_acc, "
            "val_consistency instead"
        )


def _absolute_data_paths(raw: dict[str, Any]) -> None:
    """A relative dataset path in ``data.source`` (or in its choices) made absolute
    against the folder ``study`` runs in: trials run in folders of their own, often on
    other machines, where a relative path would name nothing."""
    from study.data.names import NAMED_SOURCES
    from study.paths import default_root

    data = raw.get("data")
    if not isinstance(data, dict):
        return

    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or value in NAMED_SOURCES:
            return value
        path = Path(value).expanduser()
        return value if path.is_absolute() else str((default_root() / path).resolve())

    source = data.get("source")
    if is_dimension(source) and next(iter(source)) == "choice":
        choices = source["choice"]
        if isinstance(choices, list):
            source["choice"] = [absolute(v) for v in choices]
    elif "source" in data:
        data["source"] = absolute(source)


def _settings(raw: Mapping[str, Any]) -> StudySettings:
    known = {f.name: f for f in fields(StudySettings)}
    values = {}
    for key, value in raw.items():
        at = f"study.{key}"
        if key not in known:
            raise ConfigError(at, f"unknown key; allowed: {', '.join(known)}")
        values[key] = value
    scheduler = values.pop("scheduler", None)
    settings = StudySettings(**values)
    if not isinstance(settings.name, str) or not _NAME.match(settings.name):
        raise ConfigError(
            "study.name", f"{settings.name!r}: use letters, digits, '_', '-', '.' (max 100)"
        )
    if (
        not isinstance(settings.objectives, Mapping)
        or not settings.objectives
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in _items(settings))
    ):
        raise ConfigError("study.objectives", "give a mapping metric: max|min, e.g. test_acc: max")
    if not isinstance(settings.sampler, str) or settings.sampler not in SAMPLERS:
        raise ConfigError(
            "study.sampler", f"{settings.sampler!r} is not allowed; allowed: {', '.join(SAMPLERS)}"
        )
    _whole("study.seed", settings.seed, 0, 2**32 - 1)
    _whole("study.trials", settings.trials, 1, 10_000_000)
    _whole("study.concurrent", settings.concurrent, 1, 100_000)
    _whole("study.retries", settings.retries, 0, 1000)
    for name, most in (("cpus", 10_000), ("gpus", 1_000)):
        value = getattr(settings, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= most  # False for NaN too
        ):
            raise ConfigError(f"study.{name}", f"{value!r} must be a number in [0, {most}]")
    if settings.cpus == 0 and settings.gpus == 0:
        raise ConfigError("study.cpus", "a trial needs some resource: cpus or gpus > 0")
    for name in ("tracking_uri", "experiment", "optuna_storage", "storage_path"):
        value = getattr(settings, name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"study.{name}", f"expected text, got {value!r}")
    enqueue = settings.enqueue
    if not isinstance(enqueue, list | tuple) or not all(isinstance(p, Mapping) for p in enqueue):
        raise ConfigError("study.enqueue", "give a list of mappings parameter -> value")
    if enqueue and settings.sampler == "grid":
        raise ConfigError(
            "study.enqueue", "grid evaluates every point anyway; enqueue is for other samplers"
        )
    scheduled = parse_scheduler(scheduler, settings.objectives)
    return replace(settings, scheduler=scheduled, enqueue=tuple(dict(p) for p in enqueue))


def _items(settings: StudySettings) -> list[tuple[Any, Any]]:
    return list(settings.objectives.items())


def _whole(at: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(at, f"{value!r} must be a whole number in [{low}, {high}]")


def _corners(space: SearchSpace):
    widest = max([len(d.args) for d in space.dimensions if d.kind == "choice"] + [2], default=2)
    return [Corner(pick) for pick in range(widest)]


def _problem(error: ConfigError) -> str:
    return str(error).removeprefix(f"{error.field}: ")

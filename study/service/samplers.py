"""Optuna's side of a study: the seeded sampler a space names, and its storage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import optuna


class SearchSpace(Protocol):
    """What a sampler needs of a search space (a :class:`study.service.space.SearchSpace`):
    its ``study:`` settings (``sampler``, ``seed``) and, for the grid sampler, its grid."""

    settings: Any

    def grid(self) -> dict[str, list[Any]]: ...


def _grid(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GridSampler(space.grid(), seed=seed)


def _random(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _nsga2(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


def _gp(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    # Conditional dimensions fall back to independent (random) sampling: expected.
    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


#: Sampler name (``study.sampler``) -> factory ``(space, seed) -> optuna sampler``.
SAMPLERS: dict[str, Callable[[Any, int], Any]] = {
    "grid": _grid,
    "random": _random,
    "tpe": _tpe,
    "nsga2": _nsga2,
    "gp": _gp,
}
#: Samplers that learn from the trials so far (their choices depend on the objectives).
ADAPTIVE = ("tpe", "nsga2", "gp")
#: Optuna's ask + tell per trial on PostgreSQL, in seconds, at 100 and 1,000 complete
#: trials of the filter-design space (bench/scale.py, 2-core machine; docs/SCALE.md).
MEASURED_ASK_TELL_S = {"gp": (0.21, 2.2)}
#: Above this many trials a sampler whose cost explodes gets a warning up front.
EXPLODES_PAST = {"gp": 300}


def cost_warning(sampler_name: str, trials: int) -> str | None:
    """One line when ``trials`` is past where ``sampler_name``'s own cost explodes (GP
    refits a Gaussian process to every trial so far, cubic in their number), else None.

    >>> cost_warning("tpe", 5000) is None and cost_warning("gp", 100) is None
    True
    >>> cost_warning("gp", 1000).split(":")[0]
    'the gp sampler refits to every trial so far'
    """
    limit = EXPLODES_PAST.get(sampler_name)
    if limit is None or trials <= limit:
        return None
    at_100, at_1000 = MEASURED_ASK_TELL_S[sampler_name]
    return (
        f"the {sampler_name} sampler refits to every trial so far: measured {at_100:.1f} s "
        f"per trial at 100 trials and {at_1000:.1f} s at 1,000 (docs/SCALE.md), each "
        f"holding Tune's loop while it thinks; for {trials} trials prefer tpe or nsga2 "
        "(under 0.1 s at 1,000)"
    )


def sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler the space asks for."""
    return SAMPLERS[space.settings.sampler](space, space.settings.seed)


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (``postgresql://``, ``sqlite:///``, ...) or a journal file path. An RDB
    storage pickles (Tune saves the searcher with every snapshot) with its password
    redacted, and gets it back from the environment when unpickled
    (:func:`study.secrets.reveal`)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        from study.service.storage import RedactingRDBStorage

        return RedactingRDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))

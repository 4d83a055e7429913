"""Optuna's side of a study: the seeded sampler a space names, and its storage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from study.service.space import SearchSpace


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


def sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler the space asks for."""
    return SAMPLERS[space.settings.sampler](space, space.settings.seed)


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (``postgresql://``, ``sqlite:///``, ...) or a journal file path. An RDB
    storage pickles (Tune saves the searcher with every snapshot) with its password
    redacted, and gets it back from the environment when unpickled
    (:func:`study.service.secrets.reveal`)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        from study.service.storage import RedactingRDBStorage

        return RedactingRDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))

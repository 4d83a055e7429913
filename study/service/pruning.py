"""Trials stopped at a rung reach Optuna as PRUNED, with the rung decision attached.

When a scheduler stops a trial, Ray Tune calls ``search_alg.on_trial_complete(trial_id,
result=<the rung result>)``. Ray's ``OptunaSearch`` then tells Optuna COMPLETE with the
rung's half-trained values, or, in a multi-objective study where the rung result lacks
the final objectives, fails to tell at all and leaves the Optuna trial RUNNING.
:class:`PruningSearcher` sits between Tune and ``OptunaSearch`` (public ``Searcher``
API, like Ray's ``ConcurrencyLimiter``): for a trial the scheduler stopped it first
records the decision as user attributes of the Optuna trial, then passes
``result=None``, which makes ``OptunaSearch`` tell PRUNED itself. Samplers never see a
pruned trial's values as final: TPE counts pruned trials among the worse group,
NSGA-II and GP read only COMPLETE ones.

User attributes of a pruned Optuna trial (set while it is still RUNNING: Optuna refuses
to change a finished trial): ``stopped_at_epoch`` (epochs it trained), ``rung`` (the
rung's epoch) and ``rung_decision`` (``bracket``, ``values`` per metric, ``rank``,
``front``, ``population``, ``quota``), plus ``ray_trial_id``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

if TYPE_CHECKING:
    import optuna

    from study.service.scheduler import MultiObjectiveASHA, RungDecision

logger = logging.getLogger(__name__)


class PruningSearcher(Searcher):
    """Wraps a searcher (``OptunaSearch``): completions of trials that ``scheduler``
    stopped reach it with ``result=None`` (PRUNED) after the rung decision was written
    to the Optuna trial ``study_name`` in ``storage`` (an URL or journal path, as
    :func:`study.service.samplers.optuna_storage` reads it) as user attributes.

    The Optuna trial of a Tune trial is found by the ``optuna_trial`` number in the
    config the wrapped searcher suggested (:class:`~study.service.trainable.DefineByRun`
    puts it there); the mapping is this wrapper's saved state, so it survives
    ``Tuner.restore``. The scheduler is not part of that state: it comes back from
    Tune's ``tuner.pkl`` in one pickle with the ``TuneConfig`` scheduler.
    """

    def __init__(
        self, searcher: Searcher, scheduler: MultiObjectiveASHA, storage: str, study_name: str
    ) -> None:
        self.searcher = searcher
        self.scheduler = scheduler
        self.storage = storage
        self.study_name = study_name
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._optuna: optuna.storages.BaseStorage | None = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_optuna": None}  # a storage holds connections and locks

    # -- what Tune's SearchGenerator saves and restores for wrappers --------------------
    def get_state(self) -> dict[str, Any]:
        return {"numbers": dict(self.numbers)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.numbers = dict(state["numbers"])

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    # -- delegated ------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec):
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict) and isinstance(config.get("optuna_trial"), int):
            self.numbers[trial_id] = config["optuna_trial"]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """A trial the scheduler stopped: its decision onto the Optuna trial, then
        ``result=None`` so that the wrapped searcher tells PRUNED."""
        if not error and self.scheduler.stopped(trial_id):
            decision = self.scheduler.stopped_by(trial_id)
            epoch = (result or {}).get("epoch", decision.rung if decision else None)
            try:
                self._annotate(trial_id, decision, epoch)
            except Exception as problem:  # the trial is still pruned; say what is missing
                logger.warning(
                    "trial %s: rung decision not recorded in Optuna: %s", trial_id, problem
                )
            result = None
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # -- Optuna ---------------------------------------------------------------------------
    def _annotate(self, trial_id: str, decision: RungDecision | None, epoch: Any) -> None:
        from optuna.trial import TrialState

        from study.service.samplers import optuna_storage

        number = self.numbers.get(trial_id)
        if number is None or decision is None:
            raise LookupError("no Optuna trial number or decision for it")
        if self._optuna is None:
            self._optuna = optuna_storage(self.storage)
        storage = self._optuna
        study_id = storage.get_study_id_from_name(self.study_name)
        optuna_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        if storage.get_trial(optuna_id).state != TrialState.RUNNING:
            return  # told already (a decision replayed after a restore)
        names = list(self.scheduler.metrics)
        attributes = {
            "ray_trial_id": trial_id,
            "stopped_at_epoch": int(epoch) if epoch is not None else decision.rung,
            "rung": decision.rung,
            "rung_decision": {
                "bracket": decision.bracket,
                "values": dict(zip(names, decision.values, strict=True)),
                "rank": decision.rank,
                "front": decision.front,
                "population": decision.population,
                "quota": decision.quota,
            },
        }
        for key, value in attributes.items():
            storage.set_trial_user_attr(optuna_id, key, value)

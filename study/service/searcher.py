"""Trials stopped at a rung reach Optuna as PRUNED, with the rung decision attached.

When a scheduler stops a trial, Ray Tune calls ``search_alg.on_trial_complete(trial_id,
result=<the rung result>)``. Ray's ``OptunaSearch`` then tells Optuna COMPLETE with the
rung's half-trained values, or, in a multi-objective study where the rung result lacks
the final objectives, fails to tell at all and leaves the Optuna trial RUNNING.
:class:`PruningSearcher` sits between Tune and ``OptunaSearch`` (public ``Searcher``
API, like Ray's ``ConcurrencyLimiter``): for a trial the scheduler stopped it records
the decision as user attributes of the Optuna trial, then passes ``result=None``, which
makes ``OptunaSearch`` tell PRUNED itself. Samplers never see a pruned trial's values
as final: TPE counts pruned trials among the worse group, NSGA-II and GP read only
COMPLETE ones.

When: at Tune's next experiment snapshot, not at once. Tune writes a snapshot's trial
states first, then asks its searcher wrappers for their state (:meth:`get_state`), then
saves the searcher and the callbacks' states (the scheduler's decisions). Telling Optuna
from :meth:`get_state` means Optuna never hears of a stop that the snapshot on disk does
not hold: a driver killed between a stop and the next snapshot leaves the Optuna trial
RUNNING, ``study resume`` fails it as orphaned (a grid offers its point again) or Tune
resumes the trial and the scheduler stops it again, and the decisions come out as in an
uninterrupted run. Told at once, the Optuna trial would be PRUNED while the restored
experiment forgot the stop, and the grid would never offer that point again.

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

    from study.service.scheduler import MultiObjectiveASHA

logger = logging.getLogger(__name__)
#: How many configurations in a row the sampler may give that no trial can run.
MAX_INVALID_SAMPLES = 100
#: The result key (and Optuna user attribute) carrying a trial's MLflow run id.
MLFLOW_RUN_ID = "mlflow_run_id"


class PruningSearcher(Searcher):
    """Wraps a searcher (``OptunaSearch``): a trial that ``scheduler`` (if any) stopped reaches it
    with ``result=None`` (PRUNED) at Tune's next experiment snapshot, after its rung
    decision was written to the Optuna trial (study ``study_name`` in ``storage``, an
    URL or journal path as :func:`study.service.samplers.optuna_storage` reads it) as
    user attributes.

    The Optuna trial of a Tune trial is found by the ``optuna_trial`` number in the
    config the wrapped searcher suggested (:class:`~study.service.trainable.DefineByRun`
    puts it there); the mapping is this wrapper's saved state, so it survives
    ``Tuner.restore``. The scheduler is not part of that state: it comes back from
    Tune's ``tuner.pkl`` in one pickle with the ``TuneConfig`` scheduler.
    """

    def __init__(
        self,
        searcher: Searcher,
        scheduler: MultiObjectiveASHA | None,
        storage: str,
        study_name: str,
    ) -> None:
        self.searcher = searcher
        self.scheduler = scheduler
        self.storage = storage
        self.study_name = study_name
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self.pending: dict[str, dict[str, Any]] = {}  # stopped, not told yet: epoch, decision
        self._optuna: optuna.storages.BaseStorage | None = None
        self.linked: set[str] = set()  # trials whose Optuna trial knows their MLflow run
        self.aliases: dict[str, str] = {}  # Tune trial id -> the id it was resampled under
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_optuna": None}  # a storage holds connections and locks

    # -- what Tune's SearchGenerator saves and restores for wrappers --------------------
    def get_state(self) -> dict[str, Any]:
        """Called by Tune's experiment snapshot after it wrote the trials' states: the
        stops those states hold are told to Optuna now (see the module notes)."""
        self.flush()
        return {"numbers": dict(self.numbers), "aliases": dict(self.aliases)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.numbers = dict(state["numbers"])
        self.aliases = dict(state.get("aliases", {}))
        self.pending = {}

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
        """The wrapped searcher's next configuration. One it samples that no trial can
        run (``firwin`` with 2 taps and a Hann window has no DC gain: only a sample
        shows it) is told to Optuna as FAIL, with the reason as user attribute
        ``invalid_config``, and sampled again, so the study keeps its planned number of
        trials and the sampler learns to avoid the region."""
        inner = trial_id
        for attempt in range(1, MAX_INVALID_SAMPLES + 1):
            config = self.searcher.suggest(inner)
            problem = invalid_config(config)
            if problem is None:
                break
            number = config.get("optuna_trial")
            logger.warning(
                "trial %s: sampled configuration cannot run (%s); Optuna trial %s told FAIL,"
                " sampling again",
                trial_id,
                problem,
                number,
            )
            self._mark_invalid(number, problem)
            self._complete(inner, result=None, error=True)  # FAIL
            inner = f"{trial_id}~resampled{attempt}"
        else:
            raise RuntimeError(
                f"the sampler gave {MAX_INVALID_SAMPLES} configurations in a row that no "
                f"trial can run; the last: {problem}"
            )
        if inner != trial_id:
            self.aliases[trial_id] = inner
        if isinstance(config, dict) and isinstance(config.get("optuna_trial"), int):
            self.numbers[trial_id] = config["optuna_trial"]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        run_id = result.get(MLFLOW_RUN_ID)
        if run_id and trial_id not in self.linked:
            self.linked.add(trial_id)
            try:
                optuna_id, storage = self._optuna_trial(trial_id)
                storage.set_trial_user_attr(optuna_id, MLFLOW_RUN_ID, str(run_id))
            except Exception as problem:  # a link is a convenience: never stop a study
                logger.warning(
                    "trial %s: MLflow run id not recorded in Optuna: %s", trial_id, problem
                )
        self.searcher.on_trial_result(self.aliases.get(trial_id, trial_id), result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """A trial the scheduler stopped waits for the next snapshot (:meth:`flush`);
        any other completion goes straight to the wrapped searcher."""
        stopped = not error and self.scheduler is not None
        decision = self.scheduler.stopped_by(trial_id) if stopped else None
        if decision is None:
            self._complete(self.aliases.get(trial_id, trial_id), result=result, error=error)
            return
        epoch = (result or {}).get("epoch")
        self.pending[trial_id] = {
            "epoch": int(epoch) if isinstance(epoch, int | float) else decision.rung,
            "decision": decision.as_dict(),
        }

    def flush(self) -> list[str]:
        """Tell Optuna PRUNED, decision attached, for every stopped trial not told yet;
        returns their Tune trial ids."""
        told = []
        for trial_id, entry in list(self.pending.items()):
            del self.pending[trial_id]
            try:
                self._annotate(trial_id, entry)
            except Exception as problem:  # the trial is still pruned; say what is missing
                logger.warning(
                    "trial %s: rung decision not recorded in Optuna: %s", trial_id, problem
                )
            try:
                self._complete(self.aliases.get(trial_id, trial_id), result=None)  # PRUNED
            except Exception as problem:  # never break Tune's snapshot
                logger.warning("trial %s: not told to Optuna as pruned: %s", trial_id, problem)
                continue
            told.append(trial_id)
        return told

    def _complete(self, inner: str, result: dict | None, error: bool = False) -> None:
        """Tell the wrapped searcher, then drop the trial from ``OptunaSearch``'s table of
        Optuna trials: it never reads a told trial again, but pickles the table into every
        experiment snapshot, which made each snapshot grow with the study."""
        self.searcher.on_trial_complete(inner, result=result, error=error)
        table = getattr(self.searcher, "_ot_trials", None)
        if isinstance(table, dict):
            table.pop(inner, None)

    # -- Optuna ---------------------------------------------------------------------------
    def _mark_invalid(self, number: Any, problem: str) -> None:
        """Write why a sampled configuration cannot run on its Optuna trial."""
        if not isinstance(number, int):
            return
        try:
            storage = self._storage()
            study_id = storage.get_study_id_from_name(self.study_name)
            optuna_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            storage.set_trial_user_attr(optuna_id, "invalid_config", problem[:500])
        except Exception as error:  # the reason is a convenience: never stop a study
            logger.warning("Optuna trial %s: reason not recorded: %s", number, error)

    def _storage(self) -> optuna.storages.BaseStorage:
        from study.service.samplers import optuna_storage

        if self._optuna is None:
            from study.secrets import reveal

            self._optuna = optuna_storage(reveal(self.storage, "study.optuna_storage"))
        return self._optuna

    def _optuna_trial(self, trial_id: str) -> tuple[int, optuna.storages.BaseStorage]:
        """The Optuna trial id of a Tune trial, and the storage that holds it."""
        number = self.numbers.get(trial_id)
        if number is None:
            raise LookupError("no Optuna trial number for it")
        storage = self._storage()
        study_id = storage.get_study_id_from_name(self.study_name)
        return storage.get_trial_id_from_study_id_trial_number(study_id, number), storage

    def _annotate(self, trial_id: str, entry: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        optuna_id, storage = self._optuna_trial(trial_id)
        if storage.get_trial(optuna_id).state != TrialState.RUNNING:
            return  # told already (a decision replayed after a restore)
        decision = entry["decision"]
        names = list(self.scheduler.metrics)
        attributes = {
            "ray_trial_id": trial_id,
            "stopped_at_epoch": entry["epoch"],
            "rung": decision["rung"],
            "rung_decision": {
                "bracket": decision["bracket"],
                "values": dict(zip(names, decision["values"], strict=True)),
                **{
                    key: decision[key]
                    for key in ("rank", "front", "population", "quota", "surely_better")
                },
            },
        }
        for key, value in attributes.items():
            storage.set_trial_user_attr(optuna_id, key, value)


def invalid_config(config: Any) -> str | None:
    """Why a suggested configuration (``{"trial": {...}, ...}``) cannot run, or None."""
    from study.trial.config import from_mapping

    if not isinstance(config, dict) or not isinstance(config.get("trial"), dict):
        return None  # not one of ours (Tune's own markers): pass it on
    try:
        from_mapping(config["trial"])
    except ValueError as error:  # ConfigError, FilterSpecError: one line naming the field
        return str(error).split("\n", 1)[0]
    return None

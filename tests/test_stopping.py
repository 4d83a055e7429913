"""Early stopping wired into a study, piece by piece on real components (no Ray cluster):

- ``study.scheduler`` in a space file: the syntax, its defaults, one-line errors, test
  metrics and a searched ``train.epochs`` refused, the document round trip;
- :class:`~study.service.searcher.PruningSearcher` around a real ``OptunaSearch`` on real
  Optuna storages (journal file and SQLite): a trial the MO-ASHA scheduler stopped ends
  PRUNED with its rung decision as user attributes, a kept one COMPLETE; its state goes
  through Tune's own searcher save/restore;
- MLflow readers on a real SQLite store: a child run closed by
  :func:`~study.service.tracking.mark_pruned` is counted "stopped early" by ``study
  status``, left out of ``study pareto`` and of the parent's live front.
"""

from __future__ import annotations

import io
import pickle

import mlflow
import optuna
import pytest
import yaml
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.search_generator import SearchGenerator

from study.mlflow_layout import PRUNED_TAG, STOPPED_TAG
from study.service.samplers import optuna_storage
from study.service.scheduler import MultiObjectiveASHA
from study.service.scheduler_settings import (
    PER_EPOCH,
    SchedulerSettings,
    build_scheduler,
    default_metrics,
)
from study.service.searcher import PruningSearcher, invalid_config
from study.service.space import SearchSpace
from study.service.storage import SnapshotCache, cached
from study.service.trainable import DefineByRun
from study.trial.config import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = """
study:
  objectives: {val_acc: max, val_consistency: max}
  sampler: random
  trials: 4
model:
  name: vgg11_bn
  width: 0.125
  filter: {choice: [delta, binomial-3]}
data: {source: shapes, train_images: 64, test_images: 16, validation: 16}
train: {epochs: 9, lr: {choice: [0.05, 0.01]}}
device: cpu
"""


def space_with(scheduler, text: str = SPACE, **study) -> SearchSpace:
    raw = yaml.safe_load(text)
    raw["study"].update(study)
    if scheduler is not ...:
        raw["study"]["scheduler"] = scheduler
    return SearchSpace.parse(raw, default_name="stopping")


# --- the space file ------------------------------------------------------------------------


def test_scheduler_syntax_and_defaults():
    assert space_with(...).settings.scheduler is None
    assert space_with(None).settings.scheduler is None
    assert space_with("none").settings.scheduler is None
    plain = space_with("mo-asha").settings.scheduler
    # without metrics: val_acc is ranked by the epoch's mean training loss at the rungs
    assert plain == SchedulerSettings(
        kind="mo-asha",
        metrics={"train_loss": "min", "val_consistency": "max"},
        grace=1,
        eta=3,
        confidence=0.0,
    )
    written = space_with(
        {"kind": "mo-asha", "grace": 2, "eta": 2, "metrics": ["val_consistency", "train_loss"]}
    ).settings.scheduler
    # a list takes directions from the objectives, else the metric's natural one
    assert dict(written.metrics) == {"val_consistency": "max", "train_loss": "min"}
    assert (written.grace, written.eta, written.brackets) == (2, 2, 1)
    assert (
        written.describe()
        == "mo-asha grace=2 eta=2 brackets=1 confidence=0 val_consistency:max,train_loss:min"
    )
    mapping = space_with({"metrics": {"val_acc_shift": "max"}}).settings.scheduler
    assert dict(mapping.metrics) == {"val_acc_shift": "max"}
    assert space_with("mo-asha").budget() == 9
    assert plain.rungs(9) == [1, 3]


def test_default_rung_metrics_rank_snapshot_accuracies_by_the_training_loss():
    assert default_metrics({"val_acc_shift": "max", "val_loss": "min"}) == {"train_loss": "min"}
    assert default_metrics({"val_consistency": "max", "train_loss": "min"}) == {
        "val_consistency": "max",
        "train_loss": "min",
    }
    # given metrics are taken as written
    written = space_with({"metrics": ["val_acc", "val_consistency"]}).settings.scheduler
    assert dict(written.metrics) == {"val_acc": "max", "val_consistency": "max"}
    assert PER_EPOCH["val_loss"] == "min" and PER_EPOCH["val_acc"] == "max"


def test_study_run_warns_of_rungs_that_rank_on_noise():
    quiet = space_with("mo-asha", text=SPACE.replace("validation: 16", "validation: 1000"))
    assert not [w for w in quiet.warnings(8) if "scheduler" in w or "validation" in w]
    snapshot = space_with({"metrics": ["val_acc", "val_consistency"]})
    warnings = snapshot.warnings(8)
    assert any(
        w.startswith("study.scheduler.metrics: val_acc at the first rung (epoch 1 of 9)")
        for w in warnings
    ), warnings
    late = space_with({"metrics": ["val_acc"], "grace": 5})
    assert not any("first rung" in w for w in late.warnings(8))
    small = [w for w in space_with("mo-asha").warnings(8) if w.startswith("data.validation")]
    assert small == [
        "data.validation: 16 images: at a rung, val_consistency values of 0.9 closer than "
        "0.212 are within two standard errors; hold out at least 288 images for rungs that "
        "separate such trials, or set study.scheduler.confidence: 2 to stop only trials "
        "behind by more than the noise"
    ]
    assert all("\n" not in w for w in warnings + small)


def test_the_noise_margin_reaches_the_scheduler():
    settings = space_with({"confidence": 1.5}).settings.scheduler
    assert settings.confidence == 1.5 and "confidence=1.5" in settings.describe()
    scheduler = build_scheduler(settings, 9, validation_images=250)
    assert scheduler.get_state()["settings"]["confidence"] == 1.5
    assert scheduler.get_state()["settings"]["validation_images"] == 250
    # no validation split: no margin (rank alone), whatever the setting
    unsplit = build_scheduler(settings, 9, validation_images=0)
    assert unsplit.get_state()["settings"]["confidence"] == 0.0


def test_scheduler_survives_the_document_round_trip():
    space = space_with({"grace": 2, "metrics": ["val_acc"]})
    again = SearchSpace.parse(yaml.safe_load(yaml.safe_dump(space.document())))
    assert again.settings == space.settings
    assert again.settings.scheduler.metrics == {"val_acc": "max"}


@pytest.mark.parametrize(
    ("scheduler", "overrides", "message"),
    [
        ({"kind": "asha"}, {}, "study.scheduler.kind: 'asha' is not allowed; allowed: mo-asha"),
        ({"grace": 0}, {}, "study.scheduler.grace: 0 must be a whole number >= 1"),
        ({"eta": 1.5}, {}, "study.scheduler.eta: 1.5 must be a whole number >= 2"),
        ({"brackets": True}, {}, "study.scheduler.brackets: True must be a whole number >= 1"),
        ({"rungs": 3}, {}, "study.scheduler.rungs: unknown key; allowed: kind, metrics,"),
        ({"confidence": -1}, {}, "study.scheduler.confidence: -1 must be in [0, 5]"),
        ({"confidence": "high"}, {}, "study.scheduler.confidence: 'high' must be a number"),
        ([1, 2], {}, "study.scheduler: [1, 2]: give a mapping such as"),
        ({"metrics": []}, {}, "study.scheduler.metrics: empty"),
        ({"metrics": [3]}, {}, "study.scheduler.metrics: [3]: give a list"),
        ({"metrics": {"val_acc": "up"}}, {}, "study.scheduler.metrics.val_acc: 'up'; use max"),
        ({"metrics": ["lr"]}, {}, "study.scheduler.metrics.lr: not a per-epoch metric"),
        # a trial measures test metrics once, at the end: refused, never silently ignored
        (
            {"metrics": ["test_acc", "val_acc"]},
            {},
            "study.scheduler.metrics.test_acc: is measured once, at the end of a trial, on "
            "the test set",
        ),
        (
            "mo-asha",
            {"objectives": {"test_acc": "max", "test_consistency": "max"}},
            "study.scheduler.metrics: not given, and the objectives test_acc, test_consistency "
            "are not measured every epoch",
        ),
        (
            {"grace": 9},
            {},
            "study.scheduler.grace: the first rung is epoch 9, not below train.epochs = 9",
        ),
        (
            {"grace": 3, "eta": 3, "brackets": 2},
            {},
            "study.scheduler.grace: the first rung of bracket 1 is epoch 9",
        ),
    ],
)
def test_bad_schedulers_are_one_line_errors(scheduler, overrides, message):
    with pytest.raises(ConfigError) as error:
        space_with(scheduler, **overrides)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_a_searched_budget_is_refused():
    text = SPACE.replace("epochs: 9", "epochs: {int: [6, 12]}")
    assert space_with(..., text).settings.scheduler is None  # fine without early stopping
    with pytest.raises(ConfigError, match=r"^study.scheduler: train.epochs is searched"):
        space_with("mo-asha", text)
    alternatives = SPACE.replace(
        "train: {epochs: 9, lr: {choice: [0.05, 0.01]}}",
        "train: {choice: [{epochs: 9, lr: 0.05}, {epochs: 12, lr: 0.01}]}",
    )
    with pytest.raises(
        ConfigError, match=r"train.epochs differs between alternatives \(\[9, 12\]\)"
    ):
        space_with("mo-asha", alternatives)


def test_validation_metrics_need_a_validation_split():
    text = SPACE.replace("validation: 16", "validation: 0").replace(
        "{val_acc: max, val_consistency: max}", "{test_acc: max, test_consistency: max}"
    )
    with pytest.raises(ConfigError, match=r"^study.scheduler.metrics.val_acc: is measured on the"):
        space_with({"metrics": ["val_acc"]}, text)
    assert space_with({"metrics": ["train_loss"]}, text).settings.scheduler is not None


def test_build_scheduler_uses_the_settings_and_budget():
    settings = space_with({"grace": 2, "eta": 2}).settings.scheduler
    scheduler = build_scheduler(settings, 9)
    assert isinstance(scheduler, MultiObjectiveASHA)
    assert scheduler.metrics == {"train_loss": "min", "val_consistency": "max"}
    assert scheduler.rung_epochs() == [2, 4, 8]
    with pytest.raises(ConfigError, match=r"not below train\.epochs = 2"):
        build_scheduler(settings, 2)


# --- Optuna: stopped trials are PRUNED -------------------------------------------------------

METRICS = {"val_acc": "max", "val_consistency": "max"}


def rung(epoch: int, acc: float, consistency: float) -> dict:
    return {"epoch": epoch, "val_acc": acc, "val_consistency": consistency, "complete": False}


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "optuna.journal")
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def searcher_for(space: SearchSpace, url: str, scheduler: MultiObjectiveASHA):
    search = OptunaSearch(
        space=DefineByRun(space, {}),
        metric=list(METRICS),
        mode=list(METRICS.values()),
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="stopping",
        storage=cached(optuna_storage(url)),  # as the runner builds it
    )
    return PruningSearcher(search, scheduler, url, "stopping")


def test_stopped_trials_are_pruned_in_optuna_with_their_rung_decision(storage_url):
    space = space_with("mo-asha")
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=9)
    searcher = searcher_for(space, storage_url, scheduler)
    trials = [Trial("__fake", trial_id=f"stop_{i:05d}", stub=True) for i in range(3)]
    configs = [searcher.suggest(t.trial_id) for t in trials]
    assert [c["optuna_trial"] for c in configs] == [0, 1, 2]
    assert searcher.numbers == {t.trial_id: i for i, t in enumerate(trials)}
    for t in trials:
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, trials[0], rung(1, 0.5, 0.5)) == "CONTINUE"
    assert scheduler.on_trial_result(None, trials[1], rung(1, 0.4, 0.4)) == "STOP"
    searcher.on_trial_complete(trials[1].trial_id, result=rung(1, 0.4, 0.4))
    final = {"epoch": 9, "val_acc": 0.9, "val_consistency": 0.95, "complete": True}
    searcher.on_trial_complete(trials[0].trial_id, result=final)
    searcher.on_trial_complete(trials[2].trial_id, error=True)

    def states() -> list[TrialState]:
        study = optuna.load_study(study_name="stopping", storage=optuna_storage(storage_url))
        return [t.state for t in study.trials]

    # The stop reaches Optuna with Tune's next experiment snapshot (get_state), once the
    # snapshot on disk holds it; until then the Optuna trial is RUNNING.
    assert states() == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL]
    numbers = {t.trial_id: i for i, t in enumerate(trials)}
    assert searcher.get_state() == {"numbers": numbers, "aliases": {}}
    study = optuna.load_study(study_name="stopping", storage=optuna_storage(storage_url))
    kept, stopped, failed = study.trials
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
    ]
    assert kept.values == [0.9, 0.95] and stopped.values is None
    assert stopped.user_attrs == {
        "ray_trial_id": "stop_00001",
        "stopped_at_epoch": 1,
        "rung": 1,
        "rung_decision": {
            "bracket": 0,
            "values": {"val_acc": 0.4, "val_consistency": 0.4},
            "rank": 1,
            "front": 1,
            "population": 2,
            "quota": 1,
            "surely_better": -1,  # no noise margin in this scheduler
        },
    }
    assert kept.user_attrs == {} and failed.user_attrs == {}
    assert [t.number for t in study.best_trials] == [0]  # the front holds no pruned trial
    # A stop replayed after a restore changes nothing (Optuna refuses finished trials).
    searcher.on_trial_complete(trials[1].trial_id, result=rung(1, 0.4, 0.4))
    assert searcher.flush() == ["stop_00001"]
    again = optuna.load_study(study_name="stopping", storage=optuna_storage(storage_url))
    assert again.trials[1].state == TrialState.PRUNED
    assert again.trials[1].user_attrs == stopped.user_attrs


def test_a_sampled_configuration_no_trial_can_run_is_failed_and_sampled_again(storage_url):
    """firwin with 2 taps and a Hann window has no DC gain: the space passes its checks
    (its corners are fine), only a sample shows it. Such a sample is FAIL in Optuna with
    the reason, and the same Tune trial gets a configuration that runs."""
    hann_two = (
        "{family: firwin, taps: {int: [2, 4]}, cutoff: 0.5, window: {choice: [hamming, hann]}}"
    )
    space = space_with(..., SPACE.replace("{choice: [delta, binomial-3]}", hann_two))
    searcher = searcher_for(space, storage_url, None)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(12)}
    study = optuna.load_study(study_name="stopping", storage=optuna_storage(storage_url))
    invalid = [t for t in study.trials if t.state == TrialState.FAIL]
    assert invalid, "the seeded random sampler drew no firwin(taps=2, hann) in 12 trials"
    for trial in invalid:
        chosen = {k.rsplit(".", 1)[-1]: v for k, v in trial.params.items()}
        assert (chosen["taps"], chosen["window"]) == (2, "hann"), trial.params
        assert "no DC gain" in trial.user_attrs["invalid_config"]
    for trial_id, config in configs.items():
        assert invalid_config(config) is None  # every Tune trial got one that runs
        assert searcher.numbers[trial_id] == config["optuna_trial"]
    assert set(searcher.aliases) <= set(configs) and len(searcher.aliases) >= 1
    # results and completions reach the Optuna trial the configuration came from
    resampled = next(iter(searcher.aliases))
    final = {"epoch": 9, "val_acc": 0.9, "val_consistency": 0.95, "complete": True}
    searcher.on_trial_complete(resampled, result=final)
    study = optuna.load_study(study_name="stopping", storage=optuna_storage(storage_url))
    told = study.trials[configs[resampled]["optuna_trial"]]
    assert told.state == TrialState.COMPLETE and told.values == [0.9, 0.95]


def test_the_searcher_state_goes_through_tunes_save_and_restore(tmp_path):
    """Tune saves wrappers' ``get_state`` and the base searcher's pickle; a restored
    chain (as ``Tuner.restore`` builds it) knows which Optuna trial each Tune trial is."""
    url = str(tmp_path / "optuna.journal")
    space = space_with("mo-asha")
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=9)
    first = SearchGenerator(ConcurrencyLimiter(searcher_for(space, url, scheduler), 2))
    first.searcher.suggest("save_00000")
    first.searcher.suggest("save_00001")
    first.save_to_dir(str(tmp_path), session_str="s")

    other = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=9)
    second = SearchGenerator(ConcurrencyLimiter(searcher_for(space, url, other), 2))
    second.restore_from_dir(str(tmp_path))
    pruning = second.searcher.searcher
    assert isinstance(pruning, PruningSearcher)
    assert pruning.numbers == {"save_00000": 0, "save_00001": 1}
    assert pruning.scheduler is other  # the scheduler is never replaced by a restore
    other.on_trial_add(None, Trial("__fake", trial_id="save_00000", stub=True))
    other.on_trial_add(None, Trial("__fake", trial_id="save_00001", stub=True))
    other.decide("save_00000", 1, (0.5, 0.5))
    other.decide("save_00001", 1, (0.1, 0.1))
    second.on_trial_complete("save_00001", result=rung(1, 0.1, 0.1))
    second.save_to_dir(str(tmp_path), session_str="s")  # a snapshot tells Optuna
    study = optuna.load_study(study_name="stopping", storage=optuna_storage(url))
    assert study.trials[1].state == TrialState.PRUNED
    assert study.trials[1].user_attrs["rung_decision"]["rank"] == 1


def test_a_snapshot_of_the_searcher_does_not_grow_with_the_study(tmp_path, storage_url):
    """Tune pickles the searcher at every experiment snapshot: told trials leave
    OptunaSearch's table, and an RDB storage's cache pickles no trials; a restored
    searcher still tells the running trial and reads every trial back."""
    space = space_with("mo-asha")
    first = SearchGenerator(ConcurrencyLimiter(searcher_for(space, storage_url, None), 8))
    for i in range(6):
        first.searcher.suggest(f"t{i}")
    final = {"epoch": 9, "val_acc": 0.9, "val_consistency": 0.95, "complete": True}
    for i in range(5):
        first.on_trial_complete(f"t{i}", result={**final, "val_acc": 0.1 * i})
    optuna_search = first.searcher.searcher.searcher
    assert list(optuna_search._ot_trials) == ["t5"]
    storage = optuna_search._ot_study._storage
    if storage_url.startswith("sqlite"):
        assert isinstance(storage, SnapshotCache)
        [live] = storage._studies.values()
        assert len(live.trials) == 6  # the live cache keeps them all
        pickled = pickle.loads(pickle.dumps(storage))
        [lean] = pickled._studies.values()
        assert lean.trials == {} and lean.directions == live.directions
        full = pickle.dumps(_CachedStorage.__getstate__(storage))  # Optuna's own pickle
        assert len(pickle.dumps(storage)) < len(full) / 2
    first.save_to_dir(str(tmp_path), session_str="s")

    second = SearchGenerator(ConcurrencyLimiter(searcher_for(space, storage_url, None), 8))
    second.restore_from_dir(str(tmp_path))
    second.on_trial_complete("t5", result=final)
    restored = second.searcher.searcher.searcher._ot_study
    assert [t.state for t in restored.trials] == [TrialState.COMPLETE] * 6
    assert [t.values[0] for t in restored.trials] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.9])


# --- MLflow: every reader agrees on what a pruned trial is -------------------------------------


@pytest.fixture
def tracked_study(tmp_path):
    """A parent run with three children: complete, pruned by ``mark_pruned``, failed."""
    from study.service.outbox import TrialLogger
    from study.service.tracking import mark_pruned, start_parent, trial_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "space.yaml").write_text(SPACE)
    params = {
        "study.trials": 3,
        "study.objectives": "val_acc:max,val_consistency:max",
        "study.scheduler": "mo-asha grace=1 eta=3 brackets=1 val_acc:max,val_consistency:max",
    }
    parent = start_parent(uri, "stopping", "stopping", params, tmp_path / "space.yaml", {})
    client = mlflow.MlflowClient(uri)
    runs = {}
    for trial_id, filter_spec in (("t0", "delta"), ("t1", "binomial-3"), ("t2", "binomial-5")):
        runs[trial_id] = trial_run(uri, parent, trial_id, trial_id)
        client.log_param(runs[trial_id], "model.filter", filter_spec)
        client.log_param(runs[trial_id], "augment.kind", "none")
        TrialLogger(uri, runs[trial_id]).epoch({"epoch": 1, "train_loss": 2.0, "val_acc": 0.3})
    final = {"val_acc": 0.8, "val_consistency": 0.9, "test_acc": 0.7, "test_consistency": 0.8}
    TrialLogger(uri, runs["t0"]).final(final, tmp_path)
    decision = {
        "trial_id": "t1",
        "rung": 3,
        "bracket": 0,
        "values": [0.95, 0.99],  # better than t0's final values: a front would take it
        "rank": 2,
        "front": 1,
        "population": 3,
        "quota": 1,
        "kept": False,
    }
    row = {"epoch": 3, "train_loss": 1.0, "val_acc": 0.95, "val_consistency": 0.99, "lr": 0.1}
    assert mark_pruned(uri, parent, "t1", decision, list(METRICS), row) == runs["t1"]
    # the pruned trial's last epoch carries values that would dominate t0 if it counted
    # (written as final values in the previous layout: read too, and must not count)
    client.log_metric(runs["t1"], "final.val_acc", 0.95)
    client.log_metric(runs["t1"], "final.val_consistency", 0.99)
    client.set_terminated(runs["t2"], "FAILED")
    return {"uri": uri, "parent": parent, "runs": runs, "client": client}


def test_a_pruned_child_run_is_killed_and_tagged(tracked_study):
    client, run_id = tracked_study["client"], tracked_study["runs"]["t1"]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags[PRUNED_TAG], tags[STOPPED_TAG], tags["study.rung"]) == (
        "true",
        "3",
        "3",
    )
    assert (tags["study.rung_rank"], tags["study.rung_population"]) == ("2", "3")
    assert (tags["study.rung_quota"], tags["study.rung_front"]) == ("1", "1")
    assert metrics["rung/val_acc"] == 0.95 and metrics["rung/val_consistency"] == 0.99
    # the rung epoch's row, logged by the driver (the stopped worker never does)
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert steps == [1, 3]
    from study.mlflow_layout import trial_state
    from study.service.tracking import trial_run

    assert trial_state(run) == "PRUNED"
    # a trial re-run after a restore is no longer marked pruned while it runs
    again = trial_run(tracked_study["uri"], tracked_study["parent"], "t1", "t1")
    assert again == run_id and PRUNED_TAG not in client.get_run(run_id).data.tags


def test_status_counts_stopped_trials_apart_and_keeps_them_off_the_front(tracked_study):
    from study.service.status import print_status

    out = io.StringIO()
    counts = print_status(tracked_study["uri"], "stopping", out)
    assert counts == {
        "planned": 3,
        "complete": 1,
        "stopped": 1,
        "running": 0,
        "failed": 1,
        "killed": 0,
    }
    text = out.getvalue()
    assert "1 of 3 trials complete, 1 stopped early, 0 running, 1 failed" in text
    front = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(front) == 1 and "delta" in front[0]


def test_pareto_and_the_live_front_leave_pruned_trials_out(tracked_study):
    from study.pareto.store import load_study, update_parent_front

    trials = load_study(tracked_study["uri"], "stopping")
    assert [r.trial_id for r in trials.records] == ["t0"]
    assert trials.statuses == {"FINISHED": 1, "PRUNED": 1, "FAILED": 1}
    summary = update_parent_front(
        tracked_study["uri"], tracked_study["parent"], "val_acc:max,val_consistency:max"
    )
    assert summary.complete == 1
    assert summary.front_run_ids == (tracked_study["runs"]["t0"],)


def test_a_pruned_run_tune_forgot_is_orphaned_not_counted(tracked_study):
    """A driver killed after stopping a trial but before Tune's next snapshot: the
    resumed experiment does not know that trial (its configuration runs again as a new
    trial), so its pruned child run is retagged orphaned and no reader counts it."""
    from study.mlflow_layout import trial_state
    from study.service.status import print_status
    from study.service.tracking import close_unfinished

    uri, parent, runs = tracked_study["uri"], tracked_study["parent"], tracked_study["runs"]
    assert close_unfinished(uri, parent, {"t0", "t1", "t2"}, set()) == []  # known: kept
    assert close_unfinished(uri, parent, {"t0", "t2"}, set()) == [runs["t1"]]
    run = tracked_study["client"].get_run(runs["t1"])
    assert trial_state(run) == "KILLED" and run.data.tags["study.orphaned"] == "true"
    assert not any(tag.startswith((PRUNED_TAG, "study.rung")) for tag in run.data.tags)
    counts = print_status(uri, "stopping", io.StringIO())
    assert (counts["stopped"], counts["killed"]) == (0, 1)


# --- resume: orphans of a killed driver ---------------------------------------------------------


def grid_plan(tmp_path, name: str = "orphans"):
    from study.service.plan import StudyPlan

    return StudyPlan(
        name=name,
        space_file=tmp_path / "space.yaml",
        storage_path=str(tmp_path),
        optuna_storage=str(tmp_path / "optuna.journal"),
        tracking_uri="",
        experiment=name,
        metrics=list(METRICS),
        modes=list(METRICS.values()),
        trials=4,
    )


def grid_study(plan):
    grid = {"model.filter": ["delta", "binomial-3"], "train.lr": [0.05, 0.01]}
    return optuna.create_study(
        study_name=plan.name,
        storage=optuna_storage(plan.optuna_storage),
        directions=["maximize", "maximize"],
        sampler=optuna.samplers.GridSampler(grid, seed=0),
        load_if_exists=True,
    )


def ask(study) -> tuple[int, tuple]:
    trial = study.ask()
    params = (
        trial.suggest_categorical("model.filter", ["delta", "binomial-3"]),
        trial.suggest_categorical("train.lr", [0.05, 0.01]),
    )
    return trial.number, params


def test_a_grid_studys_orphans_are_requeued_in_place(tmp_path):
    """The killed driver asked for trial 2 after Tune's last snapshot: requeued, the next
    ask gets it back (number and point), and the grid goes on in its own order: the
    order an uninterrupted study has, so a scheduler sees the same rung populations."""
    from study.service.repair import fail_requeued_trials, repair_orphaned_trials

    uninterrupted = grid_study(grid_plan(tmp_path / "a"))
    order = [ask(uninterrupted) for _ in range(4)]

    plan = grid_plan(tmp_path / "b")
    study = grid_study(plan)
    first, second, orphan = ask(study), ask(study), ask(study)
    study.tell(first[0], [0.5, 0.5])
    study.tell(second[0], state=TrialState.PRUNED)
    assert repair_orphaned_trials(plan, {first[0], second[0]}, requeue=True) == [2]
    resumed = grid_study(plan)  # load_if_exists: the restored searcher's study
    assert [ask(resumed) for _ in range(2)] == [orphan, order[3]]
    assert [first, second, orphan, order[3]] == order
    assert fail_requeued_trials(plan) == []  # taken: nothing left to fail


def test_orphans_of_other_samplers_fail_and_leftover_requeued_ones_too(tmp_path):
    from study.service.repair import fail_requeued_trials, repair_orphaned_trials

    plan = grid_plan(tmp_path)
    study = grid_study(plan)
    ask(study), ask(study)
    assert repair_orphaned_trials(plan, {0}, requeue=False) == [1]
    failed = study.trials[1]
    assert failed.state == TrialState.FAIL and failed.system_attrs["study.orphaned"]
    assert failed.system_attrs["grid_id"] == -1  # the grid offers the point again
    ask(study)
    assert repair_orphaned_trials(plan, {0}, requeue=True) == [2]
    assert fail_requeued_trials(plan) == [2]  # the run ended before any trial took it
    assert [t.state for t in grid_study(plan).trials][2] == TrialState.FAIL

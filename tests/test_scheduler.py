"""MO-ASHA (study.service.scheduler): the rung rank against a brute-force reference over
random rung populations (ties, duplicates, mixed directions), the dominating-newcomer
case that Syne Tune's MOASHA gets wrong, the scheduler's hooks and state on real Tune
``Trial`` objects, and real Ray Tune experiments with a toy trainable: trials stopped at
rungs, decisions logged and printed, and a driver SIGKILLed midway and restored with
``Tuner.restore`` making exactly the decisions of an uninterrupted run.

The Ray part starts local Ray instances in subprocesses: run it under
``flock /tmp/study-ray.lock``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ray.tune import register_trainable
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.service.rungs import (
    RungDecision,
    binomial_margins,
    crowding_distances,
    nondominated_fronts,
    rung_decision,
)
from study.service.scheduler import (
    LiveFIFOScheduler,
    MultiObjectiveASHA,
    SchedulerState,
    restored_callbacks,
)
from study.trial.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP

# --- the brute-force reference ------------------------------------------------------------


def _dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    signs = [1.0 if d == "max" else -1.0 for d in directions]
    pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def _brute_fronts(values: list[list[float]], directions: list[str]) -> list[int]:
    """Peel fronts with an O(n^2) dominance count per layer."""
    fronts, left, front = [0] * len(values), set(range(len(values))), 0
    while left:
        layer = {
            i for i in left if not any(_dominates(values[j], values[i], directions) for j in left)
        }
        for i in layer:
            fronts[i] = front
        left -= layer
        front += 1
    return fronts


def _brute_crowding(values: list[list[float]], fronts: list[int]) -> list[float]:
    """For each trial and objective: nearest distinct value below and above in its front,
    their gap over the objective's range on the whole rung; infinity at a front's ends."""
    width = len(values[0])
    spans = [max(v[j] for v in values) - min(v[j] for v in values) for j in range(width)]
    out = []
    for i, mine in enumerate(values):
        total = 0.0
        for j in range(width):
            levels = {v[j] for k, v in enumerate(values) if fronts[k] == fronts[i]}
            if len(levels) == 1:
                continue
            lower = [x for x in levels if x < mine[j]]
            upper = [x for x in levels if x > mine[j]]
            total += math.inf if not lower or not upper else (min(upper) - max(lower)) / spans[j]
        out.append(total)
    return out


def _brute_rank(population: list[list[float]], newcomer: list[float], directions: list[str]):
    values = [*population, newcomer]
    fronts = _brute_fronts(values, directions)
    crowding = _brute_crowding(values, fronts)
    me = len(population)
    rank = sum(
        1
        for j in range(me)
        if fronts[j] < fronts[me] or (fronts[j] == fronts[me] and crowding[j] > crowding[me])
    )
    return rank, fronts[me]


@st.composite
def rungs(draw, max_trials: int = 12):
    """(population, newcomer, directions, eta): 1-3 objectives with mixed directions,
    values on a coarse grid (many ties and duplicates) or continuous, the newcomer
    sometimes a copy of a trial already at the rung."""
    width = draw(st.integers(1, 3))
    directions = draw(st.lists(st.sampled_from(["max", "min"]), min_size=width, max_size=width))
    if draw(st.booleans()):
        value = st.integers(0, 3).map(float)
    else:
        value = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
    row = st.lists(value, min_size=width, max_size=width)
    population = draw(st.lists(row, max_size=max_trials))
    newcomer = draw(row)
    if population and draw(st.booleans()):
        newcomer = list(draw(st.sampled_from(population)))
    return population, newcomer, directions, draw(st.integers(2, 4))


# --- the rank ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(rungs())
def test_rank_and_decision_match_brute_force(case):
    population, newcomer, directions, eta = case
    outcome = rung_decision(population, newcomer, directions, eta)
    rank, front = _brute_rank(population, newcomer, directions)
    n = len(population) + 1
    assert (outcome.rank, outcome.front, outcome.population) == (rank, front, n)
    assert outcome.kept == (rank * eta < n)
    assert outcome.quota == math.ceil(n / eta)


@settings(max_examples=200, deadline=None)
@given(rungs())
def test_fronts_and_crowding_match_brute_force(case):
    population, newcomer, directions, _ = case
    values = [*population, newcomer]
    fronts = nondominated_fronts(values, directions)
    assert fronts.tolist() == _brute_fronts(values, directions)
    assert crowding_distances(values, fronts).tolist() == _brute_crowding(values, fronts)


@settings(max_examples=200, deadline=None)
@given(rungs(), st.randoms(use_true_random=False))
def test_rank_does_not_depend_on_arrival_order(case, random):
    population, newcomer, directions, eta = case
    shuffled = list(population)
    random.shuffle(shuffled)
    assert rung_decision(shuffled, newcomer, directions, eta) == rung_decision(
        population, newcomer, directions, eta
    )


@settings(max_examples=200, deadline=None)
@given(rungs(), st.data())
def test_flipping_a_direction_and_negating_its_values_changes_nothing(case, data):
    population, newcomer, directions, eta = case
    j = data.draw(st.integers(0, len(directions) - 1))
    flip = {"max": "min", "min": "max"}

    def negate(row: list[float]) -> list[float]:
        return [-v if k == j else v for k, v in enumerate(row)]

    flipped = [flip[d] if k == j else d for k, d in enumerate(directions)]
    assert rung_decision(
        [negate(r) for r in population], negate(newcomer), flipped, eta
    ) == rung_decision(population, newcomer, directions, eta)


@settings(max_examples=200, deadline=None)
@given(rungs())
def test_rank_lies_between_dominance_counts(case):
    """Trials dominating the newcomer are better; trials it dominates and its copies are
    not."""
    population, newcomer, directions, eta = case
    outcome = rung_decision(population, newcomer, directions, eta)
    dominating = sum(_dominates(p, newcomer, directions) for p in population)
    dominated = sum(_dominates(newcomer, p, directions) for p in population)
    copies = sum(p == newcomer for p in population)
    assert dominating <= outcome.rank <= len(population) - dominated - copies


@settings(max_examples=200, deadline=None)
@given(rungs(), st.data())
def test_a_newcomer_that_dominates_every_trial_at_its_rung_continues(case, data):
    population, _, directions, eta = case
    assume(population)
    signs = [1.0 if d == "max" else -1.0 for d in directions]
    best = [s * max(s * row[j] for row in population) for j, s in enumerate(signs)]
    j = data.draw(st.integers(0, len(directions) - 1))
    best[j] += signs[j]  # strictly better there, so it dominates even a best-in-all trial
    outcome = rung_decision(population, best, directions, eta)
    assert (outcome.rank, outcome.front, outcome.kept) == (0, 0, True)


def test_the_syne_tune_case_a_newcomer_dominating_three_trials_continues_with_eta_3():
    """Syne Tune's MOASHA reads its priority (an ordering of trial indices) as ranks: with
    the three trials at the rung a chain, the dominating newcomer reads as rank 2/4 > 1/3
    and is stopped. Here it is alone on the front: rank 0, kept."""
    chain = [[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]]
    outcome = rung_decision(chain, [0.6, 0.6], ["max", "max"], eta=3)
    assert (outcome.rank, outcome.front, outcome.population, outcome.kept) == (0, 0, 4, True)
    mixed = rung_decision([[0.5, 0.5], [0.6, 0.3], [0.3, 0.6]], [0.7, 0.7], ["max", "max"], 3)
    assert (mixed.rank, mixed.kept) == (0, True)


def test_the_first_trial_at_a_rung_and_its_copies_continue():
    assert rung_decision([], [0.1, 0.2], ["max", "max"], eta=3).kept
    assert rung_decision([[0.1, 0.2]] * 5, [0.1, 0.2], ["max", "max"], eta=3).rank == 0
    # a second trial continues unless it is worse than the first
    assert rung_decision([[0.5, 0.5]], [0.6, 0.4], ["max", "max"], eta=3).kept
    assert not rung_decision([[0.5, 0.5]], [0.5, 0.4], ["max", "max"], eta=3).kept


def test_ties_in_the_crowding_distance_share_a_rank():
    # A front of five evenly spaced points: the ends are infinite, the middle three tie.
    front = [[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]]
    outcome = rung_decision(front, [2.0, 2.0], ["max", "max"], eta=2)
    assert (outcome.rank, outcome.front) == (2, 0)
    assert rung_decision(front, [1.0, 3.0], ["max", "max"], eta=2).rank == 2  # a duplicate


def test_mixed_directions():
    # accuracy up, variation down: (0.9, 0.1) dominates (0.8, 0.2)
    assert rung_decision([[0.9, 0.1]], [0.8, 0.2], ["max", "min"], eta=3).front == 1
    assert rung_decision([[0.9, 0.2]], [0.8, 0.1], ["max", "min"], eta=3).front == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], [1.0], ["up"], 3), "directions: 'up'; use max or min"),
        (([], [1.0], ["max"], 1), "eta: 1 must be a whole number >= 2"),
        (([[1.0, 2.0]], [1.0], ["max"], 3), "values: shape (1, 2); expected (n_trials, 1)"),
        (([], [math.nan], ["max"], 3), "values: not finite (NaN or inf)"),
    ],
)
def test_bad_rung_input_is_one_line(args, message):
    with pytest.raises(ValueError) as error:
        rung_decision(*args)
    assert str(error.value) == message


# --- the scheduler on real Tune trials ------------------------------------------------------

METRICS = {"val_acc": "max", "val_consistency": "max"}
register_trainable("moasha_unit", lambda config: None)


def trial(index: int) -> Trial:
    return Trial("moasha_unit", trial_id=f"unit_{index:05d}")


def result(epoch: int, acc: float, consistency: float) -> dict:
    return {"epoch": epoch, "val_acc": acc, "val_consistency": consistency}


def test_scheduler_stops_at_rungs_logs_and_replays_decisions():
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=9)
    a, b, c = trial(0), trial(1), trial(2)
    for t in (a, b, c):
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, a, result(1, 0.5, 0.5)) == CONTINUE
    assert scheduler.on_trial_result(None, b, result(1, 0.4, 0.4)) == STOP
    assert scheduler.on_trial_result(None, c, result(1, 0.6, 0.6)) == CONTINUE
    assert scheduler.on_trial_result(None, a, result(2, 0.5, 0.5)) == CONTINUE  # no rung
    assert len(scheduler.decisions) == 3
    # replayed epochs (a retry or a restore) get the same answer and no new record
    assert scheduler.on_trial_result(None, b, result(1, 0.9, 0.9)) == STOP
    assert scheduler.on_trial_result(None, c, result(1, 0.1, 0.1)) == CONTINUE
    assert scheduler.on_trial_result(None, c, result(2, 0.1, 0.1)) == CONTINUE
    assert len(scheduler.decisions) == 3
    assert scheduler.stopped(b.trial_id) and not scheduler.stopped(a.trial_id)
    assert scheduler.decisions[1] == RungDecision(
        trial_id=b.trial_id,
        rung=1,
        bracket=0,
        values=(0.4, 0.4),
        rank=1,
        front=1,
        population=2,
        quota=1,
        kept=False,
    )
    assert scheduler.decisions[1].describe(list(METRICS)) == (
        "rung 1: trial unit_00001 stopped (rank 1 of 2, best 1 kept; "
        "val_acc 0.4000 val_consistency 0.4000)"
    )
    # rung 3 (epoch 3 or later, first time), then no rung at 9 = the budget
    assert scheduler.on_trial_result(None, c, result(4, 0.7, 0.7)) == CONTINUE
    assert scheduler.decisions[-1].rung == 3
    assert scheduler.on_trial_result(None, c, result(9, 0.8, 0.8)) == CONTINUE
    assert len(scheduler.decisions) == 4
    assert "rung 1: 3 trials, 2 kept, 1 stopped" in scheduler.debug_string()


def test_results_without_rung_metrics_continue_and_record_nothing():
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=2)
    t = trial(0)
    scheduler.on_trial_add(None, t)
    for report in (
        {"complete": True, "test_acc": 0.9},  # the final report
        {"epoch": 1, "val_acc": 0.5},  # one metric missing
        {"epoch": 1, "val_acc": math.nan, "val_consistency": 0.5},
        {"val_acc": 0.5, "val_consistency": 0.5},  # no epoch
        {"epoch": 0, "val_acc": 0.5, "val_consistency": 0.5},  # before the grace period
    ):
        assert scheduler.on_trial_result(None, t, report) == CONTINUE
    assert scheduler.decisions == []


def test_brackets_are_dealt_round_robin_and_start_later():
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=30, brackets=2)
    assert scheduler.rung_epochs(0) == [1, 3, 9, 27] and scheduler.rung_epochs(1) == [3, 9, 27]
    first, second = trial(0), trial(1)
    scheduler.on_trial_add(None, first)
    scheduler.on_trial_add(None, second)
    scheduler.on_trial_add(None, first)  # a retried trial keeps its bracket
    assert scheduler.on_trial_result(None, second, result(1, 0.1, 0.1)) == CONTINUE
    assert scheduler.decisions == []  # bracket 1 has no rung at epoch 1
    scheduler.on_trial_result(None, second, result(3, 0.1, 0.1))
    scheduler.on_trial_result(None, first, result(3, 0.9, 0.9))
    assert [(d.bracket, d.rung, d.population) for d in scheduler.decisions] == [
        (1, 3, 1),
        (0, 3, 1),
    ]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    st.data(),
)
def test_state_round_trip_resumes_the_same_decisions(stream, data):
    """Results (trial, acc, consistency) in any interleaving, each trial at its next
    epoch; a scheduler restored halfway from another's state (as plain data) decides as
    one that ran through. Results replayed after the restore (a trial resuming from an
    older checkpoint) add no decision: a trial stopped before goes on being stopped."""
    trials = [trial(i) for i in range(6)]
    reports, epochs = [], [0] * 6
    for index, acc, consistency in stream:
        epochs[index] += 1
        reports.append((index, result(epochs[index], acc / 3, consistency / 3)))
    split = data.draw(st.integers(0, len(reports)))
    replay = data.draw(st.integers(0, split))

    def feed(scheduler, part) -> list[str]:
        out = []
        for index, report in part:
            scheduler.on_trial_add(None, trials[index])
            out.append(scheduler.on_trial_result(None, trials[index], report))
        return out

    def new() -> MultiObjectiveASHA:
        return MultiObjectiveASHA(metrics=METRICS, grace=1, eta=2, budget=6, brackets=2)

    through, first, second = new(), new(), new()
    actions = feed(through, reports)
    feed(first, reports[:split])
    second.set_state(json.loads(json.dumps(first.get_state())))
    assert second.decisions == first.decisions
    replayed = reports[split - replay : split]
    assert feed(second, replayed) == [
        STOP if first.stopped(trials[index].trial_id) else CONTINUE for index, _ in replayed
    ]
    assert second.decisions == first.decisions
    assert feed(second, reports[split:]) == actions[split:]
    assert second.decisions == through.decisions


def test_state_from_other_settings_is_refused():
    state = MultiObjectiveASHA(metrics=METRICS, eta=3).get_state()
    with pytest.raises(ValueError, match="scheduler state is for settings"):
        MultiObjectiveASHA(metrics=METRICS, eta=2).set_state(state)


def test_tune_metric_and_mode_are_refused():
    scheduler = MultiObjectiveASHA(metrics=METRICS)
    assert scheduler.set_search_properties(None, None, stop={}) is True
    assert scheduler.set_search_properties("val_acc", "max") is False
    assert scheduler.metric is None  # nothing for Tune's strict metric check to look up


def test_state_callback_reports_each_new_decision_once():
    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3)
    lines: list[str] = []
    state = SchedulerState(scheduler, report=lines.append)
    a, b = trial(0), trial(1)
    for t, report in ((a, result(1, 0.5, 0.5)), (b, result(1, 0.4, 0.4))):
        scheduler.on_trial_add(None, t)
        scheduler.on_trial_result(None, t, report)
        state.on_trial_result(iteration=1, trials=[a, b], trial=t, result=report)
    state.on_trial_result(iteration=2, trials=[a, b], trial=a, result=result(2, 0.5, 0.5))
    assert [line.split(" (")[0] for line in lines] == [
        "rung 1: trial unit_00000 kept",
        "rung 1: trial unit_00001 stopped",
    ]
    other = SchedulerState(MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3), lines.append)
    other.set_state(state.get_state())
    other.on_trial_result(iteration=3, trials=[a, b], trial=a, result=result(2, 0.5, 0.5))
    assert other.restored == 2 and len(lines) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {}}, "study.scheduler.metrics: give a mapping metric: max|min"),
        ({"metrics": {"val_acc": "up"}}, "study.scheduler.metrics.val_acc: 'up'; use max or min"),
        ({"eta": 1}, "study.scheduler.eta: 1 must be a whole number >= 2"),
        ({"eta": 2.5}, "study.scheduler.eta: 2.5 must be a whole number >= 2"),
        ({"grace": 0}, "study.scheduler.grace: 0 must be a whole number >= 1"),
        ({"brackets": True}, "study.scheduler.brackets: True must be a whole number >= 1"),
        ({"budget": 0}, "study.scheduler.budget: 0 must be a whole number >= 1"),
        ({"grace": 2, "budget": 2}, "study.scheduler.grace: the first rung of bracket 0 is"),
        ({"budget": 9, "brackets": 3}, "study.scheduler.grace: the first rung of bracket 2 is"),
        ({"time_attr": ""}, "study.scheduler.time_attr: '' is not a result key"),
    ],
)
def test_bad_settings_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as error:
        MultiObjectiveASHA(**{"metrics": METRICS, **kwargs})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


# --- the noise margin ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(rungs(), st.floats(0, 3))
def test_a_margin_only_ever_keeps_more(case, gap):
    """Margins add a way to continue, never a way to stop; margin 0 stops exactly as rank
    does, except that it counts who dominates: kept iff rank-kept or fewer than the
    quota dominate the newcomer in every objective strictly."""
    population, newcomer, directions, eta = case
    plain = rung_decision(population, newcomer, directions, eta)
    margins = [[gap] * len(directions) for _ in population]
    noisy = rung_decision(population, newcomer, directions, eta, margins=margins)
    assert (noisy.rank, noisy.front, noisy.quota) == (plain.rank, plain.front, plain.quota)
    assert plain.kept <= noisy.kept
    signs = [1.0 if d == "max" else -1.0 for d in directions]
    surely = sum(
        all(s * (a - b) > gap for s, a, b in zip(signs, other, newcomer, strict=True))
        for other in population
    )
    assert noisy.surely_better == surely
    assert noisy.kept == (plain.kept or surely < plain.quota)


def test_a_trial_within_the_noise_goes_on_and_one_beyond_it_stops():
    population = [[0.30, 0.80], [0.28, 0.78], [0.12, 0.60]]
    newcomer = [0.10, 0.58]  # last by rank: dominated by all three
    assert not rung_decision(population, newcomer, ["max", "max"], eta=2).kept
    # 250 validation images, 2 standard errors: 0.02 behind the third is noise, 0.2
    # behind the first two is not, but two of four must be ahead beyond noise to stop it
    margins = binomial_margins(population, newcomer, images=250, confidence=2.0)
    outcome = rung_decision(population, newcomer, ["max", "max"], eta=2, margins=margins)
    assert outcome == (3, 3, 4, 2, False, 2)
    further = rung_decision(
        population, [0.10, 0.58], ["max", "max"], eta=4, margins=margins
    )  # quota 1: the first alone beyond noise stops it
    assert not further.kept and further.surely_better == 2
    close = [0.25, 0.75]  # within two standard errors of the first two
    margins = binomial_margins(population, close, images=250, confidence=2.0)
    outcome = rung_decision(population, close, ["max", "max"], eta=2, margins=margins)
    assert outcome.rank == 2 and outcome.surely_better == 0 and outcome.kept


def test_binomial_margins_shrink_with_the_split_and_vanish_at_certainty():
    small = binomial_margins([[0.5]], [0.5], images=100, confidence=2.0)[0, 0]
    large = binomial_margins([[0.5]], [0.5], images=10_000, confidence=2.0)[0, 0]
    assert small == pytest.approx(2 * math.sqrt(0.5 / 100)) and large == pytest.approx(small / 10)
    assert binomial_margins([[1.0]], [0.0], images=100, confidence=2.0)[0, 0] == 0.0


def test_the_scheduler_keeps_trials_within_the_noise_of_its_split():
    def stops(**noise) -> list[str]:
        scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=2, budget=9, **noise)
        out = []
        for index, values in enumerate([(0.30, 0.80), (0.27, 0.77), (0.26, 0.76)]):
            t = trial(index)
            scheduler.on_trial_add(None, t)
            out.append(scheduler.on_trial_result(None, t, result(1, *values)))
        return out

    assert stops() == [CONTINUE, STOP, STOP]
    assert stops(confidence=2.0, validation_images=250) == [CONTINUE, CONTINUE, CONTINUE]
    assert stops(confidence=2.0, validation_images=1_000_000) == [CONTINUE, STOP, STOP]
    scheduler = MultiObjectiveASHA(
        metrics=METRICS, grace=1, eta=2, confidence=2.0, validation_images=250
    )
    for index, values in enumerate([(0.30, 0.80), (0.27, 0.77)]):
        scheduler.on_trial_add(None, trial(index))
        scheduler.on_trial_result(None, trial(index), result(1, *values))
    assert scheduler.decisions[1].describe(list(METRICS)) == (
        "rung 1: trial unit_00001 kept (rank 1 of 2, best 1 kept, 0 better beyond noise; "
        "val_acc 0.2700 val_consistency 0.7700)"
    )


def test_a_margin_needs_the_split_size_and_a_sane_confidence():
    with pytest.raises(ConfigError, match=r"^study.scheduler.confidence: 2.0 standard errors"):
        MultiObjectiveASHA(metrics=METRICS, confidence=2.0)
    for bad in (-1, 6, True, "2"):
        with pytest.raises(ConfigError, match=r"^study.scheduler.confidence: .* in \[0, 5\]"):
            MultiObjectiveASHA(metrics=METRICS, confidence=bad, validation_images=100)


def test_a_state_or_pickle_from_before_the_margin_resumes_by_rank_alone():
    """A study started before the margin existed keeps judging as it began."""
    old = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=2)
    for index, values in enumerate([(0.30, 0.80), (0.27, 0.77)]):
        old.on_trial_add(None, trial(index))
        old.on_trial_result(None, trial(index), result(1, *values))
    state = old.get_state()
    for key in ("confidence", "validation_images"):
        del state["settings"][key]
    for raw in state["decisions"]:
        del raw["surely_better"]
    new = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=2, confidence=2.0, validation_images=250)
    new.set_state(state)
    assert new.decisions == old.decisions
    new.on_trial_add(None, trial(2))
    assert new.on_trial_result(None, trial(2), result(1, 0.26, 0.76)) == STOP
    pickled = old.__dict__.copy()
    del pickled["_confidence"], pickled["_validation_images"]
    revived = MultiObjectiveASHA.__new__(MultiObjectiveASHA)
    revived.__setstate__(pickled)
    revived.on_trial_add(None, trial(2))
    assert revived.on_trial_result(None, trial(2), result(1, 0.26, 0.76)) == STOP


# --- real Ray Tune experiments ----------------------------------------------------------------


def drive(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """The toy driver (tests/moasha_toy.py) in its own process and Ray instance."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-c", "import moasha_toy; moasha_toy.main()", *args],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moasha")
    out = folder / "full.json"
    run = drive("run", str(folder / "ray"), "full", str(out), folder=folder)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"report": json.loads(out.read_text()), "stdout": run.stdout, "folder": folder}


def test_ray_tune_stops_trials_at_rungs_and_dominating_trials_go_on(uninterrupted):
    report = uninterrupted["report"]
    assert report["fates"] == {
        "p0": "complete",
        "p1": "stopped",
        "p2": "complete",
        "p3": "complete",
        "p4": "stopped",
        "p5": "complete",
        "p6": "stopped",
        "p7": "stopped",
    }
    decisions = {(d["trial_id"], d["rung"]): d for d in report["decisions"]}
    assert len(decisions) == len(report["decisions"]) == 13
    assert {k: (d["rank"], d["population"], d["kept"]) for k, d in decisions.items()} == {
        ("p0", 1): (0, 1, True),
        ("p0", 3): (0, 1, True),
        ("p1", 1): (1, 2, False),
        ("p2", 1): (0, 3, True),
        ("p2", 3): (0, 2, True),
        ("p3", 1): (0, 4, True),  # dominates the three trials before it
        ("p3", 3): (0, 3, True),
        ("p4", 1): (4, 5, False),
        ("p5", 1): (0, 6, True),
        ("p5", 3): (0, 4, True),
        ("p6", 1): (2, 7, True),
        ("p6", 3): (2, 5, False),
        ("p7", 1): (5, 8, False),
    }
    assert decisions[("p3", 1)]["values"] == [0.35, 0.35]  # per-epoch values, epoch 1
    lines = [line for line in uninterrupted["stdout"].splitlines() if line.startswith("rung ")]
    assert len(lines) == 13
    assert (
        lines[2].startswith("rung 1: trial ")
        and " stopped (rank 1 of 2, best 1 kept;" in (lines[2])
    )


def test_restored_callbacks_share_the_scheduler_with_the_restored_tuner(uninterrupted):
    """The one private Ray access (Tuner._local_tuner) and the link that makes restore
    work: the callback and TuneConfig's scheduler come back as one object. Fails loudly if
    a Ray upgrade changes either."""
    from moasha_toy import toy_trainable
    from ray import tune

    tuner = tune.Tuner.restore(str(uninterrupted["folder"] / "ray" / "full"), toy_trainable)
    callbacks = restored_callbacks(tuner)
    state = next(c for c in callbacks if isinstance(c, SchedulerState))
    assert state.scheduler is tuner._local_tuner._tune_config.scheduler
    assert callbacks is tuner._local_tuner.get_run_config().callbacks


def test_a_study_killed_midway_and_restored_decides_as_an_uninterrupted_one(
    uninterrupted, tmp_path
):
    storage = str(tmp_path / "ray")
    killed = drive("run", storage, "toy", str(tmp_path / "killed.json"), "6", folder=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "killed.json").exists()
    assert sum(line.startswith("rung ") for line in killed.stdout.splitlines()) == 6
    resumed = drive("resume", storage, "toy", str(tmp_path / "resumed.json"), folder=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    report = json.loads((tmp_path / "resumed.json").read_text())
    expected = uninterrupted["report"]
    assert 1 <= report["restored"] <= 6  # decisions brought back from Tune's snapshot
    assert report["decisions"] == expected["decisions"]
    assert report["fates"] == expected["fates"]


class _Controller:
    """What a scheduler reads of Tune's controller when choosing a trial to run."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> set[Trial]:
        return {t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)}


@given(st.lists(st.sampled_from(["PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"])))
def test_the_live_fifo_scheduler_chooses_as_tunes_fifo_does(statuses):
    """The same choice as Tune's FIFOScheduler (the first pending trial in the order
    added, else the first paused one), looking at live trials only."""
    trials = [Trial("__fake", trial_id=f"fifo_{i:05d}", stub=True) for i in range(len(statuses))]
    live = LiveFIFOScheduler()
    for trial, status in zip(trials, statuses, strict=True):
        live.on_trial_add(None, trial)
        trial.status = status
        if status == Trial.TERMINATED:
            live.on_trial_complete(None, trial, {})
        if status == Trial.ERROR:
            live.on_trial_error(None, trial)  # Tune may retry it without adding it again
    controller = _Controller(trials)
    assert live.choose_trial_to_run(controller) is FIFOScheduler().choose_trial_to_run(controller)
    terminated = {t.trial_id for t in trials if t.status == Trial.TERMINATED}
    assert set(live._added) == {t.trial_id for t in trials} - terminated
    assert pickle.loads(pickle.dumps(live))._added == live._added
    older = LiveFIFOScheduler.__new__(LiveFIFOScheduler)  # pickled before it kept an order
    older.__setstate__({k: v for k, v in vars(live).items() if k not in ("_added", "_next")})
    assert (older._added, older._next) == ({}, 0)

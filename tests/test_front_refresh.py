"""The parent's live front is refreshed off Tune's loop: a request never waits for a
refresh, requests in a burst share one, and the end of the study always refreshes
what is pending."""

from __future__ import annotations

import threading

import pytest

from study.service.front_refresh import FrontRefresher


def test_a_request_never_waits_for_a_refresh_under_way():
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_refresh():
        calls.append("start")
        started.set()
        release.wait()

    refresher = FrontRefresher(slow_refresh, every_s=0)
    refresher.request()
    assert started.wait(30), "the background refresh never started"
    for _ in range(100):  # the loop goes on while the refresh blocks
        refresher.request()
    assert calls == ["start"]
    release.set()
    refresher.close()
    assert 2 <= len(calls) <= 3  # the requests made during the first: one more (or two)


def test_a_burst_of_requests_shares_one_refresh_and_the_end_refreshes_the_rest():
    calls = []
    refresher = FrontRefresher(lambda: calls.append(1), every_s=3600)
    for _ in range(1000):
        refresher.request()
    refresher.close()
    assert 1 <= len(calls) <= 2  # an hour's throttle: the first, and the final one
    assert refresher.refreshes == len(calls)


def test_nothing_pending_means_no_final_refresh():
    calls = []
    refresher = FrontRefresher(lambda: calls.append(1), every_s=3600)
    refresher.close()
    assert calls == []


def test_a_failed_refresh_is_tried_again_at_the_end():
    failed = threading.Event()

    def flaky():
        if not failed.is_set():
            failed.set()
            raise RuntimeError("MLflow away")

    refresher = FrontRefresher(flaky, every_s=3600)
    with pytest.warns(UserWarning, match="MLflow away"):
        refresher.request()
        assert failed.wait(30), "the background refresh never ran"
        refresher.close()
    assert refresher.refreshes == 1  # the second try, at the end, went through


def test_the_live_front_kept_incrementally_is_the_front_of_every_result():
    import numpy as np

    from study.pareto.front import front_mask
    from study.service.progress import StudyProgress

    objectives = {"val_acc": "max", "test_variation": "min"}
    progress = StudyProgress(500, objectives, "sqlite:///unused.db", "parent")
    rng = np.random.default_rng(0)
    for index, values in enumerate(rng.random((500, 2)).round(2)):  # ties too
        progress._add_result(f"t{index}", (f"trial {index}", values.tolist()))
        if index % 50 == 49:
            rows = list(progress.results.values())
            mask = front_mask(np.array([v for _, v in rows]), list(objectives.values()))
            expected = sorted(label for (label, _), keep in zip(rows, mask, strict=True) if keep)
            assert sorted(label for label, _ in progress.front()) == expected
    progress._add_result("t0", ("trial 0", [1.0, 0.0]))  # re-run: dominates everything
    assert [label for label, _ in progress.front()] == ["trial 0"]


def test_refreshes_take_at_most_their_share_of_the_time():
    """A refresh that took d seconds waits d / share before the next one, however often
    it is asked for: the parent's front never costs the driver more than its share."""
    import itertools
    import time

    starts = []

    def slow_refresh():
        starts.append(time.monotonic())
        time.sleep(0.2)

    refresher = FrontRefresher(slow_refresh, every_s=0, share=0.25)  # 0.2 s -> 0.8 s apart
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        refresher.request()
        time.sleep(0.01)
    refresher.close()
    gaps = [b - a for a, b in itertools.pairwise(starts[:-1])]  # the last one is close()'s
    assert len(starts) >= 3 and gaps, starts
    assert min(gaps) >= 0.75, gaps


def test_a_failed_refresh_is_retried_after_the_interval_not_its_share():
    """A refresh that fails (slowly, as a request to an absent server does) is tried
    again after ``every_s``: the share cap is for refreshes that work."""
    import time

    attempts = []

    def failing():
        attempts.append(time.monotonic())
        time.sleep(0.3)
        raise RuntimeError("the tracking server refused the figure")

    refresher = FrontRefresher(failing, every_s=0.1, share=0.05)  # a success: 6 s apart
    refresher.request()
    with pytest.warns(UserWarning, match="could not refresh"):
        time.sleep(2.0)
        refresher.close()
    assert len(attempts) >= 3, attempts


def test_a_refresh_failing_on_an_absent_server_is_retried_without_a_warning_each_time():
    """An outage is said once, by the driver's relay (study.service.relay): the front
    refresh that fails on it says nothing and is tried again."""
    import time
    import warnings

    attempts = []

    def away():
        attempts.append(time.monotonic())
        raise ConnectionError("the tracking server is away")

    refresher = FrontRefresher(away, every_s=0.1, share=0.05)
    refresher.request()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        time.sleep(1.0)
        refresher.close()
    assert len(attempts) >= 3, attempts


def test_tunes_snapshot_period_grows_with_the_study_unless_the_user_set_it(monkeypatch):
    """The driver's other O(n) chore: Tune's experiment snapshot (study.service.runner)."""
    from study.service.plan import SNAPSHOT_PERIOD, snapshot_period

    monkeypatch.delenv(SNAPSHOT_PERIOD, raising=False)
    assert [snapshot_period(n) for n in (1, 200, 1000, 6000, 10**6)] == [
        "10", "10", "50", "300", "300",
    ]  # fmt: skip
    monkeypatch.setenv(SNAPSHOT_PERIOD, "auto")
    assert snapshot_period(1000) == "auto"

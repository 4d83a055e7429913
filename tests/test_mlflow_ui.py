"""The MLflow UI shows a study as the service records it: a real ``mlflow server``, a small
study written through the client (parent, child runs, the parent's Pareto artifacts from
:func:`study.pareto.store.update_parent_front`), browsed in headless Chromium.

Needs Chromium (Debian: ``apt-get install -y chromium``; or set ``$STUDY_CHROMIUM``) and
the ``playwright`` Python package, which drives the system browser (no browser download).
Skips, with the reason, only when no Chromium binary can be found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import time
from pathlib import Path

import pytest
import servers

from study.mlflow_layout import PARENT_TAG, ROLE_TAG, STUDY_TAG, TRIAL_TAG

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TRIALS = [
    # filter, augment, status, test_acc, consistency
    ("delta", "flip", "FINISHED", 0.920, 0.950),
    ("binomial-5", "flip", "FINISHED", 0.925, 0.975),
    ("rect-3", "flip", "FINISHED", 0.921, 0.979),
    ("triangle-5", "flip", "FAILED", 0.0, 0.0),
]


def _chromium() -> str | None:
    configured = os.environ.get("STUDY_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a free port, SQLite backend, served artifacts."""
    with servers.mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        yield url


def _populate(url: str) -> dict[str, object]:
    """A small study laid out as study/tracking.py writes it."""
    import mlflow
    from mlflow.entities import Metric, Param

    from study import filters
    from study.pareto.store import update_parent_front

    client = mlflow.MlflowClient(url)
    experiment_id = client.create_experiment("ui-study")
    parent = client.create_run(
        experiment_id, run_name="ui-study", tags={STUDY_TAG: "ui-study", ROLE_TAG: "parent"}
    ).info.run_id
    client.log_batch(parent, params=[Param("study.sampler", "tpe"), Param("study.trials", "4")])
    now = int(time.time() * 1000)
    children = []
    for i, (spec, augment, status, acc, cons) in enumerate(TRIALS):
        info = filters.describe(spec)
        name = f"ui-study-trial-{i:02d}"
        run = client.create_run(
            experiment_id,
            run_name=name,
            tags={
                PARENT_TAG: parent,
                STUDY_TAG: "ui-study",
                ROLE_TAG: "trial",
                TRIAL_TAG: f"trial_{i:05d}",
            },
        ).info.run_id
        params = {
            "model.filter": info["filter"],
            "filter.family": info["family"],
            "filter.taps": info["taps"],
            "augment.kind": augment,
        }
        metrics = []
        if status == "FINISHED":
            metrics = [
                Metric("final.test_acc", acc, now, 0),
                Metric("final.test_consistency", cons, now, 0),
            ]
        client.log_batch(run, params=[Param(k, str(v)) for k, v in params.items()], metrics=metrics)
        client.set_terminated(run, status)
        children.append(name)
    summary = update_parent_front(url, parent, "test_acc:max,test_consistency:max")
    assert summary is not None and summary.complete == 3 and summary.front_size == 2
    png = Path(client.download_artifacts(parent, "pareto/pareto.png"))
    width = struct.unpack(">I", png.read_bytes()[16:20])[0]
    return {"experiment": experiment_id, "parent": parent, "children": children, "width": width}


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; skips (with the reason printed) when there is none."""
    found = _chromium()
    if found is None:
        reason = (
            "no Chromium found (tried $STUDY_CHROMIUM, "
            + ", ".join(CHROMIUM_NAMES)
            + "); install it with: apt-get install -y chromium"
        )
        print(f"SKIP test_mlflow_ui: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return found


@contextlib.contextmanager
def browser_page(chromium: str):
    """A page of headless Chromium (1400 x 900, 60 s timeouts), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright (a dev extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_mlflow_ui_shows_study_and_pareto_artifact(chromium, mlflow_server, tmp_path):
    study = _populate(mlflow_server)
    experiment, parent = study["experiment"], study["parent"]
    with browser_page(chromium) as page:
        # The runs table: the parent, expanded to show its child runs.
        page.goto(f"{mlflow_server}/#/experiments/{experiment}/runs?workflowType=machine_learning")
        row = page.locator('[role="row"]', has_text="ui-study").first
        row.wait_for()
        row.locator('button[data-component-id*="runnamecellrenderer"]').click()
        page.get_by_text(study["children"][-1], exact=True).wait_for()
        page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
        text = page.inner_text("body")
        for child in study["children"]:
            assert child in text, f"child run {child} missing from the runs table"
        assert f"{len(TRIALS) + 1} matching runs" in text

        # The parent run: its live front metrics and its child runs.
        page.goto(f"{mlflow_server}/#/experiments/{experiment}/runs/{parent}")
        page.get_by_text("front_size", exact=True).first.wait_for()
        page.get_by_text("hypervolume", exact=True).first.wait_for()
        for child in study["children"]:  # the child list renders after the metrics
            page.get_by_text(child, exact=True).first.wait_for(timeout=30_000)

        # The Pareto image artifact, rendered at its real size.
        page.goto(
            f"{mlflow_server}/#/experiments/{experiment}/runs/{parent}/artifacts/pareto/pareto.png"
        )
        page.get_by_text("pareto/pareto.png").first.wait_for()
        page.wait_for_function(
            "width => [...document.images].some(i => i.complete && i.naturalWidth === width)",
            arg=study["width"],
        )
        shot = tmp_path / "pareto-artifact.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000


def test_the_study_experiment_opens_on_its_runs(chromium, mlflow_server, tmp_path):
    """An experiment the service created, opened at the address the service prints
    (`study run`'s summary, `study ui`): MLflow 3.17 shows the runs table with the
    parent run, not the GenAI overview (traces, latency, tokens) it starts in. The
    experiment is tagged as model development (the UI's other way to choose the view),
    and one an earlier version created untagged gets the tag when the study resumes."""
    import mlflow

    from study.browse import experiment_url
    from study.mlflow_layout import EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT
    from study.service import tracking

    space = tmp_path / "kind.yaml"
    space.write_text("study: {name: kind}\n")
    parent = tracking.start_parent(mlflow_server, "kind", "kind", {"study.trials": 3}, space, {})
    client = mlflow.MlflowClient(mlflow_server)
    for i, (spec, augment, _, acc, consistency) in enumerate(TRIALS[:3]):
        child = tracking.open_child_run(client, parent, f"trial_{i:05d}", f"kind-trial-{i:02d}")
        client.log_param(child, "model.filter", spec)
        client.log_param(child, "augment.kind", augment)
        tracking.log_metrics(
            client, child, {"test_acc": acc, "test_consistency": consistency}, final=True
        )
        client.set_terminated(child, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    experiment = client.get_run(parent).info.experiment_id
    assert client.get_experiment(experiment).tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT

    older = client.create_experiment("older")  # as an earlier version left it: no kind
    client.create_run(older, run_name="older", tags={STUDY_TAG: "older", ROLE_TAG: "parent"})
    tracking.start_parent(mlflow_server, "older", "older", {}, space, {})  # the resume
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT

    with browser_page(chromium) as page:
        page.goto(experiment_url(mlflow_server, experiment))
        page.locator('[role="row"]', has_text="kind").first.wait_for()
        text = page.inner_text("body")
        assert "matching runs" in text, text[:2000]
        for genai in ("Token usage", "Latency"):
            assert genai not in text, f"the GenAI overview ({genai}) opened"
        page.screenshot(path=str(tmp_path / "opened.png"), full_page=True)
        # The picture in the README: the parent expanded to its trials. Refreshed on
        # request (STUDY_UI_SCREENSHOT=docs/figures/mlflow-ui.png), never by CI.
        target = os.environ.get("STUDY_UI_SCREENSHOT")
        if target:
            row = page.locator('[role="row"]', has_text="kind").first
            row.locator('button[data-component-id*="runnamecellrenderer"]').click()
            page.get_by_text("kind-trial-02", exact=True).wait_for()
            page.screenshot(path=target)

"""The Dagster and MLflow UIs as a user sees them, in headless Chromium (see conftest.py).

Each test opens one view, asserts what a user came to see there, and saves a screenshot.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from tests.browser.conftest import UiSession, graphql
from vad_pipeline.assets.training import model_name
from vad_pipeline.definitions import defs
from vad_pipeline.ui_links import mlflow_model_version_url, mlflow_view_url

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status } } } }"


def _shot(page, ui: UiSession, name: str) -> None:
    page.screenshot(path=str(ui.screens / f"{name}.png"), full_page=True)


def _evaluation_run(ui: UiSession):
    client = ui.tracker.client()
    experiment = client.get_experiment_by_name(ui.tracker.experiment)
    (run,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'tiny/evaluation'")
    return client, experiment.experiment_id, run


def test_lineage_lists_every_asset(ui_session: UiSession, page) -> None:
    page.goto(f"{ui_session.dagster}/asset-groups")
    expected = sorted(key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys())
    assert len(expected) >= 9
    graph = page.locator("svg")
    graph.get_by_text("evaluation", exact=True).first.wait_for()  # the groups, collapsed
    page.keyboard.press("Alt+KeyE")  # the graph's "Expand all groups" shortcut (its menu shows it as ⌥E)
    for name in expected:
        graph.get_by_text(name, exact=True).first.wait_for()  # a node of the graph, not the sidebar's tree
    _shot(page, ui_session, "dagster_lineage")


def test_evaluation_report_shows_its_plots_and_figures(ui_session: UiSession, page) -> None:
    auc = ui_session.report["scorers"]["diffusion"]["metrics"]["roc_auc"]
    page.goto(f"{ui_session.dagster}/assets/evaluation_report")
    page.get_by_text(f"{auc:.4g}", exact=True).first.wait_for()  # frame_auc_diffusion, rounded
    _, _, run = _evaluation_run(ui_session)
    assert page.locator(f'a[href="{ui_session.tracker.run_url(run.info.run_id)}"]').count() >= 1  # to MLflow
    _shot(page, ui_session, "dagster_evaluation_report")

    page.locator("tr", has_text="roc_curve").get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    image = dialog.locator("img").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => img.naturalWidth") > 100
    assert dialog.get_by_text(f"{auc:.4f}", exact=True).count() >= 1  # the table above the ROC image
    _shot(page, ui_session, "dagster_roc_curve")
    dialog.get_by_role("button", name="Close").click()

    page.locator("tr", has_text="report").filter(has_not_text="report_").get_by_text("[Show Markdown]").click()
    images = page.get_by_role("dialog").locator("img")
    images.first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert images.count() == len(ui_session.report["plots"])
    _shot(page, ui_session, "dagster_report")


def test_materialize_button_runs_the_asset(ui_session: UiSession, page) -> None:
    base = ui_session.dagster
    before = {r["runId"] for r in graphql(base, RUNS_QUERY)["runsOrError"]["results"]}
    page.goto(f"{base}/assets/frame_scores")
    page.get_by_role("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).first.click()
    deadline = time.monotonic() + 300
    while True:  # by GraphQL, not by the browser
        runs = [r for r in graphql(base, RUNS_QUERY)["runsOrError"]["results"] if r["runId"] not in before]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        assert time.monotonic() < deadline, f"the run did not finish: {runs}"
        time.sleep(2)
    assert [r["status"] for r in runs] == ["SUCCESS"], runs
    page.goto(f"{base}/runs/{runs[0]['runId']}")
    page.get_by_text("frame_scores").first.wait_for()
    _shot(page, ui_session, "dagster_materialize_run")


def test_mlflow_puts_the_scorers_side_by_side(ui_session: UiSession, page) -> None:
    client, experiment_id, run = _evaluation_run(ui_session)
    page.goto(ui_session.servers.urls["mlflow"])  # the address `vad ui` prints
    page.get_by_text("tiny/evaluation", exact=True).first.wait_for()
    body = page.inner_text("body")
    assert "Information about UI telemetry" not in body and "Model training" in body
    with urllib.request.urlopen(f"{ui_session.mlflow}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30) as resp:
        assert json.loads(resp.read())["disable_ui_telemetry"] is True
    _shot(page, ui_session, "mlflow_experiment")

    page.goto(mlflow_view_url(ui_session.mlflow, experiment_id, "tiny-scorers"))  # Dagster's `mlflow_scorers`
    page.get_by_text("tiny/evaluation/diffusion", exact=True).wait_for()
    page.get_by_text("frame_auc", exact=True).first.wait_for()
    text = page.inner_text("body")
    for name, result in ui_session.report["scorers"].items():
        assert f"tiny/evaluation/{name}" in text
        assert str(result["metrics"]["roc_auc"])[:6] in text, name  # its frame_auc in the table
    _shot(page, ui_session, "mlflow_scorers_side_by_side")

    page.goto(ui_session.tracker.run_url(run.info.run_id))
    dagster_run = run.data.tags["dagster.run_url"]
    page.locator(f'a[href="{dagster_run}"]').first.wait_for()  # back to the Dagster run
    _shot(page, ui_session, "mlflow_evaluation_run")


def test_registered_model_page_shows_its_description(ui_session: UiSession, page) -> None:
    version = str(ui_session.report["denoiser"]["model_version"])
    auc = ui_session.report["scorers"]["diffusion"]["metrics"]["roc_auc"]
    page.goto(mlflow_model_version_url(ui_session.mlflow, model_name("tiny"), version))
    page.get_by_text("EDM denoiser for dataset").wait_for()
    assert f"{auc:.4f}" in page.inner_text("body")
    _shot(page, ui_session, "mlflow_model_version")

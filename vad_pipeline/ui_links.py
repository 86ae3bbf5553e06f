"""Where the two UIs answer, from settings, so that each side links to the other.

A Dagster asset's metadata links to its MLflow run, and an MLflow run links back to the Dagster
run that made it. Both addresses come from the environment: `VAD_DAGSTER_UI_URL` and
`VAD_MLFLOW_UI_URL` (set by `vad ui` for everything it starts, so the links follow the ports it
chose), else a tracking server's own address (`MLFLOW_TRACKING_URI` of http(s)), else the
addresses `vad ui` prefers: `http://127.0.0.1:<VAD_DAGSTER_PORT or 3000>` and
`http://127.0.0.1:<VAD_MLFLOW_PORT or 5000>`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from urllib.parse import quote

DEFAULT_DAGSTER_PORT = 3000
DEFAULT_MLFLOW_PORT = 5000
# MLflow 3 opens in its GenAI view unless the address says otherwise; the app keeps the
# parameter on every link inside it. (No server setting chooses the view in MLflow 3.17.)
MLFLOW_VIEW = "workflowType=machine_learning"


def dagster_ui_url() -> str:
    """The Dagster UI's base address (no trailing slash)."""
    url = os.environ.get("VAD_DAGSTER_UI_URL") or (
        f"http://127.0.0.1:{os.environ.get('VAD_DAGSTER_PORT') or DEFAULT_DAGSTER_PORT}"
    )
    return url.rstrip("/")


def mlflow_ui_url(tracking_uri: str | None = None) -> str:
    """The MLflow UI's base address: `VAD_MLFLOW_UI_URL`, else an http(s) tracking server, else `vad ui`'s."""
    url = os.environ.get("VAD_MLFLOW_UI_URL")
    if not url and tracking_uri and tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri
    if not url:
        url = f"http://127.0.0.1:{os.environ.get('VAD_MLFLOW_PORT') or DEFAULT_MLFLOW_PORT}"
    return url.rstrip("/")


def dagster_run_url(run_id: str) -> str:
    return f"{dagster_ui_url()}/runs/{run_id}"


def dagster_asset_url(asset_key: str) -> str:
    return f"{dagster_ui_url()}/assets/{asset_key}"


def mlflow_experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?{MLFLOW_VIEW}"


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MLFLOW_VIEW}"


def mlflow_view_url(base: str, experiment_id: str, key: str) -> str:
    """A saved runs-table view of the experiment (see `resources.tracking.VIEW_TAG`)."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={quote(key, safe='')}&{MLFLOW_VIEW}"


def mlflow_saved_view(title: str, search_filter: str, metrics: Sequence[str], params: Sequence[str] = ()) -> str:
    """A saved runs-table view as the MLflow UI stores it (JSON of {name, createdAt, updatedAt, state}):
    the runs `search_filter` matches, `metrics` and `params` as columns, sorted by the first metric, highest first."""
    state = {
        "searchFilter": search_filter,
        "orderByKey": f"metrics.`{metrics[0]}`" if metrics else "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in params],
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": title, "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def mlflow_model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}?{MLFLOW_VIEW}"


__all__ = [
    "DEFAULT_DAGSTER_PORT",
    "DEFAULT_MLFLOW_PORT",
    "MLFLOW_VIEW",
    "dagster_asset_url",
    "dagster_run_url",
    "dagster_ui_url",
    "mlflow_experiment_url",
    "mlflow_model_version_url",
    "mlflow_run_url",
    "mlflow_saved_view",
    "mlflow_ui_url",
    "mlflow_view_url",
]

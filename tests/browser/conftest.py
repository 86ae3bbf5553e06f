"""The two UIs, started for real over a small materialized demo home, and a headless Chromium.

One session fixture materializes the tiny pipeline of tests/pipeline (pixelstats backbone, four
48-frame videos) into a persistent DAGSTER_HOME and MLflow store, then starts both servers the
way `vad ui` does (`start_uis`) on free loopback ports; they are stopped by process group at
the end. The browser is Debian's `chromium` driven by Playwright for Python through
`executable_path` (no browser download: this project never runs `playwright install`).
Screenshots of every view land in the session's temp folder (`<basetemp>/browser-screens*`; the
path is printed) so CI keeps them as artifacts.

Skipped, with the reason, where Playwright or chromium is missing; under CI (`CI` set) a missing
browser is a failure instead: the project's set-up (`make browser-deps`, run by .ci/run) installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance

from tests.pipeline.conftest import RUN_CONFIG, TINY_SPEC, tiny_resources
from vad_pipeline.cli.demo import materialize_all
from vad_pipeline.cli.instance import init_dagster_home
from vad_pipeline.cli.ui import UiServers, free_port, start_uis
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import MLflowTracker, VadStorage
from vad_pipeline.specs import ensure_footage, load_spec

# The flags the brief for these tests fixes: no sandbox (root in CI), no GPU, and nothing that
# reaches out to the network (this machine has none but loopback).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename
    ... on PythonError { message } } } } } }
"""


def chromium_path() -> str | None:
    return os.environ.get("VAD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: make browser-deps)")
    pytest.skip(reason)


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out = json.loads(resp.read())
    assert "errors" not in out, out
    return out["data"]


@dataclass
class UiSession:
    servers: UiServers
    root: Path
    screens: Path
    report: dict
    tracker: MLflowTracker

    @property
    def dagster(self) -> str:
        return self.servers.urls["dagster"]

    @property
    def mlflow(self) -> str:
        return self.servers.urls["mlflow_base"]


def _wait_location_loaded(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the webserver answers before the code server has loaded the definitions
        entry = graphql(base, LOCATION_QUERY)["workspaceOrError"]["locationEntries"][0]
        loaded = entry["locationOrLoadError"]
        if loaded is not None:
            assert loaded["__typename"] == "RepositoryLocation", loaded
            return
        assert time.monotonic() < deadline, "the code location did not load"
        time.sleep(2)


@pytest.fixture(scope="session")
def ui_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSession]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python is not installed")
    if chromium_path() is None:
        _missing("Debian's chromium is not installed")
    root = tmp_path_factory.mktemp("ui")
    screens = tmp_path_factory.mktemp("browser-screens")
    print(f"\nbrowser screenshots: {screens}")
    home = root / "home"
    spec_path = root / "tiny.yaml"
    spec_path.write_text(TINY_SPEC)
    d_port, m_port = free_port(), free_port()
    # What the servers (and the materialization below, so its links are right) are told.
    env = {
        "VAD_HOME": str(home),
        "VAD_DATASET": str(spec_path),
        "VAD_BACKBONE": "pixelstats-2",
        "VAD_DEVICE": "cpu",
        "VAD_DAGSTER_UI_URL": f"http://127.0.0.1:{d_port}",
        "VAD_MLFLOW_UI_URL": f"http://127.0.0.1:{m_port}",
    }
    saved = {k: os.environ.get(k) for k in [*env, "MLFLOW_TRACKING_URI", "DAGSTER_HOME"]}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    servers = None
    try:
        spec = load_spec(str(spec_path), home=home)
        ensure_footage(spec)
        resources = tiny_resources(root, spec_path)
        dagster_home = init_dagster_home(home / "dagster")
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            summary = materialize_all(
                make_definitions(resources), instance, spec, resources["storage"], RUN_CONFIG, echo=lambda _: None
            )
        tracker = MLflowTracker(home=str(home))
        servers = start_uis(VadStorage(home=str(home)), tracker, d_port, m_port, env=env)
        assert servers.wait_ready(300), (servers.logs / "dagster.log").read_text()[-3000:]
        _wait_location_loaded(servers.urls["dagster"], 300)
        yield UiSession(servers, root, screens, summary.report or {}, tracker)
        servers.stop()
        groups = [p.pid for p in servers.procs.values()]
        deadline = time.monotonic() + 15
        while any(_running_in_group(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for g in groups for pid in _running_in_group(g)], "servers left running after stop()"
    finally:
        if servers is not None:
            servers.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _running_in_group(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies awaiting their reaper do not)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="session")
def browser(ui_session: UiSession) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()

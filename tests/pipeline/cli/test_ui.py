"""`dagster dev` loads the code location: assets, sensor and schedule, seen through its GraphQL API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vad_pipeline.cli.instance import init_dagster_home
from vad_pipeline.cli.ui import REPO, free_port, start_dagster_dev, stop_process_group, wait_http

QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name
    locationOrLoadError { __typename
      ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } }
                                                 sensors { name } schedules { name cronSchedule } } }
      ... on PythonError { message } } } } } }
"""


def _graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_dagster_dev_serves_the_code_location(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    init_dagster_home(home / "dagster")  # the instance `make ui` would create: telemetry off, one run at a time
    log = tmp_path / "dagster.log"
    proc = start_dagster_dev(
        port,
        {
            "DAGSTER_HOME": str(home / "dagster"),
            "VAD_HOME": str(home),
            "VAD_DATASET": "demo",
            "VAD_RETRAIN_CRON": "0 4 * * 2",
        },
        log,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/server_info", 240, proc), log.read_text()[-3000:]
        deadline = time.monotonic() + 240
        while True:  # the webserver answers before the code server has loaded the definitions
            data = _graphql(f"http://127.0.0.1:{port}/graphql", QUERY)["data"]["workspaceOrError"]
            entry = data["locationEntries"][0]
            loaded = entry["locationOrLoadError"]
            if loaded is not None or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert entry["name"] == "vad_pipeline.definitions"
        assert loaded["__typename"] == "RepositoryLocation", loaded
        repo = loaded["repositories"][0]
        assets = {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]}
        assert {"video_manifest", "clip_features", "denoiser", "evaluation_report", "baseline_scores"} <= assets
        assert [s["name"] for s in repo["sensors"]] == ["new_footage_sensor"]
        assert repo["schedules"] == [{"name": "retraining_schedule", "cronSchedule": "0 4 * * 2"}]
    finally:
        stop_process_group(proc, timeout=30)
    assert proc.poll() is not None
    # Nothing of the group is left running (webserver, daemon, code server); zombies await
    # their reaper and no longer run.
    deadline = time.monotonic() + 15
    while _running_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_in_group(proc.pid) == []


def _running_in_group(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def test_the_vad_command_starts_without_the_heavy_libraries() -> None:
    """`vad ui` imports every subcommand before it starts the servers: none of them may pull in torch,
    scikit-learn or matplotlib (about 30 s of a loaded 2-core machine, before `dagster dev` even began)."""
    code = (
        "import sys; from vad_pipeline.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

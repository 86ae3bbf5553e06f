"""Runs on the cluster: submit jobs through the Dagster webserver, follow them (and their automatic
retries) in the instance until each partition has a final run, report what they did.

    client = DagsterClient(os.environ["VAD_DAGSTER_URL"])
    runner = ClusterRunner(client, DagsterInstance.get())
    runs = runner.run("features_job", run_config, partitions=["test/01", "test/02"])

Submission is the webserver's GraphQL API (`dagster_graphql.DagsterGraphQLClient`, what the UI's
launchpad does): the run is queued, the daemon dequeues it within the tag limits, the
`CeleryRunLauncher` hands it to a run worker. Every wait here has a deadline.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from vad_core.errors import VADInputError

FINAL = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


class ClusterRunError(RuntimeError):
    """A run ended without success (after its retries); the message names the job, the run and the error."""


@dataclass
class JobRun:
    """One job run as it finally ended: its id (the last retry's), partition, wall and work seconds."""

    job: str
    run_id: str
    partition: str | None
    status: str
    wall_s: float
    work_s: float = 0.0
    attempts: int = 1
    error: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # its tables were already up to date: nothing extracted (work_s 0)


class DagsterClient:
    """The webserver's GraphQL API: submission (DagsterGraphQLClient) and the health queries it lacks."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, attempts: int = 3) -> dict[str, Any]:
        """A read-only query. A 5xx answer is retried (`attempts` in all, a second apart): the webserver
        keeps one pooled PostgreSQL connection without a liveness check, so after a database restart
        its first query fails on the dead connection (HTTP 500) and the next one reconnects."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    data = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == attempts:
                    raise RuntimeError(f"Dagster GraphQL at {self.url}: HTTP {exc.code} {exc.reason}") from exc
                time.sleep(1.0)
        if data.get("errors"):
            raise RuntimeError(f"Dagster GraphQL at {self.url}: {data['errors'][0].get('message')}")
        return dict(data["data"])

    def location_loaded(self) -> bool:
        """True once the code location is loaded; an error naming it when it failed to load."""
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            loaded = entry.get("locationOrLoadError") or {}
            if loaded.get("__typename") == "PythonError":
                raise VADInputError(f"code location {entry['name']} failed to load: {loaded.get('message')}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    def daemon_healthy(self, daemon: str = "QUEUED_RUN_COORDINATOR") -> bool:
        data = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return any(s["daemonType"] == daemon and s["healthy"] for s in statuses)

    def submit(
        self,
        job: str,
        run_config: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        assets: Sequence[str] | None = None,
    ) -> str:
        """Queue one run of `job` (only the assets named in `assets`, when given: the UI's "materialize
        selected"); returns its run id."""
        from urllib.parse import urlsplit

        from dagster_graphql import DagsterGraphQLClient

        parts = urlsplit(self.url)
        client = DagsterGraphQLClient(parts.hostname or "127.0.0.1", port_number=parts.port, timeout=int(self.timeout))
        selection = list(assets) if assets else None
        return str(
            client.submit_job_execution(
                job, run_config=dict(run_config), tags=dict(tags or {}), asset_selection=selection
            )
        )


class ClusterRunner:
    """Submits runs and waits for their final outcome, following the daemon's automatic retries."""

    def __init__(
        self,
        client: DagsterClient,
        instance: DagsterInstance,
        resources: Mapping[str, Mapping[str, Any]] | None = None,
        timeout_s: float = 3600.0,
    ) -> None:
        """`resources` is resource config added to every run (`{"backbone": {"name": "i3d"}}`): what this
        process chose (a dataset, a backbone) reaches the workers, whose environment is the cluster's."""
        self.client, self.instance, self.timeout_s = client, instance, timeout_s
        self.resources = {k: {"config": dict(v)} for k, v in (resources or {}).items() if v}

    def run(
        self,
        job: str,
        run_config: Mapping[str, Any],
        partitions: list[str] | None = None,
        on_done: Callable[[JobRun], None] | None = None,
        raise_on_failure: bool = True,
        assets: Sequence[str] | None = None,
    ) -> list[JobRun]:
        """One run (or one per partition, all submitted at once, in the given order: the daemon dequeues
        the oldest first); returns when every one is final. `assets`: only these assets of the job."""
        keys: list[str | None] = list(partitions) if partitions is not None else [None]
        config = {**run_config, "resources": {**self.resources, **dict(run_config.get("resources") or {})}}
        submitted = {}
        for key in keys:
            tags = {"dagster/partition": key} if key is not None else {}
            submitted[self.client.submit(job, config, tags, assets)] = key
        outcomes = self.wait(job, submitted, on_done)
        failed = [r for r in outcomes if r.status != DagsterRunStatus.SUCCESS.value]
        if failed and raise_on_failure:
            first = failed[0]
            where = f" ({first.partition})" if first.partition else ""
            raise ClusterRunError(
                f"{len(failed)} of {len(outcomes)} {job} runs failed; run {first.run_id}{where}: {first.error}"
            )
        return outcomes

    def wait(
        self, job: str, submitted: Mapping[str, str | None], on_done: Callable[[JobRun], None] | None = None
    ) -> list[JobRun]:
        """Poll the instance until each submitted run (or its last retry) is final and will not retry."""
        deadline = time.monotonic() + self.timeout_s
        pending, done = dict(submitted), {}
        while pending:
            # One query a tick for every pending run's status; only a finished first attempt is
            # looked at closer (its retries): the poll must not take CPU from the workers.
            status = {r.run_id: r.status for r in self.instance.get_runs(RunsFilter(run_ids=list(pending)))}
            for root_id in list(pending):
                if status.get(root_id) not in FINAL:
                    continue
                final = self.final_run(root_id)
                if final is not None:
                    outcome = self.outcome(job, root_id, final, pending.pop(root_id))
                    done[root_id] = outcome
                    if on_done is not None:
                        on_done(outcome)
            if pending and time.monotonic() > deadline:
                raise ClusterRunError(f"{len(pending)} {job} runs not finished after {self.timeout_s:.0f} s")
            if pending:
                time.sleep(0.5)
        return [done[r] for r in submitted]

    def attempts(self, root_id: str) -> list[DagsterRun]:
        """The run and its automatic retries, oldest first."""
        root = self.instance.get_run_by_id(root_id)
        retries = self.instance.get_runs(RunsFilter(tags={"dagster/root_run_id": root_id}))
        runs = ([root] if root else []) + list(retries)
        return sorted(runs, key=lambda r: int(r.tags.get("dagster/retry_number", "0")))

    def final_run(self, root_id: str) -> DagsterRun | None:
        """The last attempt, when it is final and no further retry is coming; else None."""
        runs = self.attempts(root_id)
        if not runs or runs[-1].status not in FINAL:
            return None
        last = runs[-1]
        if last.status == DagsterRunStatus.SUCCESS:
            return last
        will_retry = last.tags.get("dagster/will_retry")
        if will_retry == "true" or (will_retry is None and _may_retry(last)):
            return None  # the daemon's retry is on its way
        return last

    def outcome(self, job: str, root_id: str, run: DagsterRun, partition: str | None) -> JobRun:
        stats = self.instance.get_run_stats(run.run_id)
        wall = (stats.end_time or 0.0) - (stats.start_time or 0.0) if stats.start_time else 0.0
        return JobRun(
            job=job,
            run_id=run.run_id,
            partition=partition,
            status=run.status.value,
            wall_s=float(wall),
            work_s=work_seconds(self.instance, run.run_id),
            attempts=len(self.attempts(root_id)),
            error=None if run.status == DagsterRunStatus.SUCCESS else failure_message(self.instance, run.run_id),
            step_seconds=step_seconds(self.instance, run.run_id),
            skipped=skipped_up_to_date(self.instance, run.run_id),
        )


def _may_retry(run: DagsterRun) -> bool:
    """A failed run whose job asks for retries, before the daemon has tagged its decision."""
    return run.status == DagsterRunStatus.FAILURE and int(run.tags.get("dagster/max_retries", "0") or 0) > int(
        run.tags.get("dagster/retry_number", "0") or 0
    )


def _materialization_values(instance: DagsterInstance, run_id: str, name: str) -> list[Any]:
    """The `name` metadata value of each of the run's materializations that has one."""
    values = []
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
        event = record.event_log_entry.dagster_event
        materialization = event.step_materialization_data.materialization if event else None
        value = materialization.metadata.get(name) if materialization else None
        if value is not None:
            values.append(value.value)
    return values


def work_seconds(instance: DagsterInstance, run_id: str) -> float:
    """The `work_seconds` metadata of the run's materializations (the extraction's own time), summed."""
    return sum(float(v) for v in _materialization_values(instance, run_id, "work_seconds"))


def skipped_up_to_date(instance: DagsterInstance, run_id: str) -> bool:
    """True when the run's feature tables were all up to date already (`skipped_up_to_date` metadata):
    another run (the new-footage sensor's, say) extracted them first, so its wall time is no overhead."""
    values = _materialization_values(instance, run_id, "skipped_up_to_date")
    return bool(values) and all(bool(v) for v in values)


def step_seconds(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    return {
        s.step_key: (s.end_time or 0) - (s.start_time or 0)
        for s in instance.get_run_step_stats(run_id)
        if s.start_time and s.end_time
    }


def failure_message(instance: DagsterInstance, run_id: str) -> str:
    """The first line of each failed step's error (else the run failure's message)."""
    lines = []
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        while (
            error is not None and error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError",)
        ):
            error = error.cause
        if error is not None:
            lines.append(
                f"{event.step_key if event else '?'}: {error.cls_name}: {error.message.strip().splitlines()[0]}"
            )
    if lines:
        return "; ".join(lines)
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records:
        return record.event_log_entry.message or "run failed"
    return "run failed (no failure event)"


__all__ = [
    "ClusterRunError",
    "ClusterRunner",
    "DagsterClient",
    "JobRun",
    "failure_message",
    "skipped_up_to_date",
    "step_seconds",
]

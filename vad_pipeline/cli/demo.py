"""`vad demo` (`make demo`): generate the demo footage, materialize every asset, print the summary.

    vad demo                          # the demo dataset (VAD_DATASET or --dataset selects another)
    vad demo --dataset ucsd_ped2

The runs go through the same Definitions, jobs and persistent Dagster instance (DAGSTER_HOME,
default `<VAD_HOME>/dagster`) that `make ui` shows afterwards: one footage run, one features
run per video partition (as the sensor would launch them), then one run that indexes the
features, trains, scores and reports. Each partition run's Dagster overhead (its wall time
minus the extraction's own time) is measured and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult

from vad_core.errors import VADInputError
from vad_pipeline.automation.jobs import FEATURES_JOB, FOOTAGE_JOB, TRAINING_JOB, check_asset_configs, job_run_config
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.cli.instance import dagster_home
from vad_pipeline.cluster.profile import is_cluster, require
from vad_pipeline.cluster.submit import (
    ClusterRunError,
    ClusterRunner,
    DagsterClient,
    JobRun,
    skipped_up_to_date,
    step_seconds,
    work_seconds,
)
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import MLflowTracker
from vad_pipeline.specs import DatasetSpec, ensure_footage, load_spec

Echo = Callable[[str], None]


class JobRunner(Protocol):
    """Runs a job (once, or once per partition) to its end: `InProcessRunner` or the cluster's."""

    def run(
        self,
        job: str,
        run_config: Mapping[str, Any],
        partitions: list[str] | None = None,
        on_done: Callable[[JobRun], None] | None = None,
        raise_on_failure: bool = True,
    ) -> list[JobRun]: ...


@dataclass
class PipelineSummary:
    """What one end-to-end materialization did and how long each part took."""

    dataset: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    partition_wall_s: dict[str, float] = field(default_factory=dict)
    partition_work_s: dict[str, float] = field(default_factory=dict)
    # Partitions whose tables were already up to date (on the cluster the daemon's new-footage
    # sensor may extract the demo's videos before the demo's own runs): not counted as overhead.
    partition_skipped: list[str] = field(default_factory=list)
    report_path: str | None = None
    report: dict[str, Any] | None = None
    run_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def overhead_per_partition_s(self) -> float | None:
        """Mean Dagster cost of a partition run beyond the extraction itself, over the runs that extracted
        (a run that found its table up to date did no work: its whole wall would read as overhead)."""
        extracted = [v for v in self.partition_wall_s if v not in self.partition_skipped]
        if not extracted:
            return None
        over = [self.partition_wall_s[v] - self.partition_work_s.get(v, 0.0) for v in extracted]
        return sum(over) / len(over)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "stage_seconds": self.stage_seconds,
            "partition_wall_s": self.partition_wall_s,
            "partition_work_s": self.partition_work_s,
            "overhead_per_partition_s": self.overhead_per_partition_s,
            "partition_skipped": self.partition_skipped,
            "report_path": self.report_path,
            "run_ids": self.run_ids,
            "failures": self.failures,
        }


class RunFailed(VADInputError):
    """A Dagster run of the demo failed; the message is one line naming the job, the step and why."""


def run_failure(job: str, result: ExecuteInProcessResult) -> str:
    """One line for a failed run: the first failed step and its `Failure` description (a user error)
    or its exception (a bug: the traceback stays in the run's event log)."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            why = data.user_failure_data.description
        else:
            error = data.error.cause or data.error if data.error else None
            why = error.message.strip().splitlines()[0] if error else "unknown error"
            why += f" (the traceback is in Dagster run {result.run_id})"
        return f"{job} failed at {event.step_key}: {why}"
    return f"{job} failed (Dagster run {result.run_id})"


class InProcessRunner:
    """Runs jobs one after another in this process (`execute_in_process`), partitions in turn: the
    local profile. `vad_pipeline.cluster.submit.ClusterRunner` is the cluster profile's, same calls.

    A failed run is a `JobRun` with status FAILURE and `run_failure`'s one line as `error`; with
    `raise_on_failure` the first one raises `RunFailed` (after every partition ran)."""

    def __init__(self, defs: Definitions, instance: DagsterInstance) -> None:
        self.defs, self.instance = defs, instance

    def run(
        self,
        job: str,
        run_config: Mapping[str, Any],
        partitions: list[str] | None = None,
        on_done: Callable[[JobRun], None] | None = None,
        raise_on_failure: bool = True,
    ) -> list[JobRun]:
        job_def, out = self.defs.resolve_job_def(job), []
        for key in partitions if partitions is not None else [None]:
            start = time.perf_counter()
            res = job_def.execute_in_process(
                instance=self.instance, partition_key=key, run_config=dict(run_config), raise_on_error=False
            )
            done = JobRun(
                job,
                res.run_id,
                key,
                "SUCCESS" if res.success else "FAILURE",
                time.perf_counter() - start,
                work_seconds(self.instance, res.run_id),
                error=None if res.success else run_failure(job if key is None else f"{job}[{key}]", res),
                step_seconds=step_seconds(self.instance, res.run_id),
                skipped=skipped_up_to_date(self.instance, res.run_id),
            )
            out.append(done)
            if on_done is not None:
                on_done(done)
        failed = [r.error for r in out if r.status != "SUCCESS"]
        if failed and raise_on_failure:
            raise RunFailed(str(failed[0]))
        return out


def materialize_all(
    defs: Definitions,
    instance: DagsterInstance,
    spec: DatasetSpec,
    storage: VadStorage,
    run_config: Mapping[str, Mapping[str, Any]] | None = None,
    echo: Echo = print,
    log_level: str = "WARNING",
    runner: JobRunner | None = None,
) -> PipelineSummary:
    """Materialize every asset of `spec`: footage, one features run per video, then the rest.

    `run_config` is `{asset: {field: value}}`; it defaults to the spec's own `run_config`.
    `runner` runs the jobs: in this process by default, or on the cluster (`ClusterRunner`).
    """
    run_config = spec.run_config if run_config is None else run_config
    check_asset_configs(run_config, defs.resolve_job_def)  # a typo fails here, before any work
    cfg = lambda job: job_run_config(job, run_config, log_level)  # noqa: E731
    runner = runner or InProcessRunner(defs, instance)
    summary = PipelineSummary(spec.name)

    t0 = time.perf_counter()
    summary.run_ids += [r.run_id for r in runner.run(FOOTAGE_JOB, cfg(FOOTAGE_JOB))]
    summary.stage_seconds["footage (manifest + ground truth)"] = time.perf_counter() - t0
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    manifest, _ = store.read_frame(keys.manifest)
    ok = manifest.loc[manifest["status"] == "ok", "video_id"].astype(str).tolist()
    bad = manifest.loc[manifest["status"] != "ok"]
    for row in bad.itertuples():
        echo(f"  skipping unreadable video {row.video_id}: {row.error}")
    known = set(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    new = [v for v in ok if v not in known]
    if new:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, new)
    echo(f"  {len(ok)} videos ({len(new)} new partitions); extracting features, one run per video")

    def done(run: JobRun) -> None:
        vid = str(run.partition)
        if run.status != "SUCCESS":
            summary.failures.append(str(run.error))
            echo(f"  [{len(summary.failures) + len(summary.partition_wall_s)}/{len(ok)}] {vid}: FAILED: {run.error}")
            return
        summary.partition_wall_s[vid], summary.partition_work_s[vid] = run.wall_s, run.work_s
        if run.skipped:
            summary.partition_skipped.append(vid)
        summary.run_ids.append(run.run_id)
        retried = f", {run.attempts} attempts" if run.attempts > 1 else ""
        count = f"[{len(summary.partition_wall_s) + len(summary.failures)}/{len(ok)}]"
        what = "up to date already, nothing extracted" if run.skipped else f"extraction {run.work_s:.1f}s"
        echo(f"  {count} {vid}: {run.wall_s:.1f}s ({what}{retried})")

    t0 = time.perf_counter()
    # One video failing (changed since probing, say) does not stop the others: reported, then on.
    runner.run(FEATURES_JOB, cfg(FEATURES_JOB), partitions=ok, on_done=done, raise_on_failure=False)
    summary.stage_seconds["features (all partitions)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    (res,) = runner.run(TRAINING_JOB, cfg(TRAINING_JOB))
    summary.run_ids.append(res.run_id)
    summary.stage_seconds["train, score, report (one run)"] = time.perf_counter() - t0
    for step, seconds in res.step_seconds.items():
        summary.stage_seconds[f"  step {step}"] = seconds
    summary.report_path = store.location(keys.report_md)
    summary.report = store.read_json(keys.report_json)
    return summary


def format_summary(summary: PipelineSummary, storage: VadStorage, tracking: str) -> str:
    """The closing text: AUC per scorer, timings, where the report is, how to open the UIs."""
    lines = ["", f"== {summary.dataset}: frame-level results"]
    report = summary.report or {}
    if report.get("n_labelled_frames"):
        lines.append(
            f"   on {report['n_labelled_frames']} labelled frames of {len(report['evaluated_videos'])} "
            f"evaluated videos ({report['n_anomalous_frames']} anomalous)"
        )
        lines.append(f"   {'scorer':<12} {'ROC AUC':>8} {'AP':>7} {'smoothed':>9} {'paper-protocol*':>16}")
        for name, r in report["scorers"].items():
            m = r.get("metrics")
            if m:
                sm = m.get("smoothed_roc_auc")
                lines.append(
                    f"   {name:<12} {m['roc_auc']:>8.4f} {m['average_precision']:>7.4f} "
                    f"{(f'{sm:.4f}' if sm is not None else 'n/a'):>9} {m['paper_protocol_auc']:>16.4f}"
                )
            else:
                lines.append(f"   {name:<12} n/a")
        lines.append(
            "   * paper protocol = ROC AUC of the binarised batch decisions (balanced accuracy), "
            "reported beside the headline, not instead of it"
        )
    else:
        lines.append(f"   no labelled frames: {report.get('note') or 'no ground truth'}")
    promotion = report.get("promotion") or {}
    if promotion:
        why = "; ".join((promotion.get("decision") or {}).get("reasons") or [])
        lines.append(
            f"== model: {promotion.get('model_name')} version {promotion.get('challenger')} "
            f"{promotion.get('outcome')}, champion {promotion.get('champion_after') or 'none'}"
            + (f" ({why})" if promotion.get("outcome") == "rejected" else "")
        )
    lines.append("== wall time")
    for stage, seconds in summary.stage_seconds.items():
        lines.append(f"   {stage:<44} {seconds:8.1f} s")
    if summary.overhead_per_partition_s is not None:
        lines.append(
            f"   Dagster overhead per video partition run (wall - extraction): {summary.overhead_per_partition_s:.2f} s"
        )
    if summary.partition_skipped:
        lines.append(
            f"   ({len(summary.partition_skipped)} of {len(summary.partition_wall_s)} partition runs found their "
            "tables up to date, extracted before (the new-footage sensor?): left out of the overhead)"
        )
    lines += [
        "== outputs",
        f"   report:   {summary.report_path}",
        f"   tables:   {storage.store().location(summary.dataset)}",
        f"   tracking: {tracking}",
        "== explore",
        "   make ui    # Dagster UI (assets, runs, sensor, schedule) and MLflow UI, on 127.0.0.1",
    ]
    return "\n".join(lines)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`vad demo`."""
    parser = commands.add_parser(
        "demo", help="materialize every asset of a dataset and print the figures", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dataset", help="spec name or YAML path (default: VAD_DATASET, else demo)")
    parser.add_argument("--config", help="JSON file of asset configs: {asset_name: {field: value}}")
    parser.add_argument("--summary-json", help="also write the timings and figures here")
    parser.add_argument("--log-level", default="WARNING", help="Dagster console log level (default WARNING)")
    parser.set_defaults(run=run)


def _run_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VADInputError(f"--config {path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise VADInputError(f"--config {path}: expected {{asset_name: {{field: value}}}}")
    return data


def run(args: argparse.Namespace) -> int:
    if args.dataset:
        os.environ["VAD_DATASET"] = args.dataset
    storage = VadStorage()
    spec = load_spec(home=storage.root())
    run_config = {**spec.run_config, **_run_config(args.config)}
    os.environ["DAGSTER_HOME"] = str(dagster_home(storage.root()))
    from vad_pipeline.definitions import defs  # after DAGSTER_HOME: the definitions read the environment

    total = time.perf_counter()
    print(f"== dataset {spec.name!r}: footage {spec.footage_root}")
    print(f"   VAD_HOME={storage.root()}  DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    t0 = time.perf_counter()
    if ensure_footage(spec):
        print(f"   generated demo footage in {time.perf_counter() - t0:.1f} s")
    generate_s = time.perf_counter() - t0
    with DagsterInstance.get() as instance:
        runner = _cluster_runner(instance) if is_cluster() else None
        if runner is not None:
            print(f"   cluster profile: runs submitted to {runner.client.url}, tables in {storage.store_location()}")
        try:
            summary = materialize_all(
                defs, instance, spec, storage, run_config, log_level=args.log_level, runner=runner
            )
        except ClusterRunError as exc:
            print(f"vad demo: {exc}", file=sys.stderr)
            return 1
    summary.stage_seconds = {
        "generate footage": generate_s,
        **summary.stage_seconds,
        "total": time.perf_counter() - total,
    }
    print(format_summary(summary, storage, MLflowTracker().describe()))
    if MLflowTracker().owns_store():
        print("   mlflow ui --backend-store-uri " + MLflowTracker().resolved_uri())
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps({**summary.to_dict(), "report": summary.report}, indent=1))
    for failure in summary.failures:
        print(f"vad demo: error: {failure}", file=sys.stderr)
    return 1 if summary.failures else 0


def _cluster_runner(instance: DagsterInstance) -> ClusterRunner:
    """The cluster profile's runner: submit through the webserver named by VAD_DAGSTER_URL, with the
    dataset and backbone this shell chose (the workers' own environment is the cluster's)."""
    url = require(["VAD_DAGSTER_URL"])["VAD_DAGSTER_URL"]
    chosen = {
        "dataset": {"spec": os.environ.get("VAD_DATASET")},
        "backbone": {"name": os.environ.get("VAD_BACKBONE"), "device": os.environ.get("VAD_DEVICE")},
    }
    resources = {name: {k: v for k, v in fields.items() if v} for name, fields in chosen.items()}
    return ClusterRunner(DagsterClient(url), instance, resources=resources)


__all__ = [
    "InProcessRunner",
    "JobRunner",
    "PipelineSummary",
    "RunFailed",
    "add_parser",
    "format_summary",
    "materialize_all",
    "run",
    "run_failure",
]

"""`new_footage_sensor`: new or changed videos under the footage root become feature runs.

Each tick lists the footage (no decoding: names, sizes and mtimes only), compares it with the
video partitions and with the fingerprints the previous tick stored in the cursor, adds a
partition for every new video and requests a features run for every new or changed one, plus
one manifest refresh whenever the footage differs from the last tick's (new, changed, removed
or restored videos). Run keys carry the video's fingerprint, so a request is never made twice
for the same state of a file: ticks are idempotent. Videos that disappeared are reported in the
tick's log and left alone: their partitions and tables stay until the cleanup job removes them,
and the refreshed manifest keeps them out of training (`automation.inventory`). A video that
reappears under a known partition is re-requested (extraction skips it when its table is still
up to date).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from vad_core.errors import VADInputError
from vad_pipeline.automation.fingerprints import stat_fingerprint
from vad_pipeline.automation.jobs import (
    FEATURES_JOB,
    FOOTAGE_JOB,
    check_asset_configs,
    context_job_resolver,
    features_job,
    footage_job,
    job_run_config,
)
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME, video_partitions
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.specs import DatasetSpec

# discover(spec) -> {video_id: fingerprint}, plus the ids it could not read this tick.
Discover = Callable[[DatasetSpec], tuple[dict[str, str], dict[str, str]]]
# Fingerprint prefix of a video discovery already knows is unusable: tracked in the cursor (its
# appearance refreshes the manifest, which lists it as an error) but never extracted.
UNUSABLE = "unusable:"


@dataclass(frozen=True)
class FootagePlan:
    """What one tick decided. `cursor` maps every video seen now to its fingerprint."""

    new: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    cursor: dict[str, str]

    @property
    def to_extract(self) -> tuple[str, ...]:
        return self.new + self.changed


def discover_footage(spec: DatasetSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The videos under `spec.footage_root` kept by the spec, with cheap fingerprints.

    Returns `({video_id: fingerprint}, {video_id: error})`; a file that vanishes or cannot be
    stat-ed mid-scan lands in the second mapping instead of failing the tick.
    """
    from vad_core.footage import discover_videos

    found: dict[str, str] = {}
    errors: dict[str, str] = {}
    for source in discover_videos(spec.footage_root, keep=spec.keeps, keep_folder=spec.may_hold):
        if source.error is not None:  # an unreadable folder, an id two videos share: the manifest says so
            found[source.video_id] = UNUSABLE + hashlib.sha256(source.error.encode()).hexdigest()[:16]
            continue
        try:
            found[source.video_id] = stat_fingerprint(source.path)
        except OSError as exc:
            errors[source.video_id] = f"{source.path}: {exc}"
    return found, errors


def plan_footage_update(
    found: Mapping[str, str],
    partitions: Iterable[str],
    cursor: Mapping[str, str],
    has_features: Callable[[str], bool],
) -> FootagePlan:
    """Decide a tick: new = no partition yet; changed = fingerprint differs from the last tick's,
    a partition whose features were never written (e.g. added before a failed run), or a known
    partition that reappears after a tick without it (a restored video: its table may be for
    other content)."""
    known = set(partitions)
    usable = {v for v, fp in found.items() if not fp.startswith(UNUSABLE)}
    new = tuple(sorted(v for v in usable if v not in known))

    def is_changed(v: str) -> bool:
        if v in cursor:
            return cursor[v] != found[v]
        return bool(cursor) or not has_features(v)  # reappeared since the last tick, or never extracted

    changed = tuple(sorted(v for v in usable if v in known and is_changed(v)))
    removed = tuple(sorted(v for v in known if v not in found))
    return FootagePlan(new=new, changed=changed, removed=removed, cursor=dict(found))


def _load_cursor(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}  # an unreadable cursor only costs one re-check of every video
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def build_new_footage_sensor(
    discover: Discover = discover_footage,
    name: str = "new_footage_sensor",
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """The sensor, with the footage lister injectable (tests pass their own)."""

    @sensor(
        name=name,
        jobs=[features_job, footage_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Adds a video partition for each new video under the footage root and "
        "requests its features; re-extracts changed videos; reports removed ones.",
    )
    def _sensor(context: SensorEvaluationContext, storage: VadStorage, dataset: DatasetResource):
        try:
            spec = dataset.load(home=storage.root())
            if (resolve := context_job_resolver(context)) is not None:
                check_asset_configs(spec.run_config, resolve, f"{spec.name}: run_config")
        except VADInputError as exc:
            context.log.error(str(exc))
            return SkipReason(f"not launching anything: {exc}")
        if not spec.footage_root.is_dir():
            return SkipReason(f"footage root {spec.footage_root} does not exist yet (dataset {spec.name!r})")
        found, errors = discover(spec)
        for vid, msg in errors.items():
            context.log.warning(f"could not fingerprint {vid}: {msg}")
        previous = _load_cursor(context.cursor)
        store, keys = storage.store(), storage.dataset_keys(spec.name)
        # A video that failed to stat this tick keeps its old fingerprint: no false "changed".
        found = {**{v: previous[v] for v in errors if v in previous}, **found}
        plan = plan_footage_update(
            found,
            context.instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME),
            previous,
            has_features=lambda vid: store.exists(keys.features(vid)),
        )
        if plan.removed:
            context.log.warning(
                f"{len(plan.removed)} partitioned videos are gone from {spec.footage_root}: "
                f"{', '.join(plan.removed[:20])}{' ...' if len(plan.removed) > 20 else ''} "
                "(left out of training once the manifest is refreshed; the cleanup_stale_job deletes "
                "their partitions and tables)"
            )
        cursor = json.dumps(plan.cursor, sort_keys=True)
        if not plan.to_extract:
            # Removed (or restored) videos still change what the manifest should say: refresh it once.
            if plan.cursor != previous:
                return SensorResult(run_requests=[_manifest_request(plan, spec)], cursor=cursor)
            return SensorResult(
                skip_reason=SkipReason(
                    f"no new or changed footage: {len(found)} videos known"
                    + (f", {len(plan.removed)} removed" if plan.removed else "")
                ),
                cursor=cursor,
            )
        requests = [
            RunRequest(
                job_name=FEATURES_JOB,
                partition_key=vid,
                run_key=f"{vid}@{found[vid]}",
                run_config=job_run_config(FEATURES_JOB, spec.run_config),
                tags={"vad/dataset": spec.name, "vad/reason": "new" if vid in plan.new else "changed"},
            )
            for vid in plan.to_extract
        ]
        requests.append(_manifest_request(plan, spec))
        context.log.info(f"{len(plan.new)} new and {len(plan.changed)} changed videos: requesting features")
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[video_partitions.build_add_request(list(plan.new))] if plan.new else [],
            cursor=cursor,
        )

    return _sensor


def _manifest_request(plan: FootagePlan, spec: DatasetSpec) -> RunRequest:
    digest = hashlib.sha256(json.dumps(plan.cursor, sort_keys=True).encode()).hexdigest()[:16]
    return RunRequest(
        job_name=FOOTAGE_JOB, run_key=f"manifest@{digest}", run_config=job_run_config(FOOTAGE_JOB, spec.run_config)
    )


new_footage_sensor = build_new_footage_sensor()


__all__ = [
    "UNUSABLE",
    "Discover",
    "FootagePlan",
    "build_new_footage_sensor",
    "discover_footage",
    "new_footage_sensor",
    "plan_footage_update",
]

"""`new_footage_sensor`: new or changed videos under the footage root become feature runs.

A feature run (`features_job`) also scores its video with the promoted champion once the features
are written (`live_scores`, `live_alerts`, after `clip_features` in the same run; skipped until a
champion exists), so one request per video state gives features, then live scores and alerts.

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

The cursor stays small whatever the footage: `{"digest": ..., "videos": N}`. The per-video
fingerprints it stands for live in the store under `DatasetKeys.footage_state(digest)`, a
snapshot named by its content, so a tick that failed before Dagster saved its cursor leaves the
previous snapshot in place; older snapshots are pruned. (Dagster shows the cursor on the sensor
page: a JSON of every video's fingerprint made that page unusable on a large dataset.)
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
from vad_core.io.store import TableStore
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
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
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


def state_digest(fingerprints: Mapping[str, str]) -> str:
    """The name of a fingerprint snapshot: 16 hex digits of the sha256 of its sorted JSON."""
    return hashlib.sha256(json.dumps(dict(fingerprints), sort_keys=True).encode()).hexdigest()[:16]


def load_footage_state(raw: str | None, store: TableStore, keys: DatasetKeys) -> dict[str, str]:
    """The fingerprints of the previous tick: the stored snapshot the cursor names (a cursor of the
    old form, the whole mapping, is read as it is). Unreadable or missing state only costs one
    re-check of every video."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    if isinstance(data, dict) and set(data) == {"digest", "videos"}:
        try:
            data = store.read_json(keys.footage_state(str(data["digest"])))
        except VADInputError:
            data = None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_footage_state(
    fingerprints: Mapping[str, str], store: TableStore, keys: DatasetKeys, keep: str | None = None
) -> str:
    """Store the snapshot and return the cursor naming it; prune snapshots other than this one and
    `keep` (the digest the current cursor names, still needed should this tick fail)."""
    digest = state_digest(fingerprints)
    key = keys.footage_state(digest)
    if not store.exists(key):
        store.write_json(key, dict(fingerprints))
    wanted = {key} | ({keys.footage_state(keep)} if keep else set())
    folder = key.rsplit("/", 1)[0]
    for old in store.list(folder, suffix=".json"):
        if old.rsplit("/", 1)[-1].startswith("footage_") and old not in wanted:
            store.delete(old)
    return json.dumps({"digest": digest, "videos": len(fingerprints)})


def _cursor_digest(raw: str | None) -> str | None:
    try:
        data = json.loads(raw or "")
    except json.JSONDecodeError:
        return None
    return str(data["digest"]) if isinstance(data, dict) and "digest" in data else None


def _named(label: str, ids: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
    return f"{len(ids)} {label} ({shown})"


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
        "requests its features, then its live scores and alerts (same run); re-extracts and rescores changed "
        "videos; reports removed ones.",
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
        store, keys = storage.store(), storage.dataset_keys(spec.name)
        previous = load_footage_state(context.cursor, store, keys)
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
        cursor = save_footage_state(plan.cursor, store, keys, keep=_cursor_digest(context.cursor))
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
        context.log.info(
            "; ".join(_named(label, ids) for label, ids in (("new", plan.new), ("changed", plan.changed)) if ids)
            + f": requesting their features and a manifest refresh ({len(found)} videos known)"
        )
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[video_partitions.build_add_request(list(plan.new))] if plan.new else [],
            cursor=cursor,
        )

    return _sensor


def _manifest_request(plan: FootagePlan, spec: DatasetSpec) -> RunRequest:
    return RunRequest(
        job_name=FOOTAGE_JOB,
        run_key=f"manifest@{state_digest(plan.cursor)}",
        run_config=job_run_config(FOOTAGE_JOB, spec.run_config),
    )


new_footage_sensor = build_new_footage_sensor()


__all__ = [
    "UNUSABLE",
    "Discover",
    "FootagePlan",
    "build_new_footage_sensor",
    "discover_footage",
    "load_footage_state",
    "new_footage_sensor",
    "plan_footage_update",
    "save_footage_state",
    "state_digest",
]

"""Live assets: each video scored with the promoted champion as soon as its features exist, and its alerts.

`live_scores` (per video partition) reads the video's feature table and the champion live model
from the store (`DatasetKeys.live_model("champion", ...)`, written by promotion: no MLflow needed
to score), scores with `LiveDetector.score` and writes the clip scores and decisions
(`live/<video>/clips.parquet`) and the frame scores (`frames.parquet`: a frame takes the maximum
of the clips covering it, `clips_to_frames`), both tagged with the model version. `live_alerts`
turns the decided clips into alert intervals (`live/<video>/alerts.parquet`, the peak tile's box
from the feature rows) and hands them to the `alerts` resource (a JSONL file, a webhook); its
check `no_alerts` warns in the UI when a video has any.

Decision rules: these assets decide each clip by the rule stored in the model, the training
batch's statistics (`vad_core.live.decision`: threshold = mean + k * std of the out-of-fold
scores of the training clips), so one new video, or one clip, is decided alone. Batch scoring
(`segment_scores`) keeps the paper's per-batch rule, mu_b + k * std_b of each batch of 8192 clips.

Both assets are in the features job, after `clip_features`: the run the new-footage sensor
launches for a new or changed video scores it in the same run, once its features are written.
They depend on no training asset: the champion is read from the store, so the training job
(everything downstream of `feature_index`) never runs them.
"""

import json
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetObservation,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from vad_core.errors import VADInputError
from vad_core.evaluation.formatting import markdown_table
from vad_core.evaluation.metrics import clips_to_frames
from vad_core.io.hashing import sha256_bytes
from vad_core.io.store import TableStore
from vad_core.live import LiveDetector, alert_intervals, boxes_from_rows, live_model_from_files
from vad_core.live.detector import DETECTOR_FILE, LIVE_FILE
from vad_pipeline.assets.common import counts_metadata, dataset_spec, load_feature_rows, read_table
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.automation.jobs import FEATURES_JOB
from vad_pipeline.automation.partitions import video_partitions
from vad_pipeline.resources.alerting import AlertSink, alert_records
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage

NO_CHAMPION = "no champion model: train and promote first"
# The feature spec keys a champion and a feature table must agree on: the rows of another backbone,
# weights, clip cut or pooling are other features, and scores of them would mean nothing.
STRICT_SPEC_KEYS = ("backbone", "weights_sha256", "dim", "clip_config", "region_config")
READ_ATTEMPTS = 3  # a champion being replaced mid-read (detector.pt first, live.json last) is read again
SHOWN_ALERTS = 20


def read_champion(store: TableStore, keys: DatasetKeys, device: str | None = None) -> LiveDetector | None:
    """The champion live model of the store, or None when no champion was promoted yet.

    Promotion writes `detector.pt` then `live.json`; a read that overlaps it sees a checkpoint
    whose sha256 differs from the one `live.json` records, and is repeated (a few times) until
    the pair agrees; `live_model_from_files` then checks it again and loads it.
    """
    live_key, detector_key = keys.live_model("champion", LIVE_FILE), keys.live_model("champion", DETECTOR_FILE)
    if not store.exists(live_key):
        return None
    files: dict[str, bytes] = {}
    for attempt in range(READ_ATTEMPTS):
        files = {LIVE_FILE: store.read_bytes(live_key), DETECTOR_FILE: store.read_bytes(detector_key)}
        try:
            recorded = json.loads(files[LIVE_FILE]).get("detector_sha256")
        except (ValueError, AttributeError):
            break  # not a live.json at all: live_model_from_files says so
        if recorded == sha256_bytes(files[DETECTOR_FILE]):
            break
        time.sleep(0.2 * (attempt + 1))
    return live_model_from_files(files, device=device, where=store.location(live_key).rsplit("/", 1)[0])


def _same(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


def spec_mismatches(model_spec: dict[str, str], table_meta: dict[str, str]) -> dict[str, tuple[str, str]]:
    """`{key: (model's, table's)}` for the STRICT_SPEC_KEYS both record and that differ (JSON compared parsed)."""
    return {
        k: (model_spec[k], table_meta[k])
        for k in STRICT_SPEC_KEYS
        if k in model_spec and k in table_meta and not _same(model_spec[k], table_meta[k])
    }


def check_compatible(live: LiveDetector, table_meta: dict[str, str], where: str) -> list[str]:
    """Raise when the feature table is not what the model was trained on; returns warnings (other tile boxes)."""
    bad = spec_mismatches(live.feature_spec, table_meta)
    if live.n_tiles and "n_tiles" in table_meta and int(table_meta["n_tiles"]) != live.n_tiles:
        bad["n_tiles"] = (str(live.n_tiles), table_meta["n_tiles"])
    if bad:
        text = "; ".join(f"{k}: model {m[:60]!r}, table {t[:60]!r}" for k, (m, t) in sorted(bad.items()))
        raise VADInputError(
            f"{where}: the champion was trained on other features ({text}): re-extract with the champion's "
            "settings or train and promote a model on these"
        )
    boxes = ("tile_boxes", live.feature_spec.get("tile_boxes"), table_meta.get("tile_boxes"))
    if boxes[1] and boxes[2] and not _same(boxes[1], boxes[2]):
        return [
            f"{where}: tile boxes differ from the training videos' (another frame size?): tiles are compared by index"
        ]
    return []


def _no_champion(context: AssetExecutionContext, where: str) -> None:
    """No champion yet. In the features job (what the new-footage sensor launches for every new video)
    this is a skip: before the first promotion every new video gets here, and a failure would mark
    a features run failed whose features were written fine, launch its run retries for nothing and
    bury real failures under one red run per video until someone trains. The step succeeds without
    a materialization (so `live_alerts` and its check are skipped), with a warning in the run's log
    and an observation on the partition saying why. Asked for on its own (the UI's Materialize, a
    backfill) it fails: whoever wanted live scores gets a red step that says what to do."""
    message = f"{NO_CHAMPION} (nothing at {where})"
    if context.run.job_name != FEATURES_JOB:
        raise Failure(description=message)
    context.log.warning(f"{context.partition_key}: live scoring skipped: {message}")
    context.log_event(
        AssetObservation(
            asset_key=context.asset_key,
            partition=context.partition_key,
            description=message,
            metadata={"skipped": message},
        )
    )


@asset(
    partitions_def=video_partitions,
    group_name="live",
    deps=["clip_features"],
    output_required=False,
    description="One video scored with the promoted champion (no retraining): clip scores, the arg-max tile, the "
    "model's stored training-batch threshold and decisions, and frame scores; tagged with the model version. "
    "Skipped in the features job until a champion exists.",
)
@user_errors
def live_scores(
    context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource, backbone: BackboneResource
) -> Iterator[MaterializeResult]:
    spec = dataset_spec(storage, dataset)
    video_id = context.partition_key
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    live = read_champion(store, keys, device=backbone.resolved_device())
    if live is None:
        _no_champion(context, store.location(keys.live_model("champion", LIVE_FILE)))
        return
    feature_key = keys.features(video_id)
    if not store.exists(feature_key):
        raise VADInputError(f"{video_id}: no feature table at {store.location(feature_key)}: materialize clip_features")
    meta = store.read_metadata(feature_key)
    warnings = check_compatible(live, meta, video_id)
    for warning in warnings:
        context.log.warning(warning)
    rows, x = load_feature_rows(store, keys, [video_id])
    if rows.empty:
        raise VADInputError(f"{video_id}: feature table {store.location(feature_key)} has no rows")
    version = live.info.get("model_version", "")
    context.log.info(
        f"{video_id}: scoring {len(rows)} rows with champion {live.info.get('model_name', '?')} version "
        f"{version or '?'} (threshold {live.rule.threshold:.6g}: mean + {live.rule.k:g} std of "
        f"{live.rule.n_clips} training clips)"
    )
    start = time.perf_counter()
    scored = live.score(rows, x)
    seconds = time.perf_counter() - start
    clips = scored.clips
    n_frames = int(meta["n_frames"]) if meta.get("n_frames") else int(clips["end_frame"].max())
    frames = clips_to_frames(clips, {video_id: n_frames})
    table_meta = {
        "dataset": spec.name,
        "video_id": video_id,
        "model_name": live.info.get("model_name", ""),
        "model_version": version,
        "mlflow_run_id": live.info.get("mlflow_run_id", ""),
        "decision_rule": json.dumps(live.rule.to_dict(), sort_keys=True),
        "threshold": repr(float(live.rule.threshold)),
        "features_sha256": store.sha256(feature_key),
        "detector_fingerprint": live.detector.fingerprint,
    }
    store.write_table(keys.live(video_id, "clips"), clips, table_meta)
    store.write_table(keys.live(video_id, "frames"), frames, table_meta)
    flagged = int(clips["anomalous"].sum())
    context.log.info(f"{video_id}: {flagged} of {len(clips)} clips above the threshold")
    yield MaterializeResult(
        metadata={
            **counts_metadata(clips),
            "model_name": table_meta["model_name"],
            "model_version": version,
            "mlflow_run_id": table_meta["mlflow_run_id"],
            "decision_rule": f"{live.rule.kind}: mean {live.rule.mean:.6g} + {live.rule.k:g} x std {live.rule.std:.6g}",
            "threshold": float(live.rule.threshold),
            "clips": len(clips),
            "flagged_clips": flagged,
            "frames": len(frames),
            "flagged_frames": int(frames["anomalous"].sum()),
            "max_clip_score": float(clips["score"].max()),
            "rows_per_second": len(rows) / max(seconds, 1e-9),
            "path": MetadataValue.path(store.location(keys.live(video_id, "clips"))),
            "frames_path": MetadataValue.path(store.location(keys.live(video_id, "frames"))),
            **({"warnings": MetadataValue.md("\n".join(f"- {w}" for w in warnings))} if warnings else {}),
        },
        tags={"vad/model_version": version} if version else None,
    )


# Evaluated with every materialization of a video's alerts (a check spec of `live_alerts`, in its
# step): Dagster's stand-alone checks on partitioned assets are still a preview feature. Listed in
# vad_pipeline.checks with the other checks.
NO_ALERTS = AssetCheckSpec(
    "no_alerts",
    asset="live_alerts",
    description="The video raised no live alerts (a warning per video: each alert interval listed with its frames, "
    "peak score and model version).",
)


def no_alerts_result(alerts: pd.DataFrame, video_id: str, model_version: str) -> AssetCheckResult:
    """`NO_ALERTS`' result for one video's alerts table (`vad_core.live.ALERT_COLUMNS`): passes when empty,
    else a warning listing the first five intervals."""
    shown = "; ".join(
        f"frames {a.first_frame}-{a.last_frame} (peak {a.peak_score:.4g} in tile {a.peak_tile})"
        for a in alerts.head(5).itertuples()
    )
    more = f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""
    return AssetCheckResult(
        check_name=NO_ALERTS.name,
        passed=alerts.empty,
        severity=AssetCheckSeverity.WARN,
        description=f"{len(alerts)} alert(s) in {video_id} (model version {model_version}): {shown}{more}"
        if len(alerts)
        else f"no alerts in {video_id} (model version {model_version})",
        metadata={
            "alerts": len(alerts),
            "alerted_frames": int((alerts["last_frame"] - alerts["first_frame"] + 1).sum()) if len(alerts) else 0,
            "model_version": model_version,
        },
    )


def alerts_markdown(alerts: pd.DataFrame, limit: int = SHOWN_ALERTS) -> str:
    """The alerts as a Markdown table (first `limit` rows), "none" when there are none."""
    if alerts.empty:
        return "none"
    head = ["first_frame", "last_frame", "peak_score", "peak_clip", "peak_tile", "box (x, y, w, h)"]
    rows = [
        [int(a["first_frame"]), int(a["last_frame"]), f"{a['peak_score']:.6g}", int(a["peak_clip"])]
        + [int(a["peak_tile"]), f"({a['box_x']}, {a['box_y']}, {a['box_w']}, {a['box_h']})"]
        for a in alerts.head(limit).to_dict("records")
    ]
    more = f"\n\n... and {len(alerts) - limit} more" if len(alerts) > limit else ""
    return markdown_table(head, rows) + more


@asset(
    partitions_def=video_partitions,
    group_name="live",
    deps=["live_scores"],
    check_specs=[NO_ALERTS],
    description="The alerts of one video: each run of consecutive anomalous live clips as one interval (first and "
    "last frame, peak score, the peak tile's box, model version), sent to the alert sinks (JSONL, webhook).",
)
@user_errors
def live_alerts(
    context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource, alerts: AlertSink
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    video_id = context.partition_key
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    clips_key = keys.live(video_id, "clips")
    clips = read_table(store, clips_key, "live_scores")
    scores_meta = store.read_metadata(clips_key)
    version = scores_meta.get("model_version", "")
    feature_key = keys.features(video_id)
    box_columns = ["tile", "x", "y", "w", "h"]
    boxes = boxes_from_rows(store.read_table(feature_key, columns=box_columns).to_pandas())
    table = alert_intervals(clips, boxes, model_version=version)
    meta = {k: scores_meta.get(k, "") for k in ("dataset", "video_id", "model_name", "model_version", "threshold")}
    store.write_table(keys.live(video_id, "alerts"), table, {**meta, "live_scores_sha256": store.sha256(clips_key)})
    records = alert_records(table, spec.name, {"model_name": meta["model_name"]})
    delivery = alerts.deliver(records, home=storage.root(), dataset=spec.name)
    for error in delivery.errors:
        context.log.error(f"{video_id}: alert webhook failed, the alerts stay in {delivery.jsonl}: {error}")
    context.log.info(f"{video_id}: {len(table)} alert(s); {delivery.summary()}")
    frames_flagged = int((table["last_frame"] - table["first_frame"] + 1).sum()) if len(table) else 0
    return MaterializeResult(
        metadata={
            **counts_metadata(table),
            "alerts": len(table),
            "alerted_frames": frames_flagged,
            "peak_score": float(np.max(table["peak_score"])) if len(table) else 0.0,
            "model_version": version,
            "alerts_table": MetadataValue.md(alerts_markdown(table)),
            "path": MetadataValue.path(store.location(keys.live(video_id, "alerts"))),
            "jsonl": MetadataValue.path(delivery.jsonl),
            "jsonl_new": delivery.written,
            "jsonl_already": delivery.already,
            "webhook": delivery.webhook or "not configured",
            "webhook_posted": delivery.posted,
            "webhook_pending": delivery.pending,
            "webhook_errors": MetadataValue.md("\n".join(f"- {e}" for e in delivery.errors) or "none"),
        },
        check_results=[no_alerts_result(table, video_id, version)],
        tags={"vad/model_version": version} if version else None,
    )


__all__ = [
    "NO_ALERTS",
    "NO_CHAMPION",
    "STRICT_SPEC_KEYS",
    "alerts_markdown",
    "check_compatible",
    "live_alerts",
    "live_scores",
    "no_alerts_result",
    "read_champion",
    "spec_mismatches",
]

"""Live scoring and alerts, end to end on the tiny generated footage: the new-footage sensor's runs score each
new video with the champion in the store after its features (skipped before any champion), the scores equal
`LiveDetector.score`, the alerts are hand-checked, reach the JSONL and a webhook on 127.0.0.1 once, and warn."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dagster import AssetKey, DagsterEventType, DagsterInstance, SensorResult, build_sensor_context, materialize

from tests.core._synthetic import TINY
from tests.pipeline._webhook import Hook, webhook_server
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import clips_to_frames
from vad_core.footage.clips import ClipConfig, tile_boxes
from vad_core.live import DecisionRule, LiveDetector, feature_spec_from_metadata, live_model_files
from vad_pipeline.assets.common import load_feature_rows
from vad_pipeline.assets.live import (
    NO_CHAMPION,
    alerts_markdown,
    check_compatible,
    live_alerts,
    live_scores,
    read_champion,
)
from vad_pipeline.automation.jobs import FEATURES_JOB
from vad_pipeline.automation.sensors import new_footage_sensor
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import AlertSinks, BackboneResource, DatasetResource, VadStorage
from vad_pipeline.resources.storage import DatasetKeys

K = DatasetKeys("livecam")
SPEC = """\
name: livecam
footage_root: {root}
layout: files
train: ["train/*"]
run_config: {{clip_features: {{short_side: 96, tile_size: 64, batch_size: 16}}}}
"""
RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=1, n_draws=2, max_share=0.3)
QUIET = DecisionRule(k=1.0, mean=1e9, std=1.0, n_clips=12)  # v7: flags nothing
LOUD = DecisionRule(k=1.0, mean=-1e9, std=1.0, n_clips=12)  # v8: flags every clip


@dataclass
class World:
    resources: dict
    storage: VadStorage
    instance: DagsterInstance
    hook: Hook
    jsonl: Path
    first_tick: SensorResult
    second_tick: SensorResult
    runs: dict  # label -> ExecuteInProcessResult
    live: dict  # version -> LiveDetector written as champion


def _tick(instance: DagsterInstance, resources: dict, cursor: str | None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = new_footage_sensor(ctx)
    assert isinstance(result, SensorResult)
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def _promote(storage: VadStorage, live: LiveDetector) -> None:
    """What promotion does (plan item 2): detector.pt first, live.json last, in the champion slot."""
    files = live_model_files(live)
    for name in ("detector.pt", "live.json"):
        storage.store().write_bytes(K.live_model("champion", name), files[name])


@pytest.fixture(scope="module")
def world(tiny_footage: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    footage_root = tiny_footage[0] / "footage"
    tmp = tmp_path_factory.mktemp("live")
    (tmp / "live.yaml").write_text(SPEC.format(root=footage_root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with contextlib.ExitStack() as stack:
        hook = stack.enter_context(webhook_server([200]))
        storage = VadStorage(home=str(tmp / "home"))
        resources = {
            "storage": storage,
            "dataset": DatasetResource(spec=str(tmp / "live.yaml")),
            "backbone": BackboneResource(name="pixelstats-2", device="cpu"),
            "alerts": AlertSinks(jsonl_path=str(tmp / "alerts.jsonl"), webhook_url=hook.url, backoff_s=0),
        }
        defs = make_definitions(resources)
        instance = stack.enter_context(DagsterInstance.ephemeral())
        job = defs.resolve_job_def(FEATURES_JOB)
        first = _tick(instance, resources, None)
        requests = {r.partition_key: r for r in first.run_requests if r.job_name == FEATURES_JOB}

        def run(label: str, video: str):
            req = requests[video]
            runs[label] = job.execute_in_process(
                partition_key=video, run_config=req.run_config, instance=instance, tags=req.tags
            )
            assert runs[label].success, label

        runs: dict = {}
        run("train/01", "train/01")  # no champion yet: features written, live scoring skipped
        run("train/02", "train/02")
        rows, x = load_feature_rows(storage.store(), K, ["train/01", "train/02"])
        detector = fit_detector(
            x, rows["video_id"].to_numpy(), replace(TINY, n_tiles=6), RECIPE, tiles=rows["tile"].to_numpy(np.int64)
        ).detector
        spec = feature_spec_from_metadata(storage.store().read_metadata(K.features("train/01")))
        live = {
            v: LiveDetector(detector, rule, spec, {"model_name": "vad-denoiser-livecam", "model_version": v})
            for v, rule in (("7", QUIET), ("8", LOUD))
        }
        _promote(storage, live["7"])
        run("test/01", "test/01")
        _promote(storage, live["8"])
        run("test/02", "test/02")
        run("test/02 again", "test/02")
        second = _tick(instance, resources, first.cursor)
        yield World(resources, storage, instance, hook, tmp / "alerts.jsonl", first, second, runs, live)
    torch.set_num_threads(threads)


def _events(result, kind: DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind]


def test_sensor_runs_score_each_new_video_after_its_features_once(world: World) -> None:
    requests = [r for r in world.first_tick.run_requests if r.job_name == FEATURES_JOB]
    assert sorted(r.partition_key for r in requests) == ["test/01", "test/02", "train/01", "train/02"]
    assert all(r.run_key.startswith(f"{r.partition_key}@") for r in requests)  # the fingerprint keys the run
    # The run of a new video materializes its features, then its live scores, then its alerts.
    order = [
        e.asset_key.to_user_string() for e in _events(world.runs["test/02"], DagsterEventType.ASSET_MATERIALIZATION)
    ]
    assert order == ["clip_features", "live_scores", "live_alerts"]
    # The same footage again: nothing requested twice.
    assert not world.second_tick.run_requests
    assert "no new or changed footage: 4 videos known" in world.second_tick.skip_reason.skip_message


def test_no_champion_skips_in_the_features_run_and_fails_when_asked_alone(world: World, tmp_path: Path) -> None:
    result = world.runs["train/01"]
    done = [e.asset_key.to_user_string() for e in _events(result, DagsterEventType.ASSET_MATERIALIZATION)]
    assert done == ["clip_features"]
    (observation,) = _events(result, DagsterEventType.ASSET_OBSERVATION)
    assert observation.asset_key == AssetKey("live_scores")
    assert observation.event_specific_data.asset_observation.description.startswith(NO_CHAMPION)
    skipped = {e.step_key for e in _events(result, DagsterEventType.STEP_SKIPPED)}
    assert skipped == {"live_alerts"} and not list(result.get_asset_check_evaluations())
    assert not world.storage.store().exists(K.live("train/01", "clips"))
    # Launched on its own (not by the features job), no champion is a failure saying what to do.
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", ["train/01"])
    alone = materialize(
        [live_scores],
        partition_key="train/01",
        instance=instance,
        resources={**world.resources, "storage": VadStorage(home=str(tmp_path))},
        raise_on_error=False,
    )
    assert not alone.success
    (failure,) = _events(alone, DagsterEventType.STEP_FAILURE)
    assert NO_CHAMPION in failure.event_specific_data.error.message


@pytest.mark.parametrize(("video", "version"), [("test/01", "7"), ("test/02", "8")])
def test_live_scores_equal_the_live_detector_and_carry_the_version(world: World, video: str, version: str) -> None:
    store = world.storage.store()
    rows, x = load_feature_rows(store, K, [video])
    expected = world.live[version].score(rows, x).clips
    clips, meta = store.read_frame(K.live(video, "clips"))
    pd.testing.assert_frame_equal(clips, expected.reset_index(drop=True), check_exact=False, rtol=0, atol=1e-9)
    assert (clips["anomalous"] == (clips["score"] > world.live[version].rule.threshold)).all()
    frames, frames_meta = store.read_frame(K.live(video, "frames"))
    pd.testing.assert_frame_equal(frames, clips_to_frames(expected, {video: 48}), check_exact=False, rtol=0, atol=1e-9)
    assert frames["frame"].tolist() == list(range(48))
    for m in (meta, frames_meta):
        assert (m["model_version"], m["model_name"]) == (version, "vad-denoiser-livecam")
        assert json.loads(m["decision_rule"]) == world.live[version].rule.to_dict()
    label = "test/02 again" if video == "test/02" else video
    (mat,) = [
        e.event_specific_data.materialization
        for e in _events(world.runs[label], DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_key == AssetKey("live_scores")
    ]
    assert mat.metadata["model_version"].value == version and mat.tags["vad/model_version"] == version
    assert mat.metadata["flagged_clips"].value == int(clips["anomalous"].sum())


def test_alerts_table_jsonl_webhook_and_check(world: World) -> None:
    store = world.storage.store()
    # test/01 under v7 (flags nothing): no alerts, the check passes.
    quiet, _ = store.read_frame(K.live("test/01", "alerts"))
    assert quiet.empty
    (ok,) = world.runs["test/01"].get_asset_check_evaluations()
    assert ok.passed and ok.check_name == "no_alerts"
    # test/02 under v8 (flags every clip): its three clips [0,16) [16,32) [32,48) are one interval.
    rows, x = load_feature_rows(store, K, ["test/02"])
    scored = world.live["8"].score(rows, x)
    peak_clip = int(np.argmax(scored.clips["score"].to_numpy()))
    in_peak = scored.rows[scored.rows["clip"] == peak_clip]
    peak_tile = int(in_peak["tile"].to_numpy()[np.argmax(in_peak["score"].to_numpy())])
    box = tile_boxes(128, 96, ClipConfig(short_side=96, tile_size=64))[peak_tile]
    alerts, meta = store.read_frame(K.live("test/02", "alerts"))
    assert alerts.to_dict(orient="records") == [
        {
            "video_id": "test/02",
            "first_frame": 0,
            "last_frame": 47,
            "first_clip": 0,
            "last_clip": 2,
            "peak_score": pytest.approx(float(scored.clips["score"].max()), abs=1e-9),
            "peak_clip": peak_clip,
            "peak_tile": peak_tile,
            "box_x": box[0],
            "box_y": box[1],
            "box_w": box[2],
            "box_h": box[3],
            "threshold": LOUD.threshold,
            "model_version": "8",
        }
    ]
    assert meta["model_version"] == "8"
    for label in ("test/02", "test/02 again"):
        (warn,) = world.runs[label].get_asset_check_evaluations()
        assert not warn.passed and warn.severity.value == "WARN"
        assert warn.description.startswith("1 alert(s) in test/02 (model version 8): frames 0-47")
    # The JSONL holds the alert once, and the webhook got it once, although test/02 was materialized twice.
    lines = [json.loads(line) for line in world.jsonl.read_text().splitlines()]
    assert [(r["video_id"], r["first_frame"], r["last_frame"], r["model_version"]) for r in lines] == [
        ("test/02", 0, 47, "8")
    ]
    assert world.hook.accepted() == lines
    (first, again) = [
        e.event_specific_data.materialization.metadata
        for label in ("test/02", "test/02 again")
        for e in _events(world.runs[label], DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_key == AssetKey("live_alerts")
    ]
    assert (first["alerts"].value, first["jsonl_new"].value, first["webhook_posted"].value) == (1, 1, 1)
    assert (again["alerts"].value, again["jsonl_new"].value, again["jsonl_already"].value) == (1, 0, 1)
    assert again["webhook_posted"].value == 0 and "| 0 | 47 |" in first["alerts_table"].value


def test_the_champion_must_have_been_trained_on_such_features(world: World) -> None:
    store = world.storage.store()
    live = read_champion(store, K)
    assert live is not None and live.info["model_version"] == "8" and live.rule == LOUD  # the last promoted
    meta = store.read_metadata(K.features("test/01"))
    assert check_compatible(live, meta, "test/01") == []
    with pytest.raises(VADInputError, match=r"test/01: the champion was trained on other features \(backbone: model"):
        check_compatible(live, {**meta, "backbone": "i3d"}, "test/01")
    with pytest.raises(VADInputError, match="n_tiles: model '6', table '4'"):
        check_compatible(live, {**meta, "n_tiles": "4"}, "test/01")
    boxes = json.dumps([[0, 0, 80, 80]] * 6)
    (warning,) = check_compatible(live, {**meta, "tile_boxes": boxes}, "test/01")
    assert "tile boxes differ" in warning
    # A pair caught mid-promotion (a new detector.pt, the old live.json) is refused, never mixed.
    files = live_model_files(world.live["7"])
    other = {**files, "detector.pt": files["detector.pt"] + b"x"}
    store.write_bytes(K.live_model("champion", "detector.pt"), other["detector.pt"])
    store.write_bytes(K.live_model("champion", "live.json"), other["live.json"])
    with pytest.raises(VADInputError, match="detector.pt sha256 differs"):
        read_champion(store, K)
    _promote(world.storage, world.live["8"])  # leave the champion as the other tests found it


def test_a_webhook_that_answers_503_is_shown_and_the_jsonl_kept(world: World, tmp_path: Path) -> None:
    with webhook_server([503]) as hook:
        sinks = AlertSinks(jsonl_path=str(tmp_path / "a.jsonl"), webhook_url=hook.url, retries=1, backoff_s=0)
        result = materialize(
            [live_alerts],
            partition_key="test/02",
            instance=world.instance,
            resources={**world.resources, "alerts": sinks},
        )
    assert result.success and len(hook.posts) == 2  # the first try and one retry
    (mat,) = result.asset_materializations_for_node("live_alerts")
    assert (mat.metadata["jsonl_new"].value, mat.metadata["webhook_posted"].value) == (1, 0)
    assert (
        mat.metadata["webhook_pending"].value == 1
        and "HTTP 503 after 1 retries" in mat.metadata["webhook_errors"].value
    )
    assert mat.metadata["webhook"].value == f"{hook.url.rsplit('/', 2)[0]}/..."  # the token is not shown
    (line,) = (tmp_path / "a.jsonl").read_text().splitlines()
    assert json.loads(line)["video_id"] == "test/02"


def test_a_user_error_in_live_scoring_is_one_line(world: World) -> None:
    world.instance.add_dynamic_partitions("videos", ["ghost"])
    result = materialize(
        [live_scores], partition_key="ghost", instance=world.instance, resources=world.resources, raise_on_error=False
    )
    (failure,) = _events(result, DagsterEventType.STEP_FAILURE)
    message = failure.event_specific_data.error.message
    assert "ghost: no feature table at " in message and message.strip().endswith("materialize clip_features")


def test_alerts_markdown_lists_the_first_alerts_and_counts_the_rest() -> None:
    alerts = pd.DataFrame(
        {"first_frame": [16, 80], "last_frame": [47, 95], "peak_score": [1.23456789, 2.0], "peak_clip": [1, 5],
         "peak_tile": [2, 0], "box_x": [10, 0], "box_y": [20, 0], "box_w": [30, 5], "box_h": [40, 5]}
    )  # fmt: skip
    assert alerts_markdown(alerts, limit=1) == (
        "| first_frame | last_frame | peak_score | peak_clip | peak_tile | box (x, y, w, h) |\n"
        "|---|---|---|---|---|---|\n"
        "| 16 | 47 | 1.23457 | 1 | 2 | (10, 20, 30, 40) |\n\n... and 1 more"
    )
    assert alerts_markdown(alerts.iloc[:0]) == "none"

"""model_promotion on a copy of the tiny pipeline's store, with a recording tracker holding the aliases.

Each test copies the store the session's tiny pipeline wrote (report, scores, challenger slot of
version 1), sets up a champion the way a previous run would have left it, materializes only
`model_promotion`, and checks the aliases, the store's champion slot, the version's tags and the
report's "Promotion" section.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dagster import materialize

from vad_pipeline.assets.promotion import model_promotion
from vad_pipeline.assets.training import model_name
from vad_pipeline.resources import DatasetResource, RecordingTracker, VadStorage
from vad_pipeline.resources.storage import DatasetKeys

K = DatasetKeys("tiny")
NAME = model_name("tiny")
OLD = {"detector.pt": b"the old champion's checkpoint", "live.json": b'{"old": "champion"}'}


@pytest.fixture
def copy(tiny_pipeline, tmp_path: Path, request: pytest.FixtureRequest):
    """(storage, tracker, challenger version) over a private copy of the tiny store; no champion yet."""
    src = Path(tiny_pipeline.storage.root()) / "tiny"
    shutil.copytree(src, tmp_path / "home" / "tiny")
    storage = VadStorage(home=str(tmp_path / "home"))
    store = storage.store()
    for name in OLD:  # the pipeline promoted version 1 already: start from before that
        store.delete(K.live_model("champion", name))
    tracker = RecordingTracker(name=f"promotion-{request.node.name}")
    tracker.reset()
    version = store.read_json(K.denoiser_info)["model_version"]
    tracker.set_model_alias(NAME, "challenger", version)
    return storage, tracker, version


def _run(tiny_pipeline, storage, tracker, **config) -> dict:
    spec_path = tiny_pipeline.resources["dataset"].spec
    result = materialize(
        [model_promotion],
        resources={"storage": storage, "dataset": DatasetResource(spec=spec_path), "tracker": tracker},
        run_config={"ops": {"model_promotion": {"config": config}}} if config else None,
        raise_on_error=False,
    )
    assert result.success, [e.step_failure_data.error for e in result.get_step_failure_events()]
    return result.asset_materializations_for_node("model_promotion")[0].metadata


def _old_champion(storage, tracker, version: str = "7", auc: str | None = None) -> None:
    store = storage.store()
    for name, data in OLD.items():
        store.write_bytes(K.live_model("champion", name), data)
    tracker.set_model_alias(NAME, "champion", version)
    if auc is not None:
        tracker.tag_model_version(NAME, version, {"frame_auc": auc})


def _slot(storage, slot: str) -> dict[str, bytes]:
    return {n: storage.store().read_bytes(K.live_model(slot, n)) for n in OLD}


def _set_report_auc(storage, auc: float) -> None:
    store = storage.store()
    data = store.read_json(K.report_json)
    data["scorers"]["diffusion"]["metrics"]["roc_auc"] = auc
    store.write_json(K.report_json, data)


def test_passing_gates_promote_the_challenger(tiny_pipeline, copy) -> None:
    storage, tracker, version = copy
    _old_champion(storage, tracker, auc="0.5")
    _set_report_auc(storage, 0.61234)
    meta = _run(tiny_pipeline, storage, tracker)
    assert tracker.model_version_by_alias(NAME, "champion") == version
    assert tracker.model_version_aliases(NAME, "7") == []  # the alias moved
    assert _slot(storage, "champion") == _slot(storage, "challenger")  # the store follows the alias
    tags = tracker.model_version_tags(NAME, version)
    assert tags["promotion.outcome"] == "promoted" and tags["promotion.champion_before"] == "7"
    assert {tags[f"promotion.gate.{g}"] for g in ("finite_scores", "memorization", "score_spread")} == {"pass"}
    assert "frame_auc: 0.6123 is not below the champion's 0.5000" in tags["promotion.reasons"]
    assert meta["outcome"].value == "promoted" and meta["champion"].value == version
    store = storage.store()
    record = store.read_json(K.promotion)
    assert record["champion_before"] == "7" and record["champion_after"] == version
    assert store.read_json(K.report_json)["promotion"] == record
    md, html = store.read_bytes(K.report_md).decode(), store.read_bytes(K.report_html).decode()
    assert "## Promotion" in md and "**promoted to champion**" in md and "Promotion</h2>" in html
    assert "| frame_auc | pass | 0.6123 |" in md
    assert "data:image/png;base64," in html  # the plots are still embedded after the re-render


def test_a_lower_auc_keeps_the_old_champion_and_says_why(tiny_pipeline, copy) -> None:
    storage, tracker, version = copy
    _old_champion(storage, tracker, auc="0.9")
    _set_report_auc(storage, 0.8)
    meta = _run(tiny_pipeline, storage, tracker)
    assert tracker.model_version_by_alias(NAME, "champion") == "7"
    assert _slot(storage, "champion") == OLD  # untouched
    tags = tracker.model_version_tags(NAME, version)
    assert tags["promotion.outcome"] == "rejected" and tags["promotion.gate.frame_auc"] == "fail"
    assert tags["promotion.reasons"] == "frame_auc: 0.8000 is below the champion's 0.9000"  # only the failed gate
    assert meta["champion"].value == "7" and meta["gate_frame_auc"].value.startswith("FAIL")
    md = storage.store().read_bytes(K.report_md).decode()
    assert "**not promoted; the champion is unchanged**" in md and "| frame_auc | FAIL | 0.8 |" in md
    # A tolerance of 0.1 lets the same challenger through: the gate compares with the champion's tag.
    _run(tiny_pipeline, storage, tracker, auc_tolerance=0.1)
    assert tracker.model_version_by_alias(NAME, "champion") == version
    assert _slot(storage, "champion") == _slot(storage, "challenger")


def test_non_finite_scores_keep_the_old_champion(tiny_pipeline, copy) -> None:
    storage, tracker, version = copy
    _old_champion(storage, tracker)  # a champion without an AUC tag
    store = storage.store()
    tiles, meta = store.read_frame(K.tile_scores)
    scores = tiles["score"].to_numpy(float).copy()
    scores[[0, 3]] = [np.nan, np.inf]
    store.write_table(K.tile_scores, tiles.assign(score=scores), meta)
    _run(tiny_pipeline, storage, tracker)
    assert tracker.model_version_by_alias(NAME, "champion") == "7" and _slot(storage, "champion") == OLD
    tags = tracker.model_version_tags(NAME, version)
    assert tags["promotion.outcome"] == "rejected" and tags["promotion.gate.finite_scores"] == "fail"
    assert tags["promotion.reasons"] == f"finite_scores: 2 of {len(scores)} row scores are not finite"


def test_memorization_above_the_bound_is_refused_and_a_first_model_is_promoted(tiny_pipeline, copy) -> None:
    storage, tracker, version = copy
    _run(tiny_pipeline, storage, tracker, max_memorization_auc=0.0)  # no detector memorizes less than 0
    assert tracker.model_version_by_alias(NAME, "champion") is None  # still no champion
    assert not storage.store().exists(K.live_model("champion", "live.json"))
    tags = tracker.model_version_tags(NAME, version)
    assert tags["promotion.gate.memorization"] == "fail" and tags["promotion.champion_before"] == "none"
    _run(tiny_pipeline, storage, tracker)  # the default bound: the first model becomes champion
    assert tracker.model_version_by_alias(NAME, "champion") == version
    assert _slot(storage, "champion") == _slot(storage, "challenger")
    # Again: already the champion, nothing moves, the slot is checked and kept.
    meta = _run(tiny_pipeline, storage, tracker)
    assert meta["outcome"].value == "already_champion" and tracker.model_version_by_alias(NAME, "champion") == version


def test_a_report_of_another_model_is_refused(tiny_pipeline, copy) -> None:
    storage, tracker, _ = copy
    store = storage.store()
    data = store.read_json(K.report_json)
    data["denoiser"]["model_version"] = "99"
    store.write_json(K.report_json, data)
    spec_path = tiny_pipeline.resources["dataset"].spec
    result = materialize(
        [model_promotion],
        resources={"storage": storage, "dataset": DatasetResource(spec=spec_path), "tracker": tracker},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "model version 99" in failure.step_failure_data.user_failure_data.description
    assert tracker.model_version_by_alias(NAME, "champion") is None


def test_a_rebuilt_report_keeps_the_promotion_only_while_the_scores_are_the_same(tiny_pipeline, copy) -> None:
    from vad_core.evaluation.report import ReportSettings
    from vad_pipeline.assets.evaluation import write_report

    storage, tracker, _ = copy
    _run(tiny_pipeline, storage, tracker)
    store, spec = storage.store(), tiny_pipeline.spec
    record = store.read_json(K.promotion)
    write_report(store, K, spec, ReportSettings(top_clips=1, max_curve_videos=1))  # what `vad report` does
    assert store.read_json(K.promotion) == record and store.read_json(K.report_json)["promotion"] == record
    assert "## Promotion" in store.read_bytes(K.report_md).decode()
    tiles, meta = store.read_frame(K.tile_scores)
    store.write_table(K.tile_scores, tiles.assign(score=tiles["score"] * 2), meta)  # other scores now
    write_report(store, K, spec, ReportSettings(top_clips=1, max_curve_videos=1))
    assert not store.exists(K.promotion) and "promotion" not in store.read_json(K.report_json)
    assert "## Promotion" not in store.read_bytes(K.report_md).decode()

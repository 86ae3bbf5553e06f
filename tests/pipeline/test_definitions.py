"""The code location loads; configs map onto vad_core's; specs, storage and trackers behave."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from dagster import AssetKey

from vad_core.diffusion.recipes import DetectorRecipe
from vad_core.diffusion.reconstruction import ScoreConfig
from vad_core.diffusion.training import TrainConfig
from vad_core.errors import VADInputError
from vad_core.footage.clips import ClipConfig
from vad_pipeline.assets.features import FeatureConfig
from vad_pipeline.assets.scoring import ScoringConfig
from vad_pipeline.assets.training import TrainingConfig
from vad_pipeline.definitions import defs
from vad_pipeline.resources import VadStorage
from vad_pipeline.specs import DATASETS_DIR, load_spec, parse_spec, spec_file

ASSETS = {
    "video_manifest",
    "ground_truth",
    "clip_features",
    "live_scores",
    "live_alerts",
    "feature_index",
    "denoiser",
    "segment_scores",
    "frame_scores",
    "baseline_scores",
    "evaluation_report",
    "model_promotion",
    "parameter_study",
}


def test_definitions_load_with_assets_checks_jobs_sensor_schedule() -> None:
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == ASSETS
    assert repo.asset_graph.get(AssetKey("clip_features")).partitions_def.name == "videos"
    assert {j for j in repo.job_names if not j.startswith("__")} == {
        "footage_job",
        "features_job",
        "train_and_score_job",
        "parameter_study_job",
        "cleanup_stale_job",
    }
    assert [s.name for s in repo.sensor_defs] == ["new_footage_sensor"]
    assert [s.name for s in repo.schedule_defs] == ["retraining_schedule"]
    assert repo.schedule_defs[0].cron_schedule == (os.environ.get("VAD_RETRAIN_CRON") or "0 3 * * 1")
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert {
        "features_finite_one_dim",
        "loss_finite_and_decreasing",
        "segment_scores_finite",
        "frame_scores_finite",
        "report_has_aucs",
        "report_matches_scores",
        "feature_index_current",
        "ground_truth_fits_manifest",
        "no_alerts",
    } <= checks
    # The features job scores each video with the champion after its features; training never runs live assets.
    features = defs.resolve_job_def("features_job")
    assert {n.name for n in features.graph.node_defs} == {"clip_features", "live_scores", "live_alerts"}
    assert repo.asset_graph.get(AssetKey("live_scores")).parent_keys == {AssetKey("clip_features")}
    # The training job holds everything downstream of the per-video features, blocking check included.
    training = defs.resolve_job_def("train_and_score_job")
    assert {"feature_index", "denoiser", "baseline_scores", "evaluation_report", "model_promotion"} <= {
        n.name for n in training.graph.node_defs
    }
    assert not {"live_scores", "live_alerts"} & {n.name for n in training.graph.node_defs}


def test_dagster_configs_map_to_vad_core_configs() -> None:
    assert FeatureConfig().to_core() == ClipConfig()
    # The pipeline's default is the robust preset with the Ped2 study's training recipe.
    study = dict(hidden=(64, 32, 16), P_mean=0.0, P_std=0.6, lr=1e-3, epochs=30, min_steps_per_epoch=20, patience=5)
    recipe, train = TrainingConfig().to_core(n_tiles=3)
    assert recipe == DetectorRecipe() and (recipe.screen_folds, recipe.refit_seeds, recipe.trim_share) == (5, 5, None)
    assert train == dataclasses.replace(TrainConfig(), n_tiles=3, **study)
    assert TrainingConfig(tile_embedding=False).to_core(n_tiles=3)[1].n_tiles == 0
    # "paper" takes vad_core's paper values for every field left unset
    paper, paper_train = TrainingConfig(recipe="paper").to_core()
    assert paper.score_type == "reconstruction" and paper_train == TrainConfig()
    recipe, cfg = TrainingConfig(hidden=[32, 16], epochs=2, refit_seeds=2, trim_share=0.1).to_core(3, device="cpu")
    assert (cfg.hidden, cfg.n_tiles, cfg.epochs, cfg.device) == ((32, 16), 3, 2, "cpu")
    assert (recipe.refit_seeds, recipe.trim_share, recipe.name) == (2, 0.1, "robust")
    assert TrainingConfig(width_scales=[0.5, 1, 2]).to_core()[0].width_scales == (0.5, 1.0, 2.0)
    assert TrainingConfig(screen_rounds=2).to_core()[0].screen_rounds == 2
    with pytest.raises(VADInputError, match="unknown detector preset"):
        TrainingConfig(recipe="nope").to_core()
    # Scoring: fields left None keep the detector's config; a label-free sigma applies unless one is set.
    base = ScoreConfig(sigma=8.0, n_draws=64)
    assert ScoringConfig().to_core(base) == base
    assert ScoringConfig().to_core(base, sigma=4.0).sigma == 4.0
    assert ScoringConfig(sigma=3.0).to_core(base, sigma=8.0).sigma == 3.0
    assert ScoringConfig(n_draws=2).to_core(base).n_draws == 2
    with pytest.raises(VADInputError, match="score_type"):
        ScoringConfig(score_type="nope").to_core(base)


def test_shipped_specs_resolve_relative_to_their_folder(tmp_path: Path) -> None:
    ped2 = load_spec("ucsd_ped2", home=tmp_path)
    assert ped2.footage_root == (DATASETS_DIR / "../../shared/data/ucsd_ped2").resolve()
    assert ped2.annotations.path == ped2.footage_root / "ped2.mat"
    assert ped2.is_evaluated("testing/frames/03") and not ped2.is_evaluated("training/frames/03")
    assert ped2.is_train("training/frames/03") and ped2.is_train("testing/frames/03")
    assert ped2.keeps("testing/frames/01", "frames") and not ped2.keeps("testing/frames/01", "file")
    demo = load_spec("demo", home=tmp_path)
    assert demo.footage_root == tmp_path / "demo" / "footage" and demo.generator == "synthetic"
    assert demo.annotations.path == tmp_path / "demo" / "footage" / "ground_truth.csv"
    assert demo.annotations.pixel_masks == tmp_path / "demo" / "footage" / "test_pixel_mask"
    assert demo.annotations.mask_ids() == "test/{}" and ped2.annotations.pixel_masks is None
    # the masks' ids default to the frame-level annotation's
    spec = parse_spec(
        {"name": "m", "footage_root": "v", "annotations": {"path": "gt.mat", "video_ids": "t/{}", "pixel_masks": "m"}},
        base=tmp_path,
        home=tmp_path,
    )
    assert spec.annotations.pixel_masks == tmp_path / "m" and spec.annotations.mask_ids() == "t/{}"
    assert spec.to_dict()["annotations"]["pixel_masks"] == str(tmp_path / "m")


def test_footage_of_an_older_generator_is_brought_up_to_date(tmp_path: Path) -> None:
    import json

    from vad_pipeline.specs import ensure_footage

    options = {"n_train": 1, "n_test": 1, "n_frames": 32, "width": 64, "height": 64, "person_height": 16}
    data = {"name": "gen", "footage_root": "f", "generator": "synthetic", "generator_options": options}
    spec = parse_spec(data, base=tmp_path, home=tmp_path)
    assert ensure_footage(spec) and not ensure_footage(spec)  # generated once, then left alone
    video = (tmp_path / "f" / "test" / "01.mp4").read_bytes()
    # what generator version 1 left: the same videos, no pixel masks, an older record
    record = tmp_path / "f" / "demo_footage.json"
    saved = json.loads(record.read_text())
    saved["params"]["generator_version"] = 1
    saved["files"] = {k: v for k, v in saved["files"].items() if not k.startswith("test_pixel_mask")}
    record.write_text(json.dumps(saved))
    (tmp_path / "f" / "test_pixel_mask" / "01.npy").unlink()
    assert ensure_footage(spec)
    assert (tmp_path / "f" / "test_pixel_mask" / "01.npy").is_file()
    assert (tmp_path / "f" / "test" / "01.mp4").read_bytes() == video  # same bytes: features stay valid
    # a folder the generator did not write is never touched
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "own.mp4").write_bytes(video)
    assert not ensure_footage(parse_spec({**data, "footage_root": "g"}, base=tmp_path, home=tmp_path))
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["own.mp4"]


def test_vad_dataset_selects_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "sub" / "mine.yaml"
    spec.parent.mkdir()
    spec.write_text("footage_root: ../videos\nevaluate: ['cam*']\n")
    monkeypatch.setenv("VAD_DATASET", str(spec))
    loaded = load_spec(home=tmp_path)
    assert loaded.name == "mine" and loaded.footage_root == tmp_path / "videos"
    assert loaded.is_evaluated("cam2") and not loaded.is_evaluated("other")
    monkeypatch.setenv("VAD_DATASET", "ucsd_ped2")
    assert spec_file() == DATASETS_DIR / "ucsd_ped2.yaml"


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "missing required key 'footage_root'"),
        ({"footage_root": "x", "layout": "tapes"}, "'layout' must be one of"),
        ({"footage_root": "x", "evaluate": []}, "'evaluate' must be"),
        ({"footage_root": "x", "annotations": {"format": "csv"}}, "'annotations' must be a path or a mapping"),
        ({"footage_root": "x", "generator": "gan"}, "'generator' must be 'synthetic'"),
        ({"footage_root": "x", "annotations": {"path": "a", "pixel_mask_ids": ["a"]}}, "'annotations.pixel_mask_ids'"),
        (["footage_root"], "must be a YAML mapping"),
    ],
)
def test_bad_specs_are_named_errors(tmp_path: Path, data, message: str) -> None:
    with pytest.raises(VADInputError, match=message):
        parse_spec(data, base=tmp_path, home=tmp_path, source="bad.yaml")


def test_unknown_spec_name_lists_known(tmp_path: Path) -> None:
    with pytest.raises(VADInputError, match=r"known: \['demo', 'ucsd_ped2'\]"):
        load_spec("nope", home=tmp_path)


def test_storage_keys_and_atomic_writes_under_home(tmp_path: Path) -> None:
    storage = VadStorage(home=str(tmp_path))
    store, keys = storage.store(), storage.dataset_keys("ds")
    store.write_json(keys.denoiser_info, {"a": float("nan"), "b": [1, 2]})
    assert keys.denoiser_info == "ds/denoiser/denoiser.json"
    assert store.location(keys.denoiser_info) == str(tmp_path / "ds" / "denoiser" / "denoiser.json")
    assert store.read_json(keys.denoiser_info) == {"a": None, "b": [1, 2]}
    assert keys.features("testing/frames/01") == "ds/features/testing/frames/01.parquet"
    assert [p.name for p in (tmp_path / "ds" / "denoiser").iterdir()] == ["denoiser.json"]  # no temp file left
    assert store.read_json("ds/missing.json") is None
    # the layout README.md documents
    assert (keys.manifest, keys.segment_scores, keys.report_md, keys.report_plot("roc.png")) == (
        "ds/video_manifest.parquet",
        "ds/scores/segment_scores.parquet",
        "ds/report/report.md",
        "ds/report/plots/roc.png",
    )

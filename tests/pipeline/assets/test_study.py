"""The parameter_study asset on generated features: files, Dagster metadata, MLflow parent and child runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dagster import materialize

from tests.core.study.test_study import generated
from vad_core.io.feature_tables import build_feature_table, write_feature_table
from vad_pipeline.assets.study import parameter_study, parameter_study_job, study_assets, study_jobs
from vad_pipeline.resources import DatasetResource, MLflowTracker, VadStorage

SPEC = """\
name: gen
footage_root: footage
train: all
evaluate: ["test/*"]
"""
GRID = {
    "P_means": [-1.2, 0.0],
    "P_stds": [1.0],
    "embeddings": ["film"],
    "widths": [[32, 16]],
    "scalers": ["global"],
    "seeds": [0, 1],
    "start_steps": [5, 9],
    "sigmas": [2.0],
    "n_draws": 2,
    "baselines": ["knn"],
    "epochs": 3,
    "min_steps_per_epoch": 5,
    "batch_size": 64,
    "patience": 0,
    "smoothing_sigma": 4.0,
    "device": "cpu",
}


def write_dataset(root: Path) -> tuple[VadStorage, DatasetResource]:
    """The tables the study reads, as the upstream assets write them: features, index, manifest, truth."""
    data = generated()
    storage = VadStorage(home=str(root / "home"))
    store, keys = storage.store(), storage.dataset_keys("gen")
    (root / "footage").mkdir()
    spec_path = root / "gen.yaml"
    spec_path.write_text(SPEC)
    index = []
    for vid, rows in data.rows.groupby("video_id", sort=True):
        n = len(rows)
        table = build_feature_table(
            vid,
            rows["clip"],
            rows["start_frame"],
            rows["end_frame"],
            rows["tile"],
            np.zeros((n, 4)),
            data.features[rows.index],
        )
        write_feature_table(table, store, keys.features(vid), {"backbone": "generated", "dim": "16"})
        index.append({"video_id": vid, "train": True, "evaluate": vid.startswith("test/"), "backbone": "generated"})
    store.write_table(keys.feature_index, pd.DataFrame(index))
    store.write_table(
        keys.manifest,
        pd.DataFrame({"video_id": list(data.n_frames), "status": "ok", "n_frames": list(data.n_frames.values())}),
    )
    store.write_table(keys.ground_truth, data.ground_truth)
    return storage, DatasetResource(spec=str(spec_path))


def test_parameter_study_asset_logs_parent_and_child_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        storage, dataset = write_dataset(tmp_path)
        tracker = MLflowTracker(home=str(tmp_path / "home"))
        result = materialize(
            [parameter_study],
            resources={"storage": storage, "dataset": dataset, "tracker": tracker},
            run_config={"ops": {"parameter_study": {"config": GRID}}},
        )
    finally:
        torch.set_num_threads(before)
    assert result.success
    out = storage.root() / "gen" / "study"
    table = pd.read_parquet(out / "study_results.parquet")
    models = pd.read_parquet(out / "study_models.parquet")
    # 2 noise settings, then one more seed around the label-free one
    assert list(models["phase"]) == ["grid", "grid", "seed"]
    assert table.groupby(["method", "score_type"])["label_free"].sum().eq(1).all()
    assert table.groupby(["method", "score_type"])["oracle"].sum().eq(1).all()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == [
        "generated_gen_film_denoise_sigma.png",
        "generated_gen_film_recon_noise.png",
        "generated_gen_film_recon_t.png",
    ]
    meta = result.asset_materializations_for_node("parameter_study")[0].metadata
    assert meta["trained_settings"].value == 3
    assert "| knn |" in meta["comparison"].value

    client = tracker.client()
    exp = client.get_experiment_by_name(tracker.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.info.run_name == "gen/parameter_study"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["study.setting_id"] for r in children) == sorted(models["setting_id"])
    for child in children:
        row = models[models["setting_id"] == child.data.tags["study.setting_id"]].iloc[0]
        assert child.data.metrics["memorization_auc"] == pytest.approx(row["memorization_auc"])
        assert child.data.params["setting.P_mean"] == str(row["P_mean"])
    lf = table[table["label_free"] & (table["score_type"] == "denoising")].iloc[0]
    assert parent.data.metrics["diffusion-film.denoising.label_free.frame_auc"] == pytest.approx(lf["frame_auc"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study/figures")}
    assert artifacts == {f"study/figures/{f}" for f in figures}


def test_exports_for_definitions():
    assert study_assets == [parameter_study]
    assert study_jobs == [parameter_study_job]
    assert parameter_study_job.name == "parameter_study_job"

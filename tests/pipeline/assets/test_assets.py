"""Every asset materialized in-process on tiny generated footage (see conftest): tables, figures, MLflow."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey
from PIL import Image
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from tests.pipeline.conftest import RUN_CONFIG
from vad_core.diffusion.detector import load_detector
from vad_core.diffusion.label_free import SIGMA_CANDIDATES
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.footage import read_frames
from vad_core.footage.clips import ClipConfig, tile_boxes
from vad_core.io.feature_tables import read_feature_matrix
from vad_core.scoring.rows import row_keys_for
from vad_pipeline.assets.common import load_feature_rows
from vad_pipeline.assets.training import model_name
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.resources.storage import DatasetKeys

VIDEOS = ["test/01", "test/02", "train/01", "train/02"]
N_FRAMES, CLIP = 48, 16


K = DatasetKeys("tiny")


def _table(p, key: str) -> pd.DataFrame:
    return p.storage.store().read_frame(key)[0]


def _meta(p, asset: str, key: str):
    event = p.instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None, f"{asset} was not materialized"
    return event.asset_materialization.metadata[key].value


def _mlflow_run(p, asset: str):
    client = p.tracker.client()
    exp = client.get_experiment_by_name(p.tracker.experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`dagster.asset_key` = '{asset}'")
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # the asset's top-level run
    assert len(runs) == 1, f"expected one MLflow run for {asset}, got {len(runs)}"
    return client, runs[0]


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_manifest_and_ground_truth(tiny_pipeline) -> None:
    p = tiny_pipeline
    manifest = _table(p, K.manifest)
    assert manifest["video_id"].tolist() == VIDEOS
    assert (manifest["status"] == "ok").all() and (manifest["kind"] == "file").all()
    assert manifest["n_frames"].tolist() == [N_FRAMES] * 4
    assert manifest[["width", "height"]].drop_duplicates().values.tolist() == [[128, 96]]
    assert _meta(p, "video_manifest", "videos_ok") == 4

    truth = _table(p, K.ground_truth)
    csv = pd.read_csv(p.spec.footage_root / "ground_truth.csv")
    assert list(truth.columns) == ["video_id", "start_frame", "end_frame", "source"]
    got = sorted(zip(truth["video_id"], truth["start_frame"], truth["end_frame"], strict=False))
    assert got == sorted(zip(csv["video_id"], csv["start_frame"], csv["end_frame"], strict=False))
    assert set(truth["video_id"]) <= {"test/01", "test/02"} and len(truth) >= 2


def test_clip_features_one_partition_per_video(tiny_pipeline) -> None:
    p = tiny_pipeline
    assert sorted(p.instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME)) == VIDEOS
    boxes = tile_boxes(128, 96, ClipConfig(short_side=96, tile_size=64))
    backbone = PixelStatsBackbone(grid=2)
    for vid in VIDEOS:
        df, meta = p.storage.store().read_frame(K.features(vid))
        assert list(df.columns) == [
            "video_id",
            "clip",
            "start_frame",
            "end_frame",
            "tile",
            "x",
            "y",
            "w",
            "h",
            "feature",
        ]
        assert len(df) == 3 * len(boxes) and df["clip"].nunique() == 3
        assert df.groupby("clip")["start_frame"].first().tolist() == [0, 16, 32]
        x = read_feature_matrix(p.storage.store(), K.features(vid))
        assert x.shape == (len(df), 24) and np.isfinite(x).all()
        # Independent recomputation of one row: decode the clip, cut the tile, embed it.
        row = df[(df["clip"] == 1) & (df["tile"] == len(boxes) - 1)].iloc[0]
        frames = read_frames(p.spec.footage_root / f"{vid}.mp4", "file", 16, 32)
        tile = frames[:, row.y : row.y + row.h, row.x : row.x + row.w]
        expected = backbone.embed(tile[None])[0]
        np.testing.assert_allclose(np.asarray(row.feature), expected, atol=1e-5)
    partitions = p.instance.get_materialized_partitions(AssetKey("clip_features"))
    assert sorted(partitions) == VIDEOS


def test_feature_index_fingerprint(tiny_pipeline) -> None:
    p = tiny_pipeline
    index = _table(p, K.feature_index)
    assert index["video_id"].tolist() == VIDEOS
    assert index["dim"].unique().tolist() == [24] and (index["n_nonfinite"] == 0).all()
    assert index["train"].all() and index["evaluate"].tolist() == [True, True, False, False]
    h = hashlib.sha256()
    for vid in VIDEOS:
        digest = hashlib.sha256(p.storage.store().read_bytes(K.features(vid))).hexdigest()
        h.update(f"{vid}\t{digest}\n".encode())
    assert _meta(p, "feature_index", "features_fingerprint") == h.hexdigest()


def test_denoiser_checkpoint_and_mlflow_run(tiny_pipeline) -> None:
    p = tiny_pipeline
    info = p.storage.store().read_json(K.denoiser_info)
    detector = load_detector(p.storage.root() / K.denoiser)  # the stored checkpoint is a plain local file
    assert detector.n_models == 2 and info["n_models"] == 2 and info["recipe"]["name"] == "robust"
    assert info["recipe"]["screen_folds_used"] == 2 and 0 < info["trim_share"] <= 0.3  # the label-free screen ran
    assert {m.seed for m in detector.members} == {0, 1000}  # two refit seeds, each trained on every kept row
    assert info["memorization_auc"] == pytest.approx(detector.memorization_auc)
    model = detector.members[0].denoiser
    assert model.model_config.dim == 24 and model.model_config.hidden == (64, 32)
    assert info["sigma_data"] == pytest.approx(model.sigma_data)
    assert len(info["history"]) == RUN_CONFIG["denoiser"]["epochs"] == info["epochs_run"]
    assert info["features_fingerprint"] == _meta(p, "feature_index", "features_fingerprint")
    # Dagster shows figures to four significant digits.
    assert _meta(p, "denoiser", "sigma_data") == float(f"{model.sigma_data:.4g}")
    assert _meta(p, "denoiser", "final_train_loss") == float(f"{info['history'][-1]['train_loss']:.4g}")
    assert _meta(p, "denoiser", "loss_curve").startswith("![loss curve](data:image/png;base64,")

    client, run = _mlflow_run(p, "denoiser")
    assert run.info.run_id == info["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3"
    assert json.loads(run.data.params["train.hidden"]) == [64, 32]
    assert run.data.params["dataset"] == "tiny" and run.data.params["feature_dim"] == "24"
    assert run.data.metrics["sigma_data"] == pytest.approx(model.sigma_data)
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert losses == pytest.approx([h["train_loss"] for h in info["history"]])
    tags = run.data.tags
    assert tags["dataset"] == "tiny" and tags["dagster.asset_key"] == "denoiser"
    assert tags["dagster.run_id"] == p.summary.run_ids[-1] and tags["code_version"].startswith("0.1.0")
    assert tags["data_fingerprint"] == model.fingerprint
    assert {"denoiser/denoiser.pt", "denoiser/denoiser.json", "plots/loss_curve.png"} <= _artifacts(
        client, run.info.run_id
    )

    assert tags["dagster.run_url"].endswith(f"/runs/{tags['dagster.run_id']}")
    assert f"]({tags['dagster.run_url']})" in tags["mlflow.note.content"]  # the description links the Dagster run
    assert _meta(p, "denoiser", "mlflow_run").endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning")

    version = client.get_model_version(model_name("tiny"), info["model_version"])
    assert version.run_id == run.info.run_id and version.tags["dataset"] == "tiny"
    auc = p.storage.store().read_json(K.report_json)["scorers"]["diffusion"]["metrics"]["roc_auc"]
    assert float(version.tags["frame_auc"]) == pytest.approx(auc, abs=1e-4)
    # Short tags: no value longer than a run id prefix or a 12-digit fingerprint (the promotion's are its own test's).
    own = {k: v for k, v in version.tags.items() if not k.startswith("promotion.")}
    assert max(len(v) for v in own.values()) <= 12
    assert sorted(own) == [
        "data_fingerprint",
        "dataset",
        "frame_ap",
        "frame_auc",
        "recipe",
        "rows",
        "sigma_data",
    ]
    assert f"Trained by Dagster run [{tags['dagster.run_id'][:8]}]({tags['dagster.run_url']})" in version.description
    # rows: every feature row the detector was given (its screen may drop some before the refit)
    assert version.tags["data_fingerprint"] == model.fingerprint[:12]
    assert version.tags["rows"] == str(_meta(p, "denoiser", "rows"))
    # The description a person reads: dataset, rows, videos, and the figures once evaluated.
    assert "dataset **tiny**" in version.description
    assert f"{info['n_train']} feature rows of 4 videos" in version.description
    assert version.tags["recipe"] == "robust" and "Recipe `robust`: 2 model(s)." in version.description
    assert f"frame ROC AUC **{auc:.4f}**" in version.description
    assert _meta(p, "denoiser", "model_aliases") == "challenger"  # champion comes with model_promotion
    assert _meta(p, "denoiser", "model_version").endswith(
        f"/#/models/{model_name('tiny')}/versions/{info['model_version']}?workflowType=machine_learning"
    )


def test_segment_and_frame_scores(tiny_pipeline) -> None:
    p = tiny_pipeline
    clips = _table(p, K.segment_scores)
    tiles = _table(p, K.tile_scores)
    assert list(clips.columns) == [
        "video_id",
        "clip",
        "start_frame",
        "end_frame",
        "score",
        "tile",
        "batch",
        "threshold",
        "anomalous",
    ]
    assert len(clips) == 4 * 3 and np.isfinite(clips["score"]).all()
    best = tiles.loc[tiles.groupby(["video_id", "clip"])["score"].idxmax()].reset_index(drop=True)
    np.testing.assert_array_equal(clips["score"].to_numpy(), best["score"].to_numpy())
    np.testing.assert_array_equal(clips["tile"].to_numpy(), best["tile"].to_numpy())
    s = clips["score"].to_numpy()
    threshold = s.mean() + 1.0 * s.std()  # one batch (12 clips < 8192), population std
    np.testing.assert_allclose(clips["threshold"].to_numpy(), threshold, rtol=1e-12)
    np.testing.assert_array_equal(clips["anomalous"].to_numpy(), s > threshold)
    meta = p.storage.store().read_metadata(K.segment_scores)
    assert meta["sigma_choice"] == "label-free"  # the default: chosen from the unlabelled rows
    detector = load_detector(p.storage.store().read_bytes(K.denoiser))
    assert float(meta["sigma"]) == detector.score_config.sigma and detector.score_config.sigma in SIGMA_CANDIDATES
    assert meta["recipe"] == "robust" and meta["n_models"] == "2"  # the default recipe, 2 seeds in the test config
    # the stored tile scores are the detector's own scores of the rows (K = 1 refit: every member, in-sample)
    keys, x = load_feature_rows(p.storage.store(), K, VIDEOS)
    got = tiles.set_index(["video_id", "clip", "tile"])["score"]
    n_draws = RUN_CONFIG["segment_scores"]["n_draws"]  # the scoring config's draws override the detector's
    assert detector.score_config.n_draws != n_draws
    detector.score_config = dataclasses.replace(detector.score_config, n_draws=n_draws)
    want = detector.score_new(x, keys["tile"].to_numpy(np.int64), row_keys_for(keys))
    np.testing.assert_allclose(
        got.loc[list(zip(keys["video_id"], keys["clip"], keys["tile"], strict=True))].to_numpy(), want
    )

    frames = _table(p, K.frame_scores)
    assert list(frames.columns) == ["video_id", "frame", "score", "anomalous", "label"]
    assert len(frames) == 4 * N_FRAMES
    by_clip = clips.set_index(["video_id", "clip"])["score"]
    expected = [by_clip[(v, f // CLIP)] for v, f in zip(frames["video_id"], frames["frame"], strict=False)]
    np.testing.assert_array_equal(frames["score"].to_numpy(), expected)
    truth = pd.read_csv(p.spec.footage_root / "ground_truth.csv")
    for vid in VIDEOS:
        labels = frames.loc[frames["video_id"] == vid, "label"]
        if vid.startswith("train"):
            assert labels.isna().all()
        else:
            want = np.zeros(N_FRAMES, np.int64)
            for r in truth[truth["video_id"] == vid].itertuples():
                want[r.start_frame : r.end_frame] = 1
            np.testing.assert_array_equal(labels.to_numpy(np.int64), want)


def test_baseline_scores_knn_matches_independent_computation(tiny_pipeline) -> None:
    p = tiny_pipeline
    table = _table(p, K.baseline_scores)
    assert sorted(table["scorer"].unique()) == ["gcl", "gcl_ae", "iforest", "knn", "pca"]
    assert table.groupby("scorer").size().tolist() == [12] * 5 and np.isfinite(table["score"]).all()
    # kNN (k = 3) per tile position, leave-one-out, mean distance; clip score = max over tiles.
    rows = pd.concat([_table(p, K.features(v)) for v in VIDEOS], ignore_index=True)
    x = np.stack(rows["feature"].to_numpy()).astype(np.float64)
    score = np.empty(len(rows))
    for t in rows["tile"].unique():
        idx = np.flatnonzero(rows["tile"].to_numpy() == t)
        d = cdist(x[idx], x[idx])
        np.fill_diagonal(d, np.inf)
        score[idx] = np.sort(d, axis=1)[:, :3].mean(axis=1)
    expected = rows.assign(score=score).groupby(["video_id", "clip"])["score"].max().to_numpy()
    knn = table[table["scorer"] == "knn"].sort_values(["video_id", "clip"])
    np.testing.assert_allclose(knn["score"].to_numpy(), expected, rtol=1e-5)


def test_evaluation_report_and_mlflow(tiny_pipeline) -> None:
    p = tiny_pipeline
    report = p.storage.store().read_json(K.report_json)
    markdown = p.storage.store().read_bytes(K.report_md).decode()
    frames = _table(p, K.frame_scores)
    labelled = frames[frames["label"].notna()]
    auc = roc_auc_score(labelled["label"].astype(int), labelled["score"])
    assert report["scorers"]["diffusion"]["metrics"]["roc_auc"] == pytest.approx(auc)
    assert report["n_labelled_frames"] == 2 * N_FRAMES and report["evaluated_videos"] == ["test/01", "test/02"]
    assert set(report["scorers"]) == {"diffusion", "knn", "pca", "iforest", "gcl_ae", "gcl"}
    for name, r in report["scorers"].items():
        assert 0.0 <= r["metrics"]["roc_auc"] <= 1.0, name
        assert f"| {name} | {r['metrics']['roc_auc']:.4f} |" in markdown
    plots = {pth.split("/")[-1] for pth in report["plots"]}
    assert {"roc.png", "scores_test__01.png", "scores_test__02.png", "top_clips.png"} <= plots
    for pth in report["plots"]:
        assert open(pth, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(report["top_clips"]) == 2
    assert report["top_clips"][0]["score"] == pytest.approx(_table(p, K.segment_scores)["score"].max())
    assert _meta(p, "evaluation_report", "frame_auc_diffusion") == float(f"{auc:.4g}")
    # The report as Dagster shows it: every plot embedded (no relative links that cannot load there).
    preview = _meta(p, "evaluation_report", "report")
    assert "# Evaluation report: tiny" in preview and "](plots/" not in preview
    assert preview.count("](data:image/png;base64,") == len(report["plots"])
    roc = _meta(p, "evaluation_report", "roc_curve")
    assert roc.count("](data:image/png;base64,") == 1 and f"| diffusion | {auc:.4f} |" in roc
    png = base64.b64decode(roc.split("](data:image/png;base64,")[1].rstrip(")"))
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size[0] > 100

    # MLflow: one evaluation run holding the report, one child run per scorer with the same metric names.
    client, run = _mlflow_run(p, "evaluation_report")
    assert run.data.tags["mlflow.runName"] == "tiny/evaluation" and "frame_auc" not in run.data.metrics
    assert run.data.params["report.smoothing_sigma"] == "4.0" and run.data.tags["dataset"] == "tiny"
    assert {
        "report/report.json",
        "report/report.md",
        "report/plots/roc.png",
        "report/plots/top_clips.png",
    } <= _artifacts(client, run.info.run_id)
    assert run.info.end_time - run.info.start_time >= 0  # wraps the report build, not only the logging
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    by_scorer = {c.data.params["scorer"]: c for c in children}
    assert set(by_scorer) == set(report["scorers"])
    for name, child in by_scorer.items():
        m = report["scorers"][name]["metrics"]
        assert child.data.tags["scorer"] == name and child.data.tags["mlflow.runName"] == f"tiny/evaluation/{name}"
        assert child.data.metrics["frame_auc"] == pytest.approx(m["roc_auc"])
        assert child.data.metrics["frame_ap"] == pytest.approx(m["average_precision"])
        assert child.data.metrics["paper_protocol_auc"] == pytest.approx(m["paper_protocol_auc"])
        assert child.data.metrics["frame_auc_smoothed"] == pytest.approx(m["smoothed_roc_auc"])
        assert child.info.run_id in run.data.tags["mlflow.note.content"]  # the description links each scorer's run
    link = _meta(p, "evaluation_report", "mlflow_run")
    assert link.endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning")
    # The saved side-by-side view of this evaluation's scorers (MLflow's own saved-view tag).
    view = _meta(p, "evaluation_report", "mlflow_scorers")
    assert (
        view.endswith("/runs?viewStateShareKey=tiny-scorers&workflowType=machine_learning")
        and view in run.data.tags["mlflow.note.content"]
    )
    saved = json.loads(client.get_experiment(run.info.experiment_id).tags["mlflow.sharedViewState.tiny-scorers"])
    state = json.loads(saved["state"])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    assert state["selectedColumns"][0] == "metrics.`frame_auc`" and state["orderByKey"] == "metrics.`frame_auc`"
    html = p.storage.store().read_bytes(K.report_html).decode()
    assert html.count('<img src="data:image/png;base64,') == len(report["plots"]) and "<table>" in html
    assert "report/report.html" in _artifacts(client, run.info.run_id)
    # The runs that fitted each scorer carry its figures too: the denoiser's training run, each baseline's run.
    _, train_run = _mlflow_run(p, "denoiser")
    assert client.get_run(train_run.info.run_id).data.metrics["frame_auc"] == pytest.approx(auc)
    _, baselines = _mlflow_run(p, "baseline_scores")
    fits = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{baselines.info.run_id}'"
    )
    assert sorted(f.data.tags["scorer"] for f in fits) == ["gcl", "gcl_ae", "iforest", "knn", "pca"]
    for fit in fits:
        name = fit.data.tags["scorer"]
        assert fit.data.metrics["frame_auc"] == pytest.approx(report["scorers"][name]["metrics"]["roc_auc"])
        assert fit.data.metrics["fit_score_seconds"] > 0
        assert by_scorer[name].data.tags["fit_run_id"] == fit.info.run_id

    # Localization against the generated pixel masks, recomputed here: each frame's map is the mean
    # region score of the highest-scoring clip covering it.
    loc = report["localization"]
    assert loc["videos"] == ["test/01", "test/02"] and loc["n_frames"] == 2 * N_FRAMES
    clips, tiles = _table(p, K.segment_scores), _table(p, K.tile_scores)
    step, heats, labels = loc["step"], [], []
    for vid in loc["videos"]:
        mask = np.load(p.spec.footage_root / "test_pixel_mask" / f"{vid.split('/')[1]}.npy")
        c = clips[clips["video_id"] == vid]
        for f in range(N_FRAMES):
            covering = c[(c["start_frame"] <= f) & (c["end_frame"] > f)]
            best = covering.sort_values(["score", "clip"], ascending=[False, True]).iloc[0]
            rows = tiles[(tiles["video_id"] == vid) & (tiles["clip"] == best["clip"])]
            total, count = np.zeros((96, 128)), np.zeros((96, 128))
            for r in rows.itertuples():
                total[r.y : r.y + r.h, r.x : r.x + r.w] += r.score
                count[r.y : r.y + r.h, r.x : r.x + r.w] += 1
            assert (count > 0).all()  # the tiles cover the whole 128x96 frame
            heat = total / count
            heats.append(heat[::step, ::step].ravel())
            labels.append(mask[f, ::step, ::step].ravel())
    expected = roc_auc_score(np.concatenate(labels), np.concatenate(heats))
    assert loc["pixel_auc"] == pytest.approx(expected)
    assert run.data.metrics["pixel_auc.diffusion"] == pytest.approx(expected)
    assert by_scorer["diffusion"].data.metrics["pixel_auc"] == pytest.approx(expected)  # beside its frame figures
    assert "pixel_auc" not in by_scorer["knn"].data.metrics
    assert "## Localization" in markdown


def test_asset_checks_ran(tiny_pipeline) -> None:
    p = tiny_pipeline
    from dagster import AssetCheckKey

    results = {}
    for asset, check in [
        ("video_manifest", "manifest_has_videos"),
        ("feature_index", "features_finite_one_dim"),
        ("segment_scores", "segment_scores_finite"),
        ("frame_scores", "frame_scores_finite"),
        ("baseline_scores", "baseline_scores_finite"),
        ("evaluation_report", "report_has_aucs"),
        ("denoiser", "loss_finite_and_decreasing"),
    ]:
        records = p.instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey(asset), check), limit=1
        )
        assert records, f"check {check} never ran"
        results[check] = records[0].event.dagster_event.event_specific_data.passed
    assert all(v for k, v in results.items() if k != "loss_finite_and_decreasing")
    assert math.isfinite(p.summary.overhead_per_partition_s)

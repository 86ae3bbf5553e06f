"""The report rebuilt from hand-made tables alone: figures against sklearn, JSON, Markdown, PNG plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vad_core.errors import VADInputError
from vad_core.evaluation.plots import heatmap_png, loss_curve_png, roc_png, score_curve_png, top_clips_png
from vad_core.evaluation.report import ReportSettings, ReportTables, build_report

PNG = b"\x89PNG\r\n\x1a\n"


def _tables() -> ReportTables:
    """Two videos of 32 frames, two clips each; frames 16-31 of video b are anomalous."""
    clips = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "clip": [0, 1, 0, 1],
            "start_frame": [0, 16, 0, 16],
            "end_frame": [16, 32, 16, 32],
            "score": [0.1, 0.3, 0.2, 0.9],
            "tile": [0, 1, 0, 1],
            "batch": [0, 0, 0, 0],
            "threshold": [0.5] * 4,
            "anomalous": [False, False, False, True],
        }
    )
    frames = pd.DataFrame({"video_id": np.repeat(["a", "b"], 32), "frame": np.tile(np.arange(32), 2)})
    frames["score"] = np.repeat(clips["score"].to_numpy(), 16)
    frames["anomalous"] = np.repeat(clips["anomalous"].to_numpy(), 16)
    frames["label"] = pd.array(np.r_[np.zeros(48), np.ones(16)].astype(int), dtype="Int8")
    tiles = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "clip": [0, 1, 0, 1],
            "tile": [0, 1, 0, 1],
            "x": [-1] * 4,
            "y": [-1] * 4,
            "w": [-1] * 4,
            "h": [-1] * 4,
            "score": clips["score"],
        }
    )
    manifest = pd.DataFrame(
        {
            "video_id": ["a", "b"],
            "path": ["a.mp4", "b.mp4"],
            "kind": ["file", "file"],
            "n_frames": [32, 32],
            "status": ["ok", "ok"],
        }
    )
    truth = pd.DataFrame({"video_id": ["b"], "start_frame": [16], "end_frame": [32], "source": ["gt.csv"]})
    baselines = clips.assign(scorer="knn", score=[0.9, 0.1, 0.2, 0.3])
    return ReportTables(
        frames,
        clips,
        tiles,
        manifest,
        truth,
        baselines,
        denoiser_info={"sigma_data": 1.5, "model_version": "3", "other": "left out"},
        scoring_metadata={"sigma": "8.0"},
    )


def test_report_figures_match_sklearn_and_render_every_part() -> None:
    report = build_report(
        _tables(),
        ReportSettings(smoothing_sigma=None, top_clips=2),
        "toy",
        spec={"name": "toy"},
        code_version="1.0",
        created="2026-01-01T00:00:00+00:00",
        plot_location=lambda name: f"toy/report/plots/{name}",
    )
    data = report.data
    labels = np.r_[np.zeros(48), np.ones(16)]
    diffusion = np.repeat([0.1, 0.3, 0.2, 0.9], 16)
    knn = np.repeat([0.9, 0.1, 0.2, 0.3], 16)
    m = data["scorers"]["diffusion"]["metrics"]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, diffusion))
    assert m["average_precision"] == pytest.approx(average_precision_score(labels, diffusion))
    assert data["scorers"]["knn"]["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(labels, knn))
    assert data["scorers"]["diffusion"]["anomalous_clip_share"] == 0.25
    assert (data["n_frames"], data["n_labelled_frames"], data["n_anomalous_frames"]) == (64, 64, 16)
    assert data["denoiser"]["sigma_data"] == 1.5 and "other" not in data["denoiser"]
    assert data["scoring"] == {"sigma": "8.0"} and data["config"]["top_clips"] == 2
    # top clips listed by score; imported-style boxes (-1) are listed but not drawn
    assert [(c["video_id"], c["clip"]) for c in data["top_clips"]] == [("b", 1), ("a", 1)]
    assert list(report.plots) == ["roc.png", "scores_a.png", "scores_b.png"]  # evaluated videos in id order
    assert data["plots"] == [f"toy/report/plots/{n}" for n in report.plots]
    assert all(png.startswith(PNG) for png in report.plots.values())
    md = report.markdown
    assert md.startswith("# Evaluation report: toy")
    assert f"| diffusion | {m['roc_auc']:.4f} |" in md and "![roc](plots/roc.png)" in md
    metrics = report.scorer_metrics()
    assert set(metrics) == {"diffusion", "knn"}
    names = ["frame_auc", "frame_ap", "frame_auc_smoothed", "paper_protocol_auc"]
    assert all(list(m) == names for m in metrics.values())
    assert metrics["knn"]["frame_auc"] == pytest.approx(roc_auc_score(labels, knn))
    assert metrics["diffusion"]["frame_auc_smoothed"] is None


def test_report_without_labels_says_why() -> None:
    tables = _tables()
    tables.frames = tables.frames.assign(label=pd.array([pd.NA] * 64, dtype="Int8"))
    report = build_report(tables, ReportSettings(top_clips=0, max_curve_videos=1), "toy", created="now")
    assert report.data["scorers"]["diffusion"]["metrics"] is None
    assert report.data["note"] == "no labelled frames (no evaluated video)"
    assert list(report.plots) == ["scores_a.png"]  # no ROC without labels, one curve asked for
    with pytest.raises(VADInputError, match="top_clips"):
        ReportSettings(top_clips=-1)


def test_report_of_a_dataset_without_annotations_says_no_ground_truth() -> None:
    """Regression (issue 10): with no annotation file the report said "N labelled frames (0 anomalous)"."""
    tables = _tables()
    tables.frames = tables.frames.assign(label=pd.array([pd.NA] * 64, dtype="Int8"))
    tables.has_annotations = False
    report = build_report(tables, ReportSettings(top_clips=0, max_curve_videos=1), "toy", created="now")
    assert report.data["n_labelled_frames"] == 0
    assert report.data["note"] == "no ground truth: the dataset has no annotation file"
    assert "64 frames, none labelled (no ground truth)." in report.markdown
    assert "anomalous)" not in report.markdown.splitlines()[2]


def test_a_skipped_baseline_is_listed_with_its_reason() -> None:
    """Regression (issue 10): a baseline that cannot run on the data is skipped, never fatal or silent."""
    tables = _tables()
    tables.skipped_scorers = {"pca": "pca: tile 0: n_components=16 must be below 4 rows"}
    report = build_report(tables, ReportSettings(top_clips=0), "toy", created="now")
    assert report.data["scorers"]["pca"] == {
        "metrics": None,
        "anomalous_clip_share": None,
        "skipped": "pca: tile 0: n_components=16 must be below 4 rows",
    }
    assert report.data["scorers"]["diffusion"]["metrics"]["roc_auc"] is not None
    assert "| pca | skipped: pca: tile 0: n_components=16 must be below 4 rows |" in report.markdown


def test_every_plot_is_png_bytes() -> None:
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}, {"epoch": 2, "train_loss": 0.5, "val_loss": None}]
    assert loss_curve_png(history, best_epoch=1).startswith(PNG)
    assert score_curve_png(np.arange(5), np.r_[0, 1, 3, 1, 0.0], np.r_[0, 0, 1, 0, 0], [(2, 3)], [2.0], "v").startswith(
        PNG
    )
    assert roc_png({"s": (np.r_[0, 0, 1, 1], np.r_[0.1, 0.4, 0.35, 0.8], 0.75)}).startswith(PNG)
    image = np.zeros((20, 30, 3), np.uint8)
    assert top_clips_png([(image, (2, 3, 10, 10), "clip")]).startswith(PNG)
    grid = pd.DataFrame({"P_mean": [0.0, 0.0, 1.0], "P_std": [0.6, 1.2, 0.6], "frame_auc": [0.7, 0.8, 0.9]})
    assert heatmap_png(grid, "P_std", "P_mean", "grid", mark=(0.6, 1.0)).startswith(PNG)
    with pytest.raises(VADInputError, match="no rows"):
        heatmap_png(grid.iloc[:0], "P_std", "P_mean", "empty")


def test_the_report_names_the_recipe_its_screen_rounds_and_a_network_the_screen_chose() -> None:
    import dataclasses

    def markdown(recipe: dict) -> str:
        info = {"recipe": recipe, "n_models": 5, "trim_share": 0.3, "scoring_sigma": 8.0}
        tables = dataclasses.replace(_tables(), denoiser_info=info)
        return build_report(tables, ReportSettings(smoothing_sigma=None), "toy", spec={"name": "toy"}).markdown

    fixed = markdown({"name": "robust", "screen_folds_used": 5})
    assert "recipe 'robust' (5 model(s); out-of-fold screen with 5 video folds, 0.300 of the fitted rows" in fixed
    assert "(label-free)." in fixed and "network" not in fixed.split("Detector:")[1].split("\n")[0]
    chosen = markdown({"name": "robust", "screen_folds_used": 5, "hidden_used": [128, 64, 32]})
    assert "network 128-64-32, chosen label-free by the screen's median out-of-fold error." in chosen
    rounds = markdown({"name": "robust_rounds2", "screen_folds_used": 5, "screen_rounds": 2})
    assert "out-of-fold screen with 5 video folds in 2 rounds, 0.300 of the fitted rows dropped" in rounds
    assert "rounds" not in markdown({"name": "robust", "screen_folds_used": 5, "screen_rounds": 1})

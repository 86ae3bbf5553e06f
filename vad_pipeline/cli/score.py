"""`vad score`: score one new video (file, frame folder or URL) with a trained model, without ground truth.

    vad score footage/cam7.mp4 --model models:/vad-denoiser-ucsd_ped2@champion --out out/cam7
    vad score ../shared/data/ucsd_ped2/testing/frames/01 --model vad_home/live_model --out out/01

MODEL is a folder `save_live_detector` wrote (`detector.pt` + `live.json`), a downloaded MLflow
model folder (its `artifacts/` holds them), or an MLflow URI (`models:/<name>@<alias>`,
`models:/<name>/<version>`, `runs:/<run>/<path>`) fetched with `mlflow.artifacts.download_artifacts`
from the tracking server MLFLOW_TRACKING_URI names. The model decides each clip alone with the
threshold stored in it (`--threshold-k` moves it to mean + k * std of the training clip scores).
DIR receives frame_scores, clip_scores, row_scores and alerts (Parquet and CSV), alerts.jsonl,
overlay.mp4 (the frames with the heat map, the arg-max tile box, the score curve and the
threshold; `--no-video` skips it and removes an earlier run's) and summary.json; every file is
written atomically, and a re-run replaces them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vad_core.errors import VADInputError

if TYPE_CHECKING:  # torch, PyAV and the backbones load when the command runs, not with every `vad` command
    import pandas as pd

    from vad_core.live import LiveDetector
    from vad_core.live.overlay import OverlayInfo
    from vad_core.live.video import VideoScores

MODEL_FILES = ("live.json", "detector.pt")
_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "http://", "https://")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`vad score`."""
    parser = commands.add_parser(
        "score",
        help="score one video file, frame folder or URL with a trained model: scores, alerts, overlay MP4",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("source", metavar="PATH_OR_URL", help="a video file, a frame folder or a URL PyAV can open")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder (created; files in it are replaced)")
    parser.add_argument("--no-video", action="store_true", help="skip the overlay MP4")
    parser.add_argument("--no-heatmap", action="store_true", help="overlay without the heat map of region scores")
    parser.add_argument("--video-id", help="id the rows carry (default: file stem / folder name)")
    parser.add_argument("--fps", type=float, help="overlay frame rate (default: the file's, 10 for frame folders)")
    parser.add_argument("--batch-size", type=int, default=8, help="backbone inputs per embedding call (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`, `--device` and `--threshold-k`: how `vad score` and `vad score-stream` name the model."""
    parser.add_argument(
        "--model",
        required=True,
        help="a live model folder, an MLflow model folder, or models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...",
    )
    parser.add_argument("--device", help="torch device of the backbone and the detector (default: best available)")
    parser.add_argument(
        "--threshold-k", type=float, help="decide at mean + K * std of the training clip scores (default: the model's)"
    )


def is_mlflow_uri(model: str) -> bool:
    return model.startswith(_MLFLOW_SCHEMES)


def model_folder(root: Path, where: str) -> Path:
    """The folder holding MODEL_FILES: `root` itself or its MLflow `artifacts/`; a clear error otherwise."""
    for folder in (root, root / "artifacts"):
        if all((folder / name).is_file() for name in MODEL_FILES):
            return folder
    if not root.exists():
        raise VADInputError(f"model {where}: no such folder")
    if not root.is_dir():
        raise VADInputError(f"model {where}: not a folder (expected detector.pt and live.json in it)")
    raise VADInputError(
        f"model {where}: holds neither {' and '.join(MODEL_FILES)} nor artifacts/ with them "
        "(a folder save_live_detector wrote, or an MLflow model of the denoiser)"
    )


def download_model(uri: str, dest: Path) -> Path:
    """Fetch an MLflow model or run artifact into `dest` (the tracking server of MLFLOW_TRACKING_URI)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest))
    except (MlflowException, OSError) as exc:
        message = " ".join(str(getattr(exc, "message", exc)).split())
        raise VADInputError(f"model {uri}: cannot be downloaded ({message[:300]})") from None
    return model_folder(Path(local), uri)


def load_model(model: str, device: str | None, workdir: Path, threshold_k: float | None = None) -> LiveDetector:
    """The live detector MODEL names (see the module doc); `threshold_k` (`--threshold-k`) replaces its rule's k."""
    from vad_core.live import load_live_detector

    if threshold_k is not None and threshold_k < 0:
        raise VADInputError(f"--threshold-k must be >= 0, got {threshold_k}")
    folder = download_model(model, workdir) if is_mlflow_uri(model) else model_folder(Path(model), model)
    live = load_live_detector(folder, device=device)
    if is_mlflow_uri(model):  # the registry, not the file, says which version a models:/ URI is
        live.info.update(registered_version(model))
    if threshold_k is not None:
        live.rule = replace(live.rule, k=float(threshold_k))
    return live


def registered_version(uri: str) -> dict[str, str]:
    """{model_name, model_version} of a `models:/name@alias` or `models:/name/N` URI, else {}.

    The live.json inside a registered MLflow model cannot hold its own version (the version is
    made from the logged model), so alerts name the version the registry resolved the URI to.
    """
    if not uri.startswith("models:/"):
        return {}
    name, _, rest = uri[len("models:/") :].partition("@")
    if rest:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            return {
                "model_name": name,
                "model_version": str(MlflowClient().get_model_version_by_alias(name, rest).version),
            }
        except MlflowException:
            return {}
    name, _, version = name.rpartition("/")
    return {"model_name": name, "model_version": version} if name and version.isdigit() else {}


def _bar(desc: str, unit: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True, leave=False)


def _write_tables(out: Path, result: VideoScores, meta: dict[str, str]) -> dict[str, str]:
    """Row, clip and frame scores and alerts as Parquet (with `meta`) and CSV, alerts also as JSONL."""
    from vad_core.io.store import LocalTableStore

    store = LocalTableStore(out)
    tables: dict[str, pd.DataFrame] = {
        "frame_scores": result.frames,
        "clip_scores": result.clips,
        "row_scores": result.rows,
        "alerts": result.alerts,
    }
    written: dict[str, str] = {}
    for name, table in tables.items():
        store.write_table(f"{name}.parquet", table, meta)
        store.write_bytes(f"{name}.csv", table.to_csv(index=False).encode())
        written[name] = store.location(f"{name}.parquet")
        written[f"{name}_csv"] = store.location(f"{name}.csv")
    lines = [json.dumps({**row, "source": meta["source"]}, sort_keys=True) for row in result.alerts.to_dict("records")]
    store.write_bytes("alerts.jsonl", "".join(line + "\n" for line in lines).encode())
    written["alerts_jsonl"] = store.location("alerts.jsonl")
    return written


def _summary(
    args: argparse.Namespace, live: LiveDetector, result: VideoScores, overlay: OverlayInfo | None, seconds: float
) -> dict[str, Any]:
    frames = result.frames
    return {
        "source": str(args.source),
        "video_id": str(frames["video_id"].iloc[0]),
        "model": {"uri": str(args.model), **{k: live.info[k] for k in sorted(live.info)}},
        "backbone": live.feature_spec.get("backbone", ""),
        "rule": live.rule.to_dict(),
        "threshold": live.rule.threshold,
        "n_frames": len(frames),
        "n_clips": len(result.clips),
        "n_rows": len(result.rows),
        "anomalous_frames": int(frames["anomalous"].sum()),
        "anomalous_share": float(frames["anomalous"].mean()),
        "max_frame_score": float(frames["score"].max()),
        "n_alerts": len(result.alerts),
        "timings": {**result.timings, "overlay": overlay.seconds if overlay else 0.0, "command": seconds},
        # What issue 12's benchmark asks of scoring (< 10% with I3D): score_video's time outside the backbone.
        "outside_backbone_share": 1.0 - result.timings["backbone"] / result.timings["total"],
        "overlay": overlay._asdict() if overlay else None,
    }


def run(args: argparse.Namespace) -> int:
    from vad_core.footage.decode import iter_frames
    from vad_core.live.overlay import video_fps, write_overlay
    from vad_core.live.video import local_video, score_video

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VADInputError(f"--out {out}: exists and is not a folder")
    if args.batch_size < 1:
        raise VADInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="vad-score-") as tmp:
        live = load_model(args.model, args.device, Path(tmp), args.threshold_k)
        with local_video(args.source, args.video_id, workdir=tmp) as video:
            bar = _bar("features", "clip", args.quiet)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = score_video(
                    video.path,
                    live,
                    video_id=video.video_id,
                    device=args.device,
                    progress=progress,
                    batch_size=args.batch_size,
                )
            finally:
                bar.close()
            overlay = None
            if not args.no_video:
                frames_bar = _bar("overlay", "frame", args.quiet)
                try:
                    overlay = write_overlay(
                        iter_frames(video.path, video.kind),
                        out / "overlay.mp4",
                        result.rows,
                        result.clips,
                        threshold=live.rule.threshold,
                        fps=args.fps or video_fps(video),
                        heatmap=not args.no_heatmap,
                        progress=lambda done, total: frames_bar.update(done - frames_bar.n),
                    )
                finally:
                    frames_bar.close()
    meta = {
        "source": str(args.source),
        "model": str(args.model),
        "model_version": live.info.get("model_version", ""),
        "threshold": repr(live.rule.threshold),
    }
    written = _write_tables(out, result, meta)
    if overlay is None:  # the folder shows this run only: an overlay of an earlier run would not match its scores
        (out / "overlay.mp4").unlink(missing_ok=True)
    summary = _summary(args, live, result, overlay, time.perf_counter() - t0)
    summary["outputs"] = {**written, **({"overlay": overlay.path} if overlay else {})}
    from vad_core.io.store import LocalTableStore

    LocalTableStore(out).write_json("summary.json", summary)
    _report(summary, result)
    return 0


def _report(summary: dict[str, Any], result: VideoScores) -> None:
    model = summary["model"]
    name = (
        f"{model.get('model_name', model['uri'])} v{model['model_version']}"
        if model.get("model_version")
        else model["uri"]
    )
    print(
        f"== {summary['video_id']}: {summary['n_frames']} frames, {summary['n_clips']} clips scored with {name} "
        f"(threshold {summary['threshold']:.4f}); {summary['anomalous_frames']} anomalous frames, "
        f"{summary['n_alerts']} alerts"
    )
    for alert in result.alerts.itertuples(index=False):
        print(
            f"   alert frames {alert.first_frame}-{alert.last_frame}: peak {alert.peak_score:.4f} at clip "
            f"{alert.peak_clip}, tile {alert.peak_tile} at x={alert.box_x} y={alert.box_y} {alert.box_w}x{alert.box_h}"
        )
    t = summary["timings"]
    print(f"   {t['command']:.1f} s (backbone {t['backbone']:.1f} s, overlay {t['overlay']:.1f} s)")
    print(f"   outputs: {Path(summary['outputs']['frame_scores']).parent}")


__all__ = ["add_model_arguments", "add_parser", "download_model", "is_mlflow_uri", "load_model", "model_folder", "run"]

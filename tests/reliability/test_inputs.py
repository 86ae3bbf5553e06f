"""Inputs that are not footage: annotation files, dataset specs, run configs and weight files.

Each bad one is refused with a one-line `VADInputError` that names the file (or the key) and
the problem, and a typo names the nearest valid key; the odd-but-valid ones (a byte-order mark,
extra columns) are read correctly. The counts are written to `$VAD_RELIABILITY_COUNTS` when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from vad_core.diffusion.denoiser import load_checkpoint
from vad_core.diffusion.detector import load_detector
from vad_core.errors import VADInputError
from vad_core.features.backbones import load_backbone
from vad_core.footage import check_ground_truth, manifest_frame, read_ground_truth
from vad_pipeline.automation.jobs import check_asset_configs
from vad_pipeline.definitions import defs
from vad_pipeline.specs import parse_spec

OUTCOMES: list[tuple[str, str]] = []  # (case, "refused" | "read"), for the counts

BAD_CSVS = {
    "missing_column": ("video_id,start\na,1\n", ["missing column(s) ['end_frame', 'start_frame']"]),
    "not_integer": ("video_id,start_frame,end_frame\na,1,x\n", ["line 2", "must be integers", "'x'"]),
    "empty_interval": ("video_id,start_frame,end_frame\na,5,5\n", ["line 2", "bad 0-based half-open interval [5, 5)"]),
    "negative": ("video_id,start_frame,end_frame\na,-1,4\n", ["line 2", "[-1, 4)"]),
    "empty_id": ("video_id,start_frame,end_frame\n,1,4\n", ["line 2", "empty video_id"]),
    "zero_bytes": ("", ["missing column(s)"]),
    "binary": ("\x00\x01\x02garbage\x03\n\x04,\x05\n", ["missing column(s)"]),
    "bom_and_missing": ("\ufeffvideo_id,start\n", ["missing column(s) ['end_frame', 'start_frame']"]),
}


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_bad_annotation_csv_names_file_and_line(tmp_path: Path, name: str) -> None:
    text, words = BAD_CSVS[name]
    path = tmp_path / f"{name}.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VADInputError) as info:
        read_ground_truth(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for w in words:
        assert w in message, message
    OUTCOMES.append((f"csv:{name}", "refused"))


def test_annotation_csv_with_a_byte_order_mark_and_extra_columns_reads(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffvideo_id,start_frame,end_frame,event\r\ntest/01,10,20,cyclist\r\n".encode())
    truth = read_ground_truth(path)
    assert truth[["video_id", "start_frame", "end_frame"]].values.tolist() == [["test/01", 10, 20]]
    OUTCOMES.append(("csv:bom", "read"))


def test_unknown_ids_and_intervals_past_the_end_are_found(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_text("video_id,start_frame,end_frame\ntest/01,10,20\ntest/1,0,5\ncam9,0,5\ntest/02,40,90\n")
    manifest = manifest_frame(
        [
            {"video_id": v, "path": f"/f/{v}.mp4", "kind": "file", "n_frames": 48, "status": "ok", "size_bytes": 1}
            for v in ("test/01", "test/02")
        ]
    )
    found = check_ground_truth(read_ground_truth(path), manifest)
    assert found.unknown == ("cam9", "test/1")
    assert found.past_end == (("test/02", 40, 90, 48),)
    message = found.unknown_message(manifest["video_id"])
    assert message.startswith("2 annotated video ids are not in the manifest")
    assert "'test/1' (nearest video: 'test/01')" in message
    OUTCOMES.append(("csv:unknown_ids", "refused"))


SPEC_TYPOS = {
    "layuot": ({"footage_root": "x", "layuot": "files"}, "unknown key 'layuot' (did you mean 'layout'?"),
    "evalaute": ({"footage_root": "x", "evalaute": ["t/*"]}, "unknown key 'evalaute' (did you mean 'evaluate'?"),
    "anotations": (
        {"footage_root": "x", "anotations": "gt.csv"},
        "unknown key 'anotations' (did you mean 'annotations'?",
    ),
    "footage_rot": (
        {"footage_root": "x", "footage_rot": "y"},
        "unknown key 'footage_rot' (did you mean 'footage_root'?",
    ),
    "annotations.fromat": (
        {"footage_root": "x", "annotations": {"path": "gt.csv", "fromat": "csv"}},
        "annotations: unknown key 'fromat' (did you mean 'format'?",
    ),
    "annotations.video_idz": (
        {"footage_root": "x", "annotations": {"path": "gt.csv", "video_idz": "t/{}"}},
        "annotations: unknown key 'video_idz' (did you mean 'video_ids'?",
    ),
    "annotations.format value": (
        {"footage_root": "x", "annotations": {"path": "p.mat", "format": "ped2_mat"}},
        "annotations.format 'ped2_mat' is not a known format (did you mean 'mat'?)",
    ),
    "annotations.unknown_ids value": (
        {"footage_root": "x", "annotations": {"path": "gt.csv", "unknown_ids": "skip"}},
        "annotations.unknown_ids must be one of ('error', 'ignore'), got 'skip'",
    ),
    "generator_options.n_trian": (
        {"footage_root": "x", "generator": "synthetic", "generator_options": {"n_trian": 2}},
        "generator_options: unknown key 'n_trian' (did you mean 'n_train'?",
    ),
}


@pytest.mark.parametrize("name", sorted(SPEC_TYPOS))
def test_spec_typos_name_the_key_and_the_nearest_valid_one(tmp_path: Path, name: str) -> None:
    data, message = SPEC_TYPOS[name]
    with pytest.raises(VADInputError) as info:
        parse_spec(data, base=tmp_path, home=tmp_path, source="cams.yaml")
    assert str(info.value).startswith("cams.yaml") and message in str(info.value), str(info.value)
    OUTCOMES.append((f"spec:{name}", "refused"))


RUN_CONFIG_TYPOS = {
    "asset name": (
        {"evalaute_report": {"top_clips": 2}},
        "run_config: unknown key 'evalaute_report' (did you mean 'evaluation_report'?",
    ),
    "field name": ({"denoiser": {"epochz": 3}}, "run_config.denoiser: unknown key 'epochz' (did you mean 'epochs'?"),
    "field type": ({"segment_scores": {"n_draws": "many"}}, "run_config.segment_scores.n_draws: "),
    "not a mapping": ({"denoiser": 3}, "run_config.denoiser: expected a mapping"),
    "study field": (
        {"parameter_study": {"seedz": [0]}},
        "run_config.parameter_study: unknown key 'seedz' (did you mean 'seeds'?",
    ),
}


@pytest.mark.parametrize("name", sorted(RUN_CONFIG_TYPOS))
def test_run_config_is_checked_against_the_jobs_schemas(name: str) -> None:
    config, message = RUN_CONFIG_TYPOS[name]
    with pytest.raises(VADInputError) as info:
        check_asset_configs(config, defs.resolve_job_def)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    OUTCOMES.append((f"run_config:{name}", "refused"))


def test_a_valid_run_config_passes() -> None:
    check_asset_configs(
        {"clip_features": {"batch_size": 4}, "denoiser": {"epochs": 2, "force": True}}, defs.resolve_job_def
    )
    OUTCOMES.append(("run_config:valid", "read"))


def _truncated_torch_file(path: Path) -> Path:
    torch.save({"weight": torch.zeros(4096)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("backbone", ["r3d_18", "resnext101"])
def test_truncated_backbone_weights_name_their_path(tmp_path: Path, backbone: str) -> None:
    path = _truncated_torch_file(tmp_path / "weights.pth")
    with pytest.raises(VADInputError) as info:
        load_backbone(backbone, weights=str(path), device="cpu")
    assert str(path) in str(info.value) and "cannot be read" in str(info.value)
    OUTCOMES.append((f"weights:{backbone}", "refused"))


def test_truncated_cached_r3d_weights_name_their_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    cached.parent.mkdir(parents=True)
    _truncated_torch_file(cached)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(VADInputError) as info:
        load_backbone("r3d_18", device="cpu")
    assert str(cached) in str(info.value)
    OUTCOMES.append(("weights:r3d_cache", "refused"))


def test_truncated_i3d_weights_name_their_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(b"\x80\x04" + b"\x00" * 100)  # a pickle's start, cut off
    monkeypatch.setenv("VAD_CACHE", str(tmp_path / "cache"))
    with pytest.raises(VADInputError) as info:
        load_backbone("i3d", weights=str(path), device="cpu")
    assert str(path) in str(info.value) and "sha256" in str(info.value)
    OUTCOMES.append(("weights:i3d", "refused"))


def test_truncated_denoiser_checkpoint_names_its_path(tmp_path: Path) -> None:
    path = _truncated_torch_file(tmp_path / "denoiser.pt")
    with pytest.raises(VADInputError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "not a readable denoiser checkpoint" in str(info.value)
    with pytest.raises(VADInputError, match="demo/denoiser/denoiser.pt"):
        load_checkpoint(path.read_bytes(), name="demo/denoiser/denoiser.pt")
    with pytest.raises(VADInputError, match="demo/denoiser/denoiser.pt: not a readable denoiser checkpoint"):
        load_detector(path.read_bytes(), name="demo/denoiser/denoiser.pt")  # what segment_scores loads
    OUTCOMES.append(("weights:denoiser", "refused"))


def test_zz_record_counts() -> None:
    """Runs last in this module (name order is file order): the tallies of the cases above."""
    target = os.environ.get("VAD_RELIABILITY_COUNTS")
    counts = pd.Series([o for _, o in OUTCOMES]).value_counts().to_dict() if OUTCOMES else {}
    if target:
        path = Path(target)
        existing = json.loads(path.read_text()) if path.is_file() else {}
        existing["inputs"] = {"tried": len(OUTCOMES), **{str(k): int(v) for k, v in counts.items()}}
        path.write_text(json.dumps(existing, indent=1, sort_keys=True))

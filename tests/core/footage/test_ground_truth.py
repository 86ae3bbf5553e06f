"""Ground truth: each annotation format against hand-written 0-based half-open expectations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from vad_core.errors import VADInputError
from vad_core.footage.ground_truth import (
    GT_COLUMNS,
    detect_format,
    frame_mask,
    mask_to_intervals,
    pixel_mask_files,
    read_ground_truth,
    read_pixel_mask,
)


def rows(df) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    assert list(df.columns) == list(GT_COLUMNS)
    return [
        (str(v), int(s), int(e)) for v, s, e in zip(df["video_id"], df["start_frame"], df["end_frame"], strict=False)
    ]


def save_cells(path: Path, cells: list[np.ndarray], name: str = "gt") -> Path:
    cell = np.empty((1, len(cells)), dtype=object)
    for i, c in enumerate(cells):
        cell[0, i] = c
    scipy.io.savemat(path, {name: cell})
    return path


# --------------------------------------------------------------------------- .mat


def test_ped2_mat_from_shared_data(ped2_dir: Path) -> None:
    df = read_ground_truth(ped2_dir / "ped2.mat", video_ids="testing/frames/{}")
    # README: 01: 61-180, 02: 95-180, 03: 1-146, 04: 31-180, 05: 1-129, 06: 1-159 (1-based inclusive)
    assert rows(df)[:6] == [
        ("testing/frames/01", 60, 180),
        ("testing/frames/02", 94, 180),
        ("testing/frames/03", 0, 146),
        ("testing/frames/04", 30, 180),
        ("testing/frames/05", 0, 129),
        ("testing/frames/06", 0, 159),
    ]
    assert len(df) == 12 and set(df["source"]) == {"ped2.mat"}
    assert str(df["start_frame"].dtype) == "int64"


def test_mat_with_several_intervals_and_an_empty_cell(tmp_path: Path) -> None:
    path = save_cells(
        tmp_path / "avenue.mat",
        [
            np.array([[78, 393], [120, 400]], dtype=np.uint16),  # columns: [78;120] and [393;400]
            np.zeros((2, 0)),  # no anomaly
            np.array([[1], [1]]),  # just the first frame
        ],
    )
    assert rows(read_ground_truth(path)) == [("01", 77, 120), ("01", 392, 400), ("03", 0, 1)]
    assert rows(read_ground_truth(path, video_ids=["a", "b", "c"])) == [("a", 77, 120), ("a", 392, 400), ("c", 0, 1)]
    assert rows(read_ground_truth(path, video_ids={"03": "x/03"})) == [
        ("01", 77, 120),
        ("01", 392, 400),
        ("x/03", 0, 1),
    ]
    assert rows(read_ground_truth(path, video_ids="v{index}"))[-1] == ("v3", 0, 1)


@pytest.mark.parametrize(
    "cells,match",
    [
        ([np.array([[5], [9]]), np.array([[1], [2], [3]])], "gt cell 2: expected a 2xM"),
        ([np.array([[9], [5]])], r"gt cell 1: bad 1-based inclusive interval \[9, 5\]"),
        ([np.array([[0], [5]])], r"gt cell 1: bad 1-based"),
        ([np.array([[1.5], [5]])], "whole numbers"),
    ],
)
def test_malformed_mat_cells(tmp_path: Path, cells: list[np.ndarray], match: str) -> None:
    path = save_cells(tmp_path / "bad.mat", cells)
    with pytest.raises(VADInputError, match=match):
        read_ground_truth(path)


def test_mat_errors(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "plain.mat", {"gt": np.array([[1, 2]])})
    with pytest.raises(VADInputError, match="cell array"):
        read_ground_truth(tmp_path / "plain.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(VADInputError, match="junk.mat"):
        read_ground_truth(tmp_path / "junk.mat")
    save_cells(tmp_path / "n.mat", [np.array([[1], [2]])])
    with pytest.raises(VADInputError, match="1 videos annotated but 2 video_ids"):
        read_ground_truth(tmp_path / "n.mat", video_ids=["a", "b"])


def test_ucsd_m_script(tmp_path: Path) -> None:
    path = tmp_path / "UCSDped1.m"
    path.write_text(
        "TestVideoFile = {};\n"
        "% comment: TestVideoFile{end+1}.gt_frame = [1:2];\n"
        "TestVideoFile{end+1}.gt_frame = [60:152];\n"
        "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n"
        "TestVideoFile{end+1}.gt_frame = [1:100 110:200];\n"
    )
    assert rows(read_ground_truth(path)) == [
        ("01", 59, 152),
        ("02", 4, 90),
        ("02", 139, 200),
        ("03", 0, 100),
        ("03", 109, 200),
    ]
    path.write_text("TestVideoFile{end+1}.gt_frame = [5:x];\n")
    with pytest.raises(VADInputError, match="line 1"):
        read_ground_truth(path)


# --------------------------------------------------------------------------- ShanghaiTech masks


def test_mask_to_intervals() -> None:
    assert mask_to_intervals(np.array([0, 1, 1, 0, 0, 1])) == [(1, 3), (5, 6)]
    assert mask_to_intervals(np.ones(4, np.int64)) == [(0, 4)]
    assert mask_to_intervals(np.zeros(4)) == []


def test_shanghaitech_mask_folder(tmp_path: Path) -> None:
    folder = tmp_path / "test_frame_mask"
    folder.mkdir()
    np.save(folder / "01_0014.npy", np.array([0, 0, 1, 1, 1, 0, 1], dtype=np.int64))
    np.save(folder / "01_0015.npy", np.zeros(5, dtype=np.int64))
    np.save(folder / "12_0151.npy", np.array([True, True, False]))
    df = read_ground_truth(folder, video_ids="testing/frames/{}")
    assert rows(df) == [
        ("testing/frames/01_0014", 2, 5),
        ("testing/frames/01_0014", 6, 7),
        ("testing/frames/12_0151", 0, 2),
    ]
    assert set(df["source"]) == {"test_frame_mask"}
    assert rows(read_ground_truth(folder / "12_0151.npy")) == [("12_0151", 0, 2)]


def test_bad_masks(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.array([0, 2, 1]))
    with pytest.raises(VADInputError, match="a.npy: mask values must be 0 or 1"):
        read_ground_truth(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.zeros((2, 3)))
    with pytest.raises(VADInputError, match="b.npy: expected a 1-D"):
        read_ground_truth(tmp_path / "b.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VADInputError, match="no .npy"):
        read_ground_truth(tmp_path / "empty")


# --------------------------------------------------------------------------- UCF-Crime


def test_ucf_crime_annotation(tmp_path: Path) -> None:
    path = tmp_path / "Temporal_Anomaly_Annotation.txt"
    path.write_text(
        "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
        "Arson011_x264.mp4  Arson  150  420  680  1267\n"
        "\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "Burglary079_x264.mp4  Burglary  0  10  -1  -1\n"  # 0 is clamped to frame 1 like the official evaluator
    )
    assert rows(read_ground_truth(path)) == [
        ("Abuse028_x264", 164, 240),
        ("Arson011_x264", 149, 420),
        ("Arson011_x264", 679, 1267),
        ("Burglary079_x264", 0, 10),
    ]
    df = read_ground_truth(path, video_ids="{label}/{id}")
    assert rows(df)[0] == ("Abuse/Abuse028_x264", 164, 240)


@pytest.mark.parametrize(
    "line,match",
    [
        ("Abuse028_x264.mp4  Abuse  165  240  -1\n", "line 2: expected 'name class"),
        ("Abuse028_x264.mp4  Abuse  165  x  -1  -1\n", "line 2: frame numbers must be integers"),
        ("Abuse028_x264.mp4  Abuse  165  -1  -1  -1\n", "line 2: -1 must mark both ends"),
        ("Abuse028_x264.mp4  Abuse  240  165  -1  -1\n", r"line 2: bad 1-based inclusive interval \[240, 165\]"),
    ],
)
def test_malformed_ucf_lines(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "ann.txt"
    path.write_text("Arson011_x264.mp4  Arson  150  420  680  1267\n" + line)
    with pytest.raises(VADInputError, match=match):
        read_ground_truth(path)


# --------------------------------------------------------------------------- CSV and dispatch


def test_plain_csv_is_already_half_open(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_text("video_id,start_frame,end_frame,note\nb,5,9,x\na,0,3,\nb,1,2,\n")
    df = read_ground_truth(path)
    assert rows(df) == [("a", 0, 3), ("b", 1, 2), ("b", 5, 9)]  # sorted by video, then start
    assert rows(read_ground_truth(path, video_ids="cam/{}"))[0] == ("cam/a", 0, 3)


@pytest.mark.parametrize(
    "text,match",
    [
        ("video,start_frame,end_frame\na,0,3\n", "missing column"),
        ("video_id,start_frame,end_frame\na,0,3\na,4,4\n", r"line 3: bad 0-based half-open interval \[4, 4\)"),
        ("video_id,start_frame,end_frame\na,zero,3\n", "line 2: start_frame/end_frame must be integers"),
        ("video_id,start_frame,end_frame\n,0,3\n", "line 2: empty video_id"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "gt.csv"
    path.write_text(text)
    with pytest.raises(VADInputError, match=match):
        read_ground_truth(path)


def test_dispatch_and_unknown_inputs(tmp_path: Path) -> None:
    assert [detect_format(p) for p in ("a.mat", "b.M", "c.txt", "d.csv", "e.npy")] == [
        "mat",
        "ucsd_m",
        "ucf_crime",
        "csv",
        "masks",
    ]
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(VADInputError, match="cannot tell the annotation format"):
        read_ground_truth(tmp_path / "a.json")
    with pytest.raises(VADInputError, match="unknown ground-truth format"):
        read_ground_truth(tmp_path / "a.json", format="xml")
    with pytest.raises(VADInputError, match="not found"):
        read_ground_truth(tmp_path / "missing.csv")
    # An explicit format overrides the extension.
    (tmp_path / "labels.dat").write_text("video_id,start_frame,end_frame\nv,2,4\n")
    assert rows(read_ground_truth(tmp_path / "labels.dat", format="csv")) == [("v", 2, 4)]


def test_frame_mask_clips_to_the_video(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_text("video_id,start_frame,end_frame\nv,2,4\nv,6,99\nw,0,1\n")
    np.testing.assert_array_equal(frame_mask(read_ground_truth(path), "v", 8), [0, 0, 1, 1, 0, 0, 1, 1])


# --------------------------------------------------------------------------- pixel masks


def write_pixel_masks(folder: Path) -> dict[str, np.ndarray]:
    """A ShanghaiTech-style `test_pixel_mask/`: `01_0014.npy` (an object moving right over 6 frames of
    12x16, uint8 0/1) and `02_0001.npy` (bool, no anomaly)."""
    folder.mkdir(parents=True)
    moving = np.zeros((6, 12, 16), np.uint8)
    for t in range(6):
        moving[t, 4:8, 2 * t : 2 * t + 3] = 1
    still = np.zeros((6, 12, 16), bool)
    np.save(folder / "01_0014.npy", moving)
    np.save(folder / "02_0001.npy", still)
    return {"01_0014": moving.astype(bool), "02_0001": still}


def test_pixel_masks_shanghaitech_layout(tmp_path: Path) -> None:
    truth = write_pixel_masks(tmp_path / "test_pixel_mask")
    files = pixel_mask_files(tmp_path / "test_pixel_mask")
    assert sorted(files) == ["01_0014", "02_0001"]
    for vid, expected in truth.items():
        got = read_pixel_mask(files[vid], n_frames=6, size=(16, 12))
        assert got.dtype == bool and got.shape == (6, 12, 16)
        np.testing.assert_array_equal(got, expected)
    assert read_pixel_mask(files["01_0014"])[3, 4:8, 6:9].all() and read_pixel_mask(files["01_0014"]).sum() == 72
    # ids renamed like the frame-level ground truth's
    renamed = pixel_mask_files(tmp_path / "test_pixel_mask", video_ids="testing/{}")
    assert sorted(renamed) == ["testing/01_0014", "testing/02_0001"]
    np.save(tmp_path / "test_pixel_mask" / "03_0001.npy", np.full((2, 12, 16), 255, np.uint8))
    assert read_pixel_mask(pixel_mask_files(tmp_path / "test_pixel_mask")["03_0001"]).all()  # 0/255 images


@pytest.mark.parametrize(
    ("array", "kwargs", "match"),
    [
        (np.zeros((6, 12), np.uint8), {}, r"\(F, H, W\)"),
        (np.full((6, 12, 16), 2, np.uint8), {}, "0/1"),
        (np.zeros((6, 12, 16), np.uint8), {"n_frames": 7}, "6 mask frames, the video has 7"),
        (np.zeros((6, 12, 16), np.uint8), {"size": (12, 16)}, "masks are 16x12, the video is 12x16"),
    ],
)
def test_bad_pixel_masks_name_the_file(tmp_path: Path, array: np.ndarray, kwargs: dict, match: str) -> None:
    path = tmp_path / "01_0001.npy"
    np.save(path, array)
    with pytest.raises(VADInputError, match=match) as err:
        read_pixel_mask(path, **kwargs)
    assert "01_0001.npy" in str(err.value)
    (tmp_path / "junk.npy").write_bytes(b"no")
    with pytest.raises(VADInputError, match="junk.npy: not a readable"):
        read_pixel_mask(tmp_path / "junk.npy")
    with pytest.raises(VADInputError, match="not found"):
        pixel_mask_files(tmp_path / "missing")

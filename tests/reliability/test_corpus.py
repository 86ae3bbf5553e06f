"""A corpus of bad and odd footage, generated here: every input gets exactly one manifest row whose
status and message say what is wrong, and the good videos' features are exactly what they would
be without the bad ones beside them.

Cases: empty and random files, truncations at several offsets in mp4 (index first and last),
mkv, webm, avi and ts, 1- and 10-frame videos, a resolution change, a display rotation, variable
frame rates (irregular and with a pause), a constant-rate stream with a lost frame, audio-only and
audio-longer-than-video files, symlink loops and dangling links, unreadable folders and files,
corrupt, empty, mixed-size, gapped and doubly numbered JPEG folders, and ids two videos share.
The counts are written to `$VAD_RELIABILITY_COUNTS` (JSON) when it is set.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.reliability.media import (
    CONTAINERS,
    cut,
    reference_frame_count,
    rotate_mp4,
    shift_composition_time,
    texture_frames,
    write_audio_only,
    write_frames,
    write_video,
)
from vad_core.features import PixelStatsBackbone, extract_all
from vad_core.footage import ClipConfig, build_manifest, discover_videos, iter_frames
from vad_core.io.store import MemoryTableStore

N = 24
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Words one of which an error message must contain: it names the problem, not just "failed".
PROBLEM_WORDS = ("truncated", "corrupt", "not a readable video", "no video stream", "decoding failed", "no decodable")


@dataclass(frozen=True)
class Case:
    """One input: where it lies under the root, what its row must say."""

    rel: str
    status: str
    words: tuple[str, ...] = ()
    n_frames: int | None = None
    good: bool = False  # a good video whose features are compared with a clean run


def _corner_frame() -> np.ndarray:
    """96x64, dark, with a bright 16x16 block in the top-left corner: its orientation is plain to see."""
    frame = np.full((64, 96, 3), 20, np.uint8)
    frame[:16, :16] = 240
    return frame


def _random_bytes(path: Path, n: int = 5000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def build_corpus(root: Path, scratch: Path) -> list[Case]:
    cases: list[Case] = []

    def add(rel: str, status: str, *words: str, n_frames: int | None = None, good: bool = False) -> None:
        cases.append(Case(rel, status, tuple(words), n_frames, good))

    # -- good videos, one per container and kind
    for ext in CONTAINERS:
        write_video(root / "good" / f"clip_{ext[1:]}{ext}", n=N, seed=1)  # one stem per file: ids differ
        add(f"good/clip_{ext[1:]}{ext}", "ok", n_frames=N, good=True)
    write_video(root / "good" / "ten.mp4", n=10, seed=2)
    add("good/ten.mp4", "ok", n_frames=10, good=True)
    write_frames(root / "good" / "frames", texture_frames(20, seed=3))
    add("good/frames", "ok", n_frames=20, good=True)
    # variable frame rate: irregular intervals, and a constant rate with a one-second pause
    irregular = np.cumsum([0] + [40, 80, 20, 120, 40, 40, 80, 20] * 3)[:N].tolist()
    write_video(root / "odd" / "vfr_irregular.mkv", n=N, pts_ms=irregular)
    add("odd/vfr_irregular.mkv", "ok", n_frames=N, good=True)
    pause = [i * 83 for i in range(12)] + [2000 + i * 83 for i in range(12)]
    write_video(root / "odd" / "vfr_pause.mkv", n=N, pts_ms=pause)
    add("odd/vfr_pause.mkv", "ok", n_frames=N, good=True)
    rotate_mp4(write_video(root / "odd" / "rotated.mp4", frames=[_corner_frame()] * N), 90)
    add("odd/rotated.mp4", "ok", n_frames=N, good=True)
    write_video(root / "odd" / "audio_longer_mkv.mkv", n=N, audio_seconds=4.0)
    add("odd/audio_longer_mkv.mkv", "ok", n_frames=N, good=True)
    write_video(root / "odd" / "audio_longer_mp4.mp4", n=N, audio_seconds=4.0)
    add("odd/audio_longer_mp4.mp4", "ok", n_frames=N, good=True)

    # -- files that are no video at all
    (root / "bad").mkdir()
    (root / "bad" / "empty.mp4").write_bytes(b"")
    add("bad/empty.mp4", "error", "zero bytes")
    for i, ext in enumerate(CONTAINERS):
        _random_bytes(root / "bad" / f"random_{ext[1:]}{ext}", seed=i)
        add(f"bad/random_{ext[1:]}{ext}", "error")
    (root / "bad" / "text.avi").write_text("not a video\n" * 100)
    add("bad/text.avi", "error", "not a readable video")
    write_audio_only(root / "bad" / "audio_only.mp4")
    add("bad/audio_only.mp4", "error", "no video stream")

    # -- truncations at several offsets, every container (mp4 with its index first and last)
    for ext in CONTAINERS:
        for faststart in (False, True) if ext == ".mp4" else (False,):
            name = f"clip_{ext[1:]}{'_faststart' if faststart else ''}{ext}"
            source = write_video(scratch / name, n=N, seed=4, faststart=faststart)
            for keep in (0.25, 0.5, 0.9, -200):
                rel = f"cut/{Path(name).stem}_{str(keep).replace('-', 'minus').replace('.', 'p')}{ext}"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cut(source, keep, root / rel)
                if ext == ".avi" and keep == -200:  # only the trailing index is lost: every frame is there
                    add(rel, "ok", n_frames=N, good=True)
                else:
                    add(rel, "error")
    # the cases: an mp4 (index first) missing its last 200 bytes; a ts cut inside a packet
    add_words = {"cut/clip_mp4_faststart_minus200.mp4": ("decoding failed",), "cut/clip_ts_minus200.ts": ("truncated",)}
    cases = [Case(c.rel, c.status, add_words.get(c.rel, c.words)) if c.rel in add_words else c for c in cases]

    # -- too short, changing size, frames lost
    write_video(root / "short" / "one_mp4.mp4", n=1)
    add("short/one_mp4.mp4", "error", "single frame")
    write_video(root / "short" / "one_mkv.mkv", n=1)
    add("short/one_mkv.mkv", "error", "single frame")
    a = write_video(scratch / "a.ts", n=12, width=96, height=64)
    b = write_video(scratch / "b.ts", n=12, width=64, height=48)
    (root / "odd" / "size_change.ts").write_bytes(a.read_bytes() + b.read_bytes())
    add("odd/size_change.ts", "error", "frame size changes from 96x64 to 64x48")
    dropped = [i * 83 for i in range(N + 1) if i != 13]  # frame 13 never made it into the stream
    write_video(root / "odd" / "lost_frame.mkv", n=N, pts_ms=dropped)
    add("odd/lost_frame.mkv", "error", "1 frames missing")
    # a damaged composition-time entry moves a frame out of the edit list: 23 of 24 frames decode
    # and a plain decode agrees (found by the fuzz test; the probe once passed it as a short video)
    shift_composition_time(write_video(root / "odd" / "ctts_damaged.mp4", n=N))
    add("odd/ctts_damaged.mp4", "error", "packets discarded by damaged timing", "1 frames missing")

    # -- links: a loop of folders, a link that points at itself, one that points nowhere
    (root / "links").mkdir()
    os.symlink("..", root / "links" / "up")  # walking it would revisit the whole root
    os.symlink("self.mp4", root / "links" / "self.mp4")
    add("links/self.mp4", "error", "cannot be read")
    os.symlink("nowhere.mp4", root / "links" / "dangling.mp4")
    add("links/dangling.mp4", "error", "cannot be read")

    # -- frame folders gone wrong
    frames = texture_frames(6, seed=5)
    write_frames(root / "jpeg" / "truncated", frames)
    cut(root / "jpeg" / "truncated" / "0003.jpg", 0.5)
    add("jpeg/truncated", "error", "0003.jpg", "corrupt")
    write_frames(root / "jpeg" / "garbage", frames)
    (root / "jpeg" / "garbage" / "0002.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    add("jpeg/garbage", "error", "0002.jpg", "corrupt")
    write_frames(root / "jpeg" / "empty_frame", frames)
    (root / "jpeg" / "empty_frame" / "0004.jpg").write_bytes(b"")
    add("jpeg/empty_frame", "error", "0004.jpg", "zero bytes")
    write_frames(root / "jpeg" / "mixed_sizes", frames[:3] + texture_frames(3, 64, 48, seed=6), "{:04d}.jpg")
    add("jpeg/mixed_sizes", "error", "mixed sizes", "96x64", "64x48")
    write_frames(root / "jpeg" / "gap", frames)
    (root / "jpeg" / "gap" / "0002.jpg").unlink()
    add("jpeg/gap", "error", "jump", "1 frames missing")
    write_frames(root / "jpeg" / "doubled", frames)
    shutil.copy(root / "jpeg" / "doubled" / "0001.jpg", root / "jpeg" / "doubled" / "1.jpg")
    add("jpeg/doubled", "error", "two frames carry number 1")
    write_frames(root / "jpeg" / "single", frames[:1])
    add("jpeg/single", "error", "single frame")

    # -- one id, two videos: neither is renamed, both are quarantined naming the other
    write_video(root / "dup" / "cam.mp4", n=N)
    write_video(root / "dup" / "cam.mkv", n=N)
    add("dup/cam.mp4", "error", "2 videos share the id 'dup/cam'", "cam.mkv")
    add("dup/cam.mkv", "error", "2 videos share the id 'dup/cam'", "cam.mp4")
    write_frames(root / "dup" / "site", frames)
    write_video(root / "dup" / "site.avi", n=N)
    add("dup/site", "error", "share the id 'dup/site'")
    add("dup/site.avi", "error", "share the id 'dup/site'")

    # -- not footage: never rows
    (root / "good" / "notes.txt").write_text("camera notes")
    (root / "good" / ".hidden.mp4").write_bytes(b"")
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root, tmp_path_factory.mktemp("scratch"))


def _rows_by_path(manifest: pd.DataFrame) -> dict[str, dict]:
    return {str(r["path"]): r for r in manifest.to_dict("records")}


def test_every_input_gets_one_row_that_names_its_problem(corpus: tuple[Path, list[Case]]) -> None:
    root, cases = corpus
    manifest = build_manifest(root)
    rows = _rows_by_path(manifest)
    assert len(manifest) == len(rows) == len(cases), "rows lost or doubled"  # one row per input, nothing else
    problems = []
    for case in cases:
        row = rows.get(str(root / case.rel))
        if row is None:
            problems.append(f"{case.rel}: no row")
            continue
        message = str(row["error"])
        if row["status"] != case.status:
            problems.append(f"{case.rel}: status {row['status']} ({message}), expected {case.status}")
        elif case.status == "error":
            if str(root / case.rel) not in message:
                problems.append(f"{case.rel}: message does not name the file: {message}")
            if not case.words and not any(w in message for w in PROBLEM_WORDS):
                problems.append(f"{case.rel}: message does not name the problem: {message}")
            problems += [f"{case.rel}: {w!r} not in {message!r}" for w in case.words if w not in message]
            if not (pd.isna(row["n_frames"]) and pd.isna(row["width"])):
                problems.append(f"{case.rel}: an error row with a frame count")
        elif case.n_frames is not None and row["n_frames"] != case.n_frames:
            problems.append(f"{case.rel}: {row['n_frames']} frames, expected {case.n_frames}")
    _record(cases, rows)
    assert not problems, "\n".join(problems)


def test_odd_but_valid_videos_decode_as_probed(corpus: tuple[Path, list[Case]]) -> None:
    """What the manifest promises, decoding delivers: the count, the displayed size, upright frames."""
    root, cases = corpus
    rows = _rows_by_path(build_manifest(root))
    for case in cases:
        if case.status != "ok":
            continue
        row = rows[str(root / case.rel)]
        frames = list(iter_frames(row["path"], row["kind"]))
        assert len(frames) == row["n_frames"], case.rel
        assert frames[0].shape == (row["height"], row["width"], 3), case.rel
        if row["kind"] == "file":
            assert reference_frame_count(Path(row["path"])) == row["n_frames"], case.rel
    turned = rows[str(root / "odd/rotated.mp4")]
    assert (turned["width"], turned["height"], turned["rotation"]) == (64, 96, 90)
    # Turned 90 degrees clockwise for display, the coded picture's bright top-left corner is top-right.
    upright = next(iter_frames(root / "odd/rotated.mp4", "file")).mean(axis=2)
    assert upright.shape == (96, 64)
    corners = {"top-left": upright[:16, :16], "top-right": upright[:16, -16:], "bottom-left": upright[-16:, :16]}
    assert max(corners, key=lambda k: corners[k].mean()) == "top-right"
    assert corners["top-right"].mean() > 200 and corners["top-left"].mean() < 60


def test_good_features_are_untouched_by_bad_neighbours(corpus: tuple[Path, list[Case]], tmp_path: Path) -> None:
    root, cases = corpus
    clean = tmp_path / "clean"
    for case in cases:
        if case.good:
            (clean / case.rel).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (root / case.rel).is_dir() else shutil.copy)(root / case.rel, clean / case.rel)
    config, backbone = ClipConfig(short_side=64, tile_size=32), PixelStatsBackbone(grid=2)
    stores = {}
    for name, where in (("clean", clean), ("corpus", root)):
        manifest = build_manifest(where)
        store = stores[name] = MemoryTableStore()
        results = extract_all(manifest[manifest["status"] == "ok"], backbone, config, store, prefix="f")
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    good = sorted(s.video_id for s in discover_videos(clean))
    assert sorted(k.removeprefix("f/").removesuffix(".parquet") for k in stores["corpus"].list("f")) == good
    for vid in good:
        key = f"f/{vid}.parquet"
        a, b = stores["clean"].read_table(key), stores["corpus"].read_table(key)
        assert a.drop_columns(["feature"]).equals(b.drop_columns(["feature"])), vid
        np.testing.assert_array_equal(
            np.stack(a["feature"].to_numpy(zero_copy_only=False)), np.stack(b["feature"].to_numpy(zero_copy_only=False))
        )


def test_an_unreadable_folder_is_a_row_not_a_silence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_video(tmp_path / "ok.mp4", n=N)
    write_video(tmp_path / "locked" / "inside.mp4", n=N)
    real_scandir = os.scandir

    def scandir(path: object = "."):
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root can read anything: make the folder unreadable
    manifest = build_manifest(tmp_path)
    assert manifest["video_id"].tolist() == ["locked", "ok"]
    locked = manifest.iloc[0]
    assert locked["status"] == "error" and "cannot list the folder (Permission denied)" in locked["error"]
    assert str(tmp_path / "locked") in locked["error"] and "not in the manifest" in locked["error"]


def test_an_id_does_not_depend_on_which_other_files_exist(tmp_path: Path) -> None:
    """Regression (issue 10, defect 2): with dup.mp4 and dup.mkv the ids were 'dup.mp4' and 'dup.mkv',
    and deleting one renamed the other to 'dup' (a new partition, old features lingering)."""
    write_video(tmp_path / "dup.mp4", n=N)
    write_video(tmp_path / "dup.mkv", n=N)
    write_video(tmp_path / "solo.mp4", n=N)

    def ids() -> dict[str, tuple[str, str]]:
        return {Path(r["path"]).name: (r["video_id"], r["status"]) for r in build_manifest(tmp_path).to_dict("records")}

    assert ids() == {"dup.mkv": ("dup", "error"), "dup.mp4": ("dup", "error"), "solo.mp4": ("solo", "ok")}
    (tmp_path / "dup.mkv").unlink()
    assert ids() == {"dup.mp4": ("dup", "ok"), "solo.mp4": ("solo", "ok")}  # same id, now readable
    write_video(tmp_path / "dup.avi", n=N)
    assert ids()["dup.mp4"] == ("dup", "error") and ids()["solo.mp4"] == ("solo", "ok")


@pytest.mark.skipif(IS_ROOT, reason="permission bits do not bind root")
def test_permissions_for_real(tmp_path: Path) -> None:
    write_video(tmp_path / "closed" / "inside.mp4", n=N)
    write_video(tmp_path / "secret.mp4", n=N)
    (tmp_path / "closed").chmod(0)
    (tmp_path / "secret.mp4").chmod(0)
    try:
        rows = build_manifest(tmp_path).set_index("video_id")
        assert rows.loc["closed", "status"] == "error" and "cannot list the folder" in rows.loc["closed", "error"]
        assert rows.loc["secret", "status"] == "error" and "secret.mp4" in rows.loc["secret", "error"]
    finally:
        (tmp_path / "closed").chmod(0o755)
        (tmp_path / "secret.mp4").chmod(0o644)


def _record(cases: list[Case], rows: dict[str, dict]) -> None:
    target = os.environ.get("VAD_RELIABILITY_COUNTS")
    if not target:
        return
    path = Path(target)
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing["corpus_videos"] = {
        "inputs": len(cases),
        "rows": len(rows),
        "ok": sum(1 for c in cases if c.status == "ok"),
        "error_rows": sum(1 for c in cases if c.status == "error"),
    }
    path.write_text(json.dumps(existing, indent=1, sort_keys=True))


CaseBuilder = Callable[[Path], Path]

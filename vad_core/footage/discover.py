"""Find videos under a footage root: video files and numbered frame folders, with stable ids.

Two kinds of video are understood: a video *file* (anything FFmpeg demuxes, read with PyAV)
and a *frame folder* (a directory of numbered images, the layout Ped2, Avenue and
ShanghaiTech ship in, read with Pillow). Frames are numbered from 0 in decode order (files)
or in numeric file-name order (folders).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vad_core.errors import VADInputError

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".asf",
        ".flv",
        ".ts",
        ".mts",
        ".m2ts",
        ".3gp",
        ".ogv",
        ".vob",
        ".mxf",
        ".divx",
        ".dv",
        ".y4m",
    }
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# UCSD ships per-pixel anomaly masks as bmp folders named `Test001_gt`: labels, not footage.
SKIP_DIR_SUFFIXES = ("_gt",)
_DIGITS = re.compile(r"(\d+)(?!.*\d)")

Kind = Literal["file", "frames"]


@dataclass(frozen=True)
class VideoSource:
    """One video under a footage root: `video_id` is its path under the root, no extension."""

    video_id: str
    path: Path
    kind: Kind

    def to_dict(self) -> dict[str, str]:
        return {"video_id": self.video_id, "path": str(self.path), "kind": self.kind}


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _frame_number(path: Path) -> int | None:
    if path.suffix.lower() not in IMAGE_EXTENSIONS or not _visible(path.name):
        return None
    m = _DIGITS.search(path.stem)
    return int(m.group(1)) if m else None


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The numbered image files of a frame folder, sorted by frame number.

    Images without a number in their name are ignored. Two files with the same number, or a gap
    in the numbering (a lost frame would shift every later frame against the ground truth), raise
    `VADInputError`.
    """
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.is_file()]
    except OSError as exc:
        raise VADInputError(f"{folder}: cannot list the frame folder ({exc})") from None
    numbered = sorted((n, p) for p in entries if (n := _frame_number(p)) is not None)
    if not numbered:
        raise VADInputError(f"{folder}: no numbered image frames ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    for (n0, p0), (n1, p1) in zip(numbered, numbered[1:], strict=False):
        if n1 == n0:
            raise VADInputError(f"{folder}: two frames carry number {n0} ({p0.name}, {p1.name})")
        if n1 != n0 + 1:
            raise VADInputError(
                f"{folder}: frame numbers jump from {p0.name} to {p1.name} ({n1 - n0 - 1} frames missing)"
            )
    return [p for _, p in numbered]


def _is_frame_folder(names: list[str]) -> bool:
    return any(_frame_number(Path(n)) is not None for n in names)


def discover_videos(root: str | os.PathLike) -> list[VideoSource]:
    """Every video file and frame folder under `root`, sorted by `video_id`.

    `video_id` is the posix path under `root` without the file extension (a frame folder: its
    directory path; `root` itself, when it is a frame folder: its name). Hidden entries and
    `*_gt` mask folders are skipped. When two videos would share an id (`a.mp4` and `a.avi`, or
    `a.mp4` beside a frame folder `a/`), the files keep their extension in the id.
    """
    root = Path(root)
    if not root.is_dir():
        raise VADInputError(f"footage root {root}: not a directory")
    found: list[tuple[str, Path, Kind, str]] = []  # (id without ext, path, kind, id with ext)
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if _visible(d) and not d.endswith(SKIP_DIR_SUFFIXES))
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        if _is_frame_folder(filenames):
            vid = rel_dir if rel_dir != "." else root.resolve().name
            found.append((vid, here, "frames", vid))
        for name in sorted(filenames):
            p = here / name
            if _visible(name) and p.suffix.lower() in VIDEO_EXTENSIONS:
                rel = p.relative_to(root)
                found.append((rel.with_suffix("").as_posix(), p, "file", rel.as_posix()))
    counts: dict[str, int] = {}
    for vid, *_ in found:
        counts[vid] = counts.get(vid, 0) + 1
    sources = [
        VideoSource(full if counts[vid] > 1 and kind == "file" else vid, path, kind) for vid, path, kind, full in found
    ]
    return sorted(sources, key=lambda s: s.video_id)


__all__ = [
    "IMAGE_EXTENSIONS",
    "SKIP_DIR_SUFFIXES",
    "VIDEO_EXTENSIONS",
    "Kind",
    "VideoSource",
    "discover_videos",
    "list_frames",
]

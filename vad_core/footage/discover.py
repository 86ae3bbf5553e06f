"""Find videos under a footage root: video files and numbered frame folders, with stable ids.

Two kinds of video are understood: a video *file* (anything FFmpeg demuxes, read with PyAV)
and a *frame folder* (a directory of numbered images, the layout Ped2, Avenue and
ShanghaiTech ship in, read with Pillow). Frames are numbered from 0 in decode order (files)
or in numeric file-name order (folders).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
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
    """One video under a footage root: `video_id` is its path under the root, no extension.

    `error` is set when discovery already knows the video cannot be used (a folder that cannot
    be listed, an id two videos share); probing turns it into a manifest row with status `error`.
    """

    video_id: str
    path: Path
    kind: Kind
    error: str | None = None

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


def _collisions(found: list[VideoSource]) -> list[VideoSource]:
    """Sources that share an id all become errors naming each other: an id never depends on which
    other files exist, so neither is renamed (deleting one later leaves the other's id unchanged)."""
    by_id: dict[str, list[VideoSource]] = {}
    for src in found:
        by_id.setdefault(src.video_id, []).append(src)
    out = []
    for vid, group in by_id.items():
        if len(group) == 1:
            out.extend(group)
            continue
        names = ", ".join(sorted(str(s.path) for s in group))
        for src in group:
            out.append(
                VideoSource(
                    vid,
                    src.path,
                    src.kind,
                    src.error
                    or f"{src.path}: {len(group)} videos share the id {vid!r} ({names}); ids are paths without "
                    "their extension: rename or remove all but one",
                )
            )
    return out


def discover_videos(
    root: str | os.PathLike,
    keep: Callable[[str, Kind], bool] | None = None,
    keep_folder: Callable[[str], bool] | None = None,
) -> list[VideoSource]:
    """Every video file and frame folder under `root`, sorted by `video_id` (then path).

    `video_id` is the posix path under `root` without the file extension (a frame folder: its
    directory path; `root` itself, when it is a frame folder: its name), decided by the video
    alone so that it is stable across runs. Hidden entries and `*_gt` mask folders are skipped.
    Two videos that would share an id (`a.mp4` and `a.avi`, or `a.mp4` beside a frame folder
    `a/`) are both returned with `error` set, never renamed. A folder that cannot be listed is
    returned as a source with `error` set (kind `frames`, its path as id): nothing under the root
    is skipped without a word.

    `keep(video_id, kind)` narrows the videos (a dataset spec's globs and layout) before ids are
    compared, so a video outside the dataset never collides with one inside it; `keep_folder(id)`
    says whether an unreadable folder could hold videos the dataset wants (default: any could).
    """
    root = Path(root)
    if not root.is_dir():
        raise VADInputError(f"footage root {root}: not a directory")
    found: list[VideoSource] = []
    seen_dirs: set[str] = set()

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        rel = where.relative_to(root).as_posix() if where != root and where.is_relative_to(root) else root.name
        if keep_folder is not None and not keep_folder(rel):
            return
        found.append(
            VideoSource(
                rel,
                where,
                "frames",
                f"{where}: cannot list the folder ({exc.strerror or exc}); the videos in it are not in the manifest",
            )
        )

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
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
            if keep is None or keep(vid, "frames"):
                found.append(VideoSource(vid, here, "frames"))
        for name in sorted(filenames):
            p = here / name
            if _visible(name) and p.suffix.lower() in VIDEO_EXTENSIONS:
                vid = p.relative_to(root).with_suffix("").as_posix()
                if keep is None or keep(vid, "file"):
                    found.append(VideoSource(vid, p, "file"))
    return sorted(_collisions(found), key=lambda s: (s.video_id, str(s.path)))


__all__ = [
    "IMAGE_EXTENSIONS",
    "SKIP_DIR_SUFFIXES",
    "VIDEO_EXTENSIONS",
    "Kind",
    "VideoSource",
    "discover_videos",
    "list_frames",
]

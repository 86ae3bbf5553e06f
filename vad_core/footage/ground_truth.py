"""Ground-truth parsers: every annotation format becomes one table of anomalous intervals.

Output columns (design.md): `video_id`, `start_frame`, `end_frame` (0-based, half-open
`[start, end)`), `source` (the annotation file's name). Supported inputs:

- `mat`: Ped2 / Avenue `.mat` with a cell `gt` (1 x K) of 2 x M arrays, column j = one
  interval `[first; last]`, 1-based and inclusive -> `[first - 1, last)`. Cell k is the
  k-th test video (default id `"01"`, `"02"`, ...).
- `ucsd_m`: UCSD's own `UCSDped*.m` script, `TestVideoFile{end+1}.gt_frame = [61:180];`
  (several ranges per video possible), same numbering as `mat`.
- `masks`: ShanghaiTech `test_frame_mask/` folder of per-frame 0/1 `.npy` vectors (or one
  file); runs of 1 -> intervals; id = file stem.
- `ucf_crime`: UCF-Crime `Temporal_Anomaly_Annotation*.txt` lines `name class s1 e1 s2 e2`,
  `-1` = no interval. The numbers are 1-based and inclusive: the authors' evaluator
  (Evaluate_Anomaly_Detector.m) builds labels with `GT(max(s, 1):min(e, n)) = 1`; a start of
  0 is clamped to 1 the same way. id = the name without its extension.
- `csv`: `video_id,start_frame,end_frame` already 0-based half-open (extra columns ignored).

Pixel-level ground truth (where the anomaly is in the frame) comes separately, in ShanghaiTech's
`test_pixel_mask/` layout: `pixel_mask_files(folder)` finds the `<id>.npy` files and
`read_pixel_mask(file)` reads one video's `(F, H, W)` masks.

`video_ids` renames the default ids: a list (one per video, in file order), a mapping
(default id -> id; ids not in it are kept), or a template string formatted with the default
id, e.g. `"testing/frames/{}"` (fields: `{}`/`{id}`, `{index}` 1-based, `{label}` UCF class).
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError

GT_COLUMNS = ("video_id", "start_frame", "end_frame", "source")
GT_DTYPES: dict[str, str] = {"video_id": "string", "start_frame": "int64", "end_frame": "int64", "source": "string"}
FORMATS = ("mat", "ucsd_m", "masks", "ucf_crime", "csv")
VideoIds = Sequence[str] | Mapping[str, str] | str | None

# (default id, 1-based index, label, [(start, end) 0-based half-open])
_Entry = tuple[str, int, str, list[tuple[int, int]]]


def _read_text(path: Path) -> str:
    """A text annotation file, a leading byte-order mark dropped (it would glue onto the first name)."""
    return path.read_text(encoding="utf-8-sig", errors="replace")


def _from_one_based(first: int, last: int, where: str) -> tuple[int, int]:
    if first < 1 or last < first:
        raise VADInputError(f"{where}: bad 1-based inclusive interval [{first}, {last}]")
    return first - 1, last


def _read_mat(path: Path) -> list[_Entry]:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:
        raise VADInputError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7") from None
    except Exception as exc:  # scipy raises many types (MatReadError, IndexError, ...) on junk
        raise VADInputError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    names = [k for k in data if not k.startswith("__")]
    if "gt" in data:
        cells = data["gt"]
    elif len(names) == 1:
        cells = data[names[0]]
    else:
        raise VADInputError(f"{path}: no variable 'gt' (variables: {names})")
    if not isinstance(cells, np.ndarray) or cells.dtype != object:
        raise VADInputError(
            f"{path}: 'gt' must be a cell array of 2xM interval arrays, got {type(cells).__name__} "
            f"{getattr(cells, 'dtype', '')}"
        )
    entries: list[_Entry] = []
    for k, cell in enumerate(cells.ravel(), start=1):
        where = f"{path}: gt cell {k}"
        arr = np.asarray(cell)
        if arr.size == 0:
            entries.append((f"{k:02d}", k, "", []))
            continue
        if not np.issubdtype(arr.dtype, np.number):
            raise VADInputError(f"{where}: expected numbers, got {arr.dtype}")
        if arr.ndim == 1 and arr.size == 2:
            arr = arr.reshape(2, 1)
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise VADInputError(f"{where}: expected a 2xM array of [first; last] rows, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise VADInputError(f"{where}: frame numbers must be whole numbers")
        cols = arr.astype(np.int64)  # Ped2 stores uint8: widen before subtracting
        entries.append((f"{k:02d}", k, "", [_from_one_based(int(a), int(b), where) for a, b in cols.T]))
    return entries


_M_LINE = re.compile(r"gt_frame\s*=\s*\[(?P<body>[^\]]*)\]")
_M_RANGE = re.compile(r"(\d+)\s*:\s*(\d+)|(\d+)")


def _read_ucsd_m(path: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        m = _M_LINE.search(line.split("%", 1)[0])
        if not m:
            continue
        k = len(entries) + 1
        where = f"{path}: line {lineno}"
        body = m["body"]
        if _M_RANGE.sub("", body).strip(" \t,;"):
            raise VADInputError(f"{where}: cannot read ranges {body!r} (expected a:b, c:d)")
        intervals = []
        for r in _M_RANGE.finditer(body):
            first, last = (int(r[1]), int(r[2])) if r[1] else (int(r[3]), int(r[3]))
            intervals.append(_from_one_based(first, last, where))
        entries.append((f"{k:02d}", k, "", intervals))
    if not entries:
        raise VADInputError(f"{path}: no 'gt_frame = [a:b]' lines found")
    return entries


def mask_to_intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1 in a per-frame 0/1 vector `(F,)` -> `[start, end)` intervals."""
    m = np.asarray(mask).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], m, [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=False))


def _read_masks(path: Path) -> list[_Entry]:
    files = sorted(path.glob("*.npy")) if path.is_dir() else [path]
    if not files:
        raise VADInputError(f"{path}: no .npy frame masks found")
    entries: list[_Entry] = []
    for k, f in enumerate(files, start=1):
        try:
            mask = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise VADInputError(f"{f}: not a readable .npy array ({exc})") from None
        if mask.ndim != 1 or mask.size == 0:
            raise VADInputError(f"{f}: expected a 1-D per-frame mask, got shape {mask.shape}")
        if not np.isin(mask, (0, 1)).all():
            bad = mask[~np.isin(mask, (0, 1))][0]
            raise VADInputError(f"{f}: mask values must be 0 or 1, found {bad!r}")
        entries.append((f.stem, k, "", mask_to_intervals(mask)))
    return entries


def _read_ucf(path: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}: line {lineno}"
        if len(parts) < 4 or len(parts) % 2:
            raise VADInputError(f"{where}: expected 'name class start1 end1 [start2 end2]', got {line.strip()!r}")
        try:
            numbers = [int(p) for p in parts[2:]]
        except ValueError:
            raise VADInputError(f"{where}: frame numbers must be integers, got {parts[2:]}") from None
        intervals = []
        for s, e in zip(numbers[::2], numbers[1::2], strict=False):
            if s == -1 and e == -1:
                continue
            if s == -1 or e == -1:
                raise VADInputError(f"{where}: -1 must mark both ends of an absent interval, got {s} {e}")
            intervals.append(_from_one_based(max(s, 1), e, where))
        entries.append((Path(parts[0]).stem, len(entries) + 1, parts[1], intervals))
    if not entries:
        raise VADInputError(f"{path}: no annotation lines")
    return entries


def _read_csv(path: Path) -> list[_Entry]:
    # utf-8-sig: spreadsheet programs start CSVs with a byte-order mark, which would otherwise
    # become part of the first column's name ("\ufeffvideo_id") and hide it.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        missing = {"video_id", "start_frame", "end_frame"} - set(reader.fieldnames or [])
        if missing:
            raise VADInputError(f"{path}: missing column(s) {sorted(missing)} (header: {reader.fieldnames})")
        by_video: dict[str, list[tuple[int, int]]] = {}
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path}: line {lineno}"
            try:
                s, e = int(rec["start_frame"]), int(rec["end_frame"])
            except (TypeError, ValueError):
                raise VADInputError(
                    f"{where}: start_frame/end_frame must be integers, got {rec['start_frame']!r}, {rec['end_frame']!r}"
                ) from None
            if not rec["video_id"]:
                raise VADInputError(f"{where}: empty video_id")
            if s < 0 or e <= s:
                raise VADInputError(f"{where}: bad 0-based half-open interval [{s}, {e})")
            by_video.setdefault(rec["video_id"], []).append((s, e))
    return [(vid, k, "", iv) for k, (vid, iv) in enumerate(by_video.items(), start=1)]


_READERS = {"mat": _read_mat, "ucsd_m": _read_ucsd_m, "masks": _read_masks, "ucf_crime": _read_ucf, "csv": _read_csv}


def detect_format(path: str | os.PathLike) -> str:
    """The annotation format of `path`, from its extension (or a folder of `.npy` masks)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".npy":
        return "masks"
    formats = {".mat": "mat", ".m": "ucsd_m", ".txt": "ucf_crime", ".csv": "csv"}
    if suffix in formats:
        return formats[suffix]
    raise VADInputError(
        f"{path}: cannot tell the annotation format from the name "
        f"(known: .mat, .m, .txt, .csv, .npy or a folder of .npy; or pass format=)"
    )


def _rename(entries: list[_Entry], video_ids: VideoIds, path: Path) -> list[tuple[str, list[tuple[int, int]]]]:
    if video_ids is None:
        return [(vid, iv) for vid, _, _, iv in entries]
    if isinstance(video_ids, str):
        try:
            return [(video_ids.format(vid, id=vid, index=k, label=label), iv) for vid, k, label, iv in entries]
        except (IndexError, KeyError) as exc:
            raise VADInputError(f"video_ids template {video_ids!r}: unknown field {exc}") from None
    if isinstance(video_ids, Mapping):
        return [(str(video_ids.get(vid, vid)), iv) for vid, _, _, iv in entries]
    ids = list(video_ids)
    if len(ids) != len(entries):
        raise VADInputError(f"{path}: {len(entries)} videos annotated but {len(ids)} video_ids given")
    return [(str(new), iv) for new, (_, _, _, iv) in zip(ids, entries, strict=True)]


def ground_truth_frame(rows: Iterable[tuple[str, int, int, str]]) -> pd.DataFrame:
    """(video_id, start_frame, end_frame, source) tuples -> the typed, sorted table."""
    df = pd.DataFrame(list(rows), columns=list(GT_COLUMNS)).astype(GT_DTYPES)
    return df.sort_values(["video_id", "start_frame"], kind="stable").reset_index(drop=True)


def read_ground_truth(path: str | os.PathLike, format: str | None = None, video_ids: VideoIds = None) -> pd.DataFrame:
    """Read an annotation file into the ground-truth table (see the module docstring).

    Videos annotated as having no anomaly give no rows. Raises `VADInputError` naming the file
    and the line or cell for malformed input.
    """
    path = Path(path)
    if not path.exists():
        raise VADInputError(f"{path}: annotation file not found")
    fmt = format or detect_format(path)
    if fmt not in _READERS:
        raise VADInputError(f"unknown ground-truth format {fmt!r} (known: {', '.join(FORMATS)})")
    entries = _READERS[fmt](path)
    renamed = _rename(entries, video_ids, path)
    return ground_truth_frame((vid, s, e, path.name) for vid, iv in renamed for s, e in iv)


def pixel_mask_files(folder: str | os.PathLike, video_ids: VideoIds = None) -> dict[str, Path]:
    """Pixel-level ground truth in ShanghaiTech's `test_pixel_mask/` layout: one `<id>.npy` per
    test video (read with `read_pixel_mask`) -> `{video_id: file}`, ids renamed as by
    `read_ground_truth` (`video_ids`: list in file order, mapping or template)."""
    path = Path(folder)
    if not path.is_dir():
        raise VADInputError(f"{path}: pixel-mask folder not found")
    files = sorted(path.glob("*.npy"))
    if not files:
        raise VADInputError(f"{path}: no .npy pixel masks found")
    renamed = _rename([(f.stem, k, "", []) for k, f in enumerate(files, start=1)], video_ids, path)
    return {vid: f for (vid, _), f in zip(renamed, files, strict=True)}


def read_pixel_mask(
    path: str | os.PathLike, n_frames: int | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """One video's pixel masks `(F, H, W)` bool from a `.npy` array of 0/1 (or 0/255) values.

    `n_frames` and `size = (width, height)`, when given, must match (a mask for other footage
    is refused, naming the file). Loaded with `allow_pickle=False`.
    """
    path = Path(path)
    try:
        mask = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise VADInputError(f"{path}: not a readable .npy array ({exc})") from None
    if mask.ndim != 3 or 0 in mask.shape:
        raise VADInputError(f"{path}: expected per-frame pixel masks (F, H, W), got shape {mask.shape}")
    if n_frames is not None and mask.shape[0] != n_frames:
        raise VADInputError(f"{path}: {mask.shape[0]} mask frames, the video has {n_frames}")
    if size is not None and (mask.shape[2], mask.shape[1]) != tuple(size):
        raise VADInputError(f"{path}: masks are {mask.shape[2]}x{mask.shape[1]}, the video is {size[0]}x{size[1]}")
    values = np.unique(np.asarray(mask))
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        raise VADInputError(f"{path}: mask values must be 0/1 (or 0/255), found {values[:6].tolist()}")
    return np.asarray(mask) > 0


@dataclass(frozen=True)
class GroundTruthCheck:
    """How a ground-truth table fits a manifest: `unknown` ids no manifest row has (sorted), and
    `past_end` intervals `(video_id, start_frame, end_frame, n_frames)` reaching past a readable
    video's last frame."""

    unknown: tuple[str, ...]
    past_end: tuple[tuple[str, int, int, int], ...]

    def unknown_message(self, known: Iterable[str], limit: int = 10) -> str:
        """One line listing the unknown ids, each with the nearest manifest id when one is close."""
        ids = sorted(set(map(str, known)))
        parts = []
        for vid in self.unknown[:limit]:
            near = difflib.get_close_matches(vid, ids, n=1)
            parts.append(f"{vid!r} (nearest video: {near[0]!r})" if near else repr(vid))
        more = f" and {len(self.unknown) - limit} more" if len(self.unknown) > limit else ""
        return f"{len(self.unknown)} annotated video ids are not in the manifest: {', '.join(parts)}{more}"


def check_ground_truth(ground_truth: pd.DataFrame, manifest: pd.DataFrame) -> GroundTruthCheck:
    """Compare annotations with the manifest (video_id, status, n_frames): ids it lacks, and
    intervals ending after a readable video's last frame (an unreadable video has no frame count)."""
    known = set(manifest["video_id"].astype(str))
    unknown = tuple(sorted(set(ground_truth["video_id"].astype(str)) - known))
    ok = manifest[manifest["status"] == "ok"]
    n_frames = {str(v): int(n) for v, n in zip(ok["video_id"], ok["n_frames"], strict=True)}
    rows = zip(ground_truth["video_id"], ground_truth["start_frame"], ground_truth["end_frame"], strict=True)
    past = tuple(
        (str(v), int(s), int(e), n_frames[str(v)])
        for v, s, e in rows
        if str(v) in n_frames and int(e) > n_frames[str(v)]
    )
    return GroundTruthCheck(unknown, past)


def frame_mask(ground_truth: pd.DataFrame, video_id: str, n_frames: int) -> np.ndarray:
    """The 0/1 per-frame labels `(n_frames,)` int8 of one video (intervals clipped to the video)."""
    out = np.zeros(n_frames, dtype=np.int8)
    rows = ground_truth[ground_truth["video_id"] == video_id]
    for s, e in zip(rows["start_frame"].to_numpy(), rows["end_frame"].to_numpy(), strict=True):
        out[max(0, int(s)) : min(n_frames, int(e))] = 1
    return out


__all__ = [
    "FORMATS",
    "GT_COLUMNS",
    "GT_DTYPES",
    "GroundTruthCheck",
    "VideoIds",
    "check_ground_truth",
    "detect_format",
    "frame_mask",
    "ground_truth_frame",
    "mask_to_intervals",
    "pixel_mask_files",
    "read_ground_truth",
    "read_pixel_mask",
]

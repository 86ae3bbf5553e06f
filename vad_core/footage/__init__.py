"""Footage: find videos, probe them into manifest rows, decode frames, cut clips and tiles, read labels.

from vad_core.footage import build_manifest, iter_clips, ClipConfig, read_ground_truth
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.footage.clips import (
        ClipBatch,
        ClipConfig,
        TileLayout,
        clip_intervals,
        clip_starts,
        iter_clips,
        prefetch,
        tile_boxes,
        tile_layout,
    )
    from vad_core.footage.decode import frame_size, iter_frames, read_frames
    from vad_core.footage.discover import Kind, VideoSource, discover_videos, list_frames
    from vad_core.footage.ground_truth import (
        GT_COLUMNS,
        GT_DTYPES,
        GroundTruthCheck,
        check_ground_truth,
        detect_format,
        frame_mask,
        mask_to_intervals,
        pixel_mask_files,
        read_ground_truth,
        read_pixel_mask,
    )
    from vad_core.footage.probe import (
        MANIFEST_COLUMNS,
        MANIFEST_DTYPES,
        build_manifest,
        fingerprint_source,
        manifest_frame,
        probe_video,
    )

__all__ = [
    "GT_COLUMNS",
    "GT_DTYPES",
    "MANIFEST_COLUMNS",
    "MANIFEST_DTYPES",
    "ClipBatch",
    "ClipConfig",
    "GroundTruthCheck",
    "Kind",
    "TileLayout",
    "VideoSource",
    "build_manifest",
    "check_ground_truth",
    "clip_intervals",
    "clip_starts",
    "detect_format",
    "discover_videos",
    "fingerprint_source",
    "frame_mask",
    "frame_size",
    "iter_clips",
    "iter_frames",
    "list_frames",
    "manifest_frame",
    "mask_to_intervals",
    "pixel_mask_files",
    "prefetch",
    "probe_video",
    "read_frames",
    "read_ground_truth",
    "read_pixel_mask",
    "tile_boxes",
    "tile_layout",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)

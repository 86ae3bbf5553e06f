"""vad_core: unsupervised video anomaly detection in plain Python + torch, one subpackage per stage.

    footage -> features -> diffusion -> scoring -> evaluation -> study     (io: tables, store, hashing)

The names below are the everyday entry points; each stage package re-exports its full API
(docs/api.md is the contract). vad_core never imports dagster or mlflow.
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.devices import resolve_device
    from vad_core.diffusion import (
        ScoreConfig,
        TrainConfig,
        TrainedDenoiser,
        TrainResult,
        checkpoint_bytes,
        fit,
        load_checkpoint,
        score_rows,
    )
    from vad_core.errors import VADInputError, check_features
    from vad_core.evaluation import EvaluationReport, ReportSettings, ReportTables, build_report, evaluate
    from vad_core.features import (
        FeatureResult,
        RegionConfig,
        extract_all,
        extract_features,
        import_precomputed,
        load_backbone,
    )
    from vad_core.footage import ClipConfig, build_manifest, discover_videos, probe_video, read_ground_truth
    from vad_core.io import LocalTableStore, MemoryTableStore, TableStore, open_store
    from vad_core.scoring import batch_decisions, clip_scores, decide_clips, make_scorer, row_keys_for
    from vad_core.study import StudyConfig, StudyData, load_study_data, run_study
    from vad_core.synthetic import generate_demo_footage

__all__ = [
    "ClipConfig",
    "EvaluationReport",
    "FeatureResult",
    "LocalTableStore",
    "MemoryTableStore",
    "RegionConfig",
    "ReportSettings",
    "ReportTables",
    "ScoreConfig",
    "StudyConfig",
    "StudyData",
    "TableStore",
    "TrainConfig",
    "TrainResult",
    "TrainedDenoiser",
    "VADInputError",
    "batch_decisions",
    "build_manifest",
    "build_report",
    "check_features",
    "checkpoint_bytes",
    "clip_scores",
    "decide_clips",
    "discover_videos",
    "evaluate",
    "extract_all",
    "extract_features",
    "fit",
    "generate_demo_footage",
    "import_precomputed",
    "load_backbone",
    "load_checkpoint",
    "load_study_data",
    "make_scorer",
    "open_store",
    "probe_video",
    "read_ground_truth",
    "resolve_device",
    "row_keys_for",
    "run_study",
    "score_rows",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)

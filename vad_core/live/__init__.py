"""Live: scoring new footage alone with a deployed detector, its stored decision rule, and alerts.

`LiveDetector` (a `Detector` + the training batch's `DecisionRule` + the feature spec) scores
feature rows of one video or one clip; `alert_intervals` turns decided clips into alerts;
`decide_promotion` judges whether a new detector may replace the deployed one; `score_video`
turns one whole video (file, frame folder, URL) into row, clip and frame scores and alerts with
the features the pipeline would make for it; `score_stream` scores a stream clip by clip as its
frames arrive (`vad score-stream`). The MLflow pyfunc model, the live assets and the `vad score`
commands all go through here.
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.live.alerts import ALERT_COLUMNS, alert_intervals, boxes_from_rows, empty_alerts
    from vad_core.live.decision import RULE_KIND, DecisionRule
    from vad_core.live.detector import (
        LiveDetector,
        LiveScores,
        feature_spec_from_metadata,
        live_model_files,
        live_model_from_files,
        load_live_detector,
        save_live_detector,
    )
    from vad_core.live.promotion import (
        GateResult,
        PromotionDecision,
        PromotionGates,
        decide_promotion,
        promotion_markdown,
    )
    from vad_core.live.source import ReaderConfig
    from vad_core.live.stream import StreamResult, score_stream
    from vad_core.live.video import VideoScores, score_video

__all__ = [
    "ALERT_COLUMNS",
    "RULE_KIND",
    "DecisionRule",
    "GateResult",
    "LiveDetector",
    "LiveScores",
    "PromotionDecision",
    "PromotionGates",
    "ReaderConfig",
    "StreamResult",
    "VideoScores",
    "alert_intervals",
    "boxes_from_rows",
    "decide_promotion",
    "empty_alerts",
    "feature_spec_from_metadata",
    "live_model_files",
    "live_model_from_files",
    "load_live_detector",
    "promotion_markdown",
    "save_live_detector",
    "score_stream",
    "score_video",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)

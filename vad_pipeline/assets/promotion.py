"""The model_promotion asset: after the evaluation report, the challenger becomes champion when the gates pass.

The challenger is the newest trained live model: the store's `challenger` slot (`DatasetKeys.live_model`)
and the MLflow alias `challenger`, both set by the `denoiser` asset. Its gates (`vad_core.live.promotion`:
finite row scores, the memorization diagnostic within its bound, a score spread, and where labels exist a
frame AUC not below the champion's `frame_auc` version tag) are judged on the stored scores the report
describes. Promoted: the challenger slot's files are copied to the `champion` slot (detector.pt first,
live.json last: a reader of a half-copied pair fails the checksum) and alias `champion` moves to the
version. Not promoted: nothing of the current champion changes. Either way the outcome and its reasons
are tags `promotion.*` on the challenger's version, `promotion.json` beside the report, and a
"Promotion" section of report.md / report.html. The live assets score with the store's champion slot.
"""

from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.errors import VADInputError
from vad_core.io.store import TableStore
from vad_core.live.detector import DETECTOR_FILE, LIVE_FILE, live_model_from_files
from vad_core.live.promotion import PromotionDecision, PromotionGates, decide_promotion, promotion_markdown
from vad_pipeline.assets.common import core_config, dataset_spec, read_table
from vad_pipeline.assets.evaluation import add_promotion
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.assets.model_card import model_links
from vad_pipeline.assets.training import model_name
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker

CHAMPION = "champion"
LIVE_FILES = (DETECTOR_FILE, LIVE_FILE)  # the copy order: the checkpoint first, its checksum's file last
_GATES = PromotionGates()


class PromotionConfig(Config):
    """vad_core.live.promotion.PromotionGates: `max_memorization_auc` (0.9), `min_score_std` (the row
    scores' std must be above it, 0) and `auc_tolerance` (how far below the champion's frame AUC the
    challenger's may be, 0)."""

    max_memorization_auc: float = _GATES.max_memorization_auc
    min_score_std: float = _GATES.min_score_std
    auc_tolerance: float = _GATES.auc_tolerance

    def to_core(self) -> PromotionGates:
        return core_config(self, PromotionGates)


def read_slot(store: TableStore, keys: DatasetKeys, slot: str) -> dict[str, bytes] | None:
    """A store slot's two live-model files, or None when either is missing."""
    names = [keys.live_model(slot, n) for n in LIVE_FILES]
    if not all(store.exists(k) for k in names):
        return None
    return {n: store.read_bytes(k) for n, k in zip(LIVE_FILES, names, strict=True)}


def copy_to_champion(store: TableStore, keys: DatasetKeys, files: dict[str, bytes]) -> None:
    """Write a live model's files into the champion slot: detector.pt first, live.json last."""
    for name in LIVE_FILES:
        store.write_bytes(keys.live_model(CHAMPION, name), files[name])


def _frame_auc(report: dict[str, Any]) -> float | None:
    if not report.get("n_labelled_frames"):
        return None
    metrics = ((report.get("scorers") or {}).get("diffusion") or {}).get("metrics") or {}
    value = metrics.get("roc_auc")
    return None if value is None else float(value)


def _version_tags(outcome: str, decision: PromotionDecision, champion: str | None, run_id: str) -> dict[str, str]:
    tags = {
        "promotion.outcome": outcome,
        "promotion.reasons": "; ".join(decision.reasons()),
        "promotion.champion_before": champion or "none",
        "promotion.dagster_run_id": run_id,
    }
    return tags | {f"promotion.gate.{g.name}": "pass" if g.passed else "fail" for g in decision.gates}


@asset(
    group_name="evaluation",
    deps=["evaluation_report"],
    description="Promotes the newest trained model (MLflow alias and store slot 'challenger') to 'champion' when "
    "its gates pass (finite scores, memorization within bound, score spread, frame AUC not below the champion's); "
    "the decision and reasons go on the version's tags and into the report. A failed gate keeps the champion.",
)
@user_errors
def model_promotion(
    context: AssetExecutionContext,
    config: PromotionConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    tracker: ExperimentTracker,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    gates = config.to_core()
    context.log.info(f"promotion gates: {gates.to_dict()}")
    files = read_slot(store, keys, "challenger")
    where = store.location(keys.live_model("challenger", LIVE_FILE))
    if files is None:
        raise VADInputError(f"no challenger live model at {where}: materialize denoiser first")
    live = live_model_from_files(files, device="cpu", where=where)
    name, version = live.info.get("model_name") or model_name(spec.name), live.info.get("model_version") or ""
    if not version:
        raise VADInputError(f"challenger {where} names no registered model version: materialize denoiser again")
    report = store.read_json(keys.report_json)
    if report is None:
        raise VADInputError(f"report {store.location(keys.report_json)} is missing: materialize evaluation_report")
    reported = str((report.get("denoiser") or {}).get("model_version") or "")
    scored_by = store.read_metadata(keys.segment_scores).get("denoiser_fingerprint")
    if reported != version or scored_by != live.detector.fingerprint:
        raise VADInputError(
            f"the stored scores and report are of model version {reported or 'none'} (fingerprint "
            f"{str(scored_by)[:12]}), the challenger is version {version} ({live.detector.fingerprint[:12]}): "
            "materialize segment_scores and evaluation_report first"
        )
    scores = read_table(store, keys.tile_scores, "segment_scores (tile table)")["score"].to_numpy(float)
    champion = tracker.model_version_by_alias(name, CHAMPION)
    champion_auc = None
    if champion and champion != version:
        champion_auc = tracker.model_version_tags(name, champion).get("frame_auc")
    decision = decide_promotion(
        scores,
        live.detector.memorization_auc,
        _frame_auc(report),
        None if champion_auc is None else float(champion_auc),
        gates,
    )
    if champion == version:
        outcome = "already_champion"
    else:
        outcome = "promoted" if decision.promote else "rejected"
    if outcome == "promoted" or (outcome == "already_champion" and read_slot(store, keys, CHAMPION) != files):
        copy_to_champion(store, keys, files)  # the store first: the live assets read the champion from it
    if outcome == "promoted":
        tracker.set_model_alias(name, CHAMPION, version)
    after = version if outcome != "rejected" else champion
    tracker.tag_model_version(name, version, _version_tags(outcome, decision, champion, context.run.run_id))
    record = {
        "model_name": name,
        "challenger": version,
        "champion_before": champion,
        "champion_after": after,
        "champion_frame_auc": champion_auc,
        "outcome": outcome,
        "decision": decision.to_dict(),
        "gates_config": gates.to_dict(),
        "challenger_fingerprint": live.detector.fingerprint,
        "scores_fingerprint": report.get("scores_fingerprint"),
        "dagster_run_id": context.run.run_id,
    }
    add_promotion(store, keys, record)
    (context.log.info if outcome != "rejected" else context.log.warning)(
        f"{name} version {version}: {outcome} ({'; '.join(decision.reasons())}); champion {after or 'none'}"
    )
    return MaterializeResult(
        metadata={
            "outcome": outcome,
            "champion": after or "none",
            "champion_before": champion or "none",
            "promotion": MetadataValue.md(promotion_markdown(record)),
            **{f"gate_{g.name}": "pass" if g.passed else f"FAIL: {g.reason}" for g in decision.gates},
            "promotion_json": MetadataValue.path(store.location(keys.promotion)),
            **model_links(tracker, name, version),
        }
    )


__all__ = ["CHAMPION", "LIVE_FILES", "PromotionConfig", "copy_to_champion", "model_promotion", "read_slot"]

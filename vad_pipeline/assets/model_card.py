"""What people read about a trained denoiser and an evaluation: Markdown for MLflow and Dagster.

A registered model version gets a description a person can read on its page (dataset, rows,
videos, how it was trained and, once evaluated, its frame-level figures); an evaluation run
gets the scorers' table with a link to each scorer's run and back to the Dagster run. Rounded
figures throughout: four significant digits (an AUC as the report prints it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import MetadataValue

from vad_core.evaluation.formatting import finite_or_none, fmt, markdown_table
from vad_pipeline.resources.tracking import ExperimentTracker
from vad_pipeline.ui_links import dagster_run_url

FIGURE_COLUMNS = ("frame_auc", "frame_ap", "frame_auc_smoothed", "paper_protocol_auc")
FIGURE_HEADERS = ("frame ROC AUC", "AP", "ROC AUC smoothed", "paper-protocol AUC")


def rounded(value: Any, digits: int = 4) -> float | None:
    """A finite number to `digits` significant digits (an AUC of 0.7971906 shows as 0.7972); None otherwise."""
    v = finite_or_none(value)
    return None if v is None else float(f"{v:.{digits}g}")


def link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def figures_table(metrics: Mapping[str, Mapping[str, float | None]], run_urls: Mapping[str, str | None]) -> str:
    """One row per scorer: its four figures and a link to its run."""
    rows = [
        [name, *(fmt(figures.get(c)) for c in FIGURE_COLUMNS), link("run", run_urls.get(name))]
        for name, figures in metrics.items()
    ]
    return markdown_table(["scorer", *FIGURE_HEADERS, "MLflow"], rows)


def evaluation_description(
    report: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float | None]],
    run_urls: Mapping[str, str | None],
    dagster_run: tuple[str, str],
    comparison_url: str | None = None,
) -> str:
    """The evaluation run's description: what was evaluated, the figures per scorer (each linked to
    its run, all of them to the side-by-side view), the Dagster run."""
    run_id, run_url = dagster_run
    head = (
        f"Evaluation of **{report['dataset']}**: {report['n_labelled_frames']} labelled frames "
        f"({report['n_anomalous_frames']} anomalous) of {len(report['evaluated_videos'])} evaluated videos. "
        f"Dagster run {link(run_id[:8], run_url)}."
    )
    if not report["n_labelled_frames"]:
        return head + f"\n\nNo figures: {report.get('note') or 'no labelled frames'}."
    return (
        head
        + f"\n\nOne child run per scorer, same metric names ({link('side by side', comparison_url)}):\n\n"
        + figures_table(metrics, run_urls)
    )


def version_description(info: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None) -> str:
    """A registered denoiser version's description: data and training from `denoiser.json` (`info`),
    and the diffusion figures when `evaluation` (`{labelled_frames, figures, run_url}`) is given."""
    lines = [
        f"EDM denoiser for dataset **{info.get('dataset')}**, trained without labels on "
        f"{info.get('n_train', '?')} feature rows of {len(info.get('train_videos') or [])} videos "
        f"({info.get('n_val', 0)} held back for validation).",
        "",
        f"sigma_data {fmt(info.get('sigma_data'))}, {info.get('epochs_run')} epochs (kept epoch "
        f"{info.get('best_epoch')}), memorization AUC {fmt(info.get('memorization_auc'), 3)} (0.5 = none). "
        f"Data fingerprint `{str(info.get('data_fingerprint') or '')[:12]}`.",
    ]
    recipe = info.get("recipe")
    if isinstance(recipe, Mapping) and recipe.get("name"):
        lines[-1] += f" Recipe `{recipe['name']}`: {info.get('n_models', 1)} model(s)."
    if info.get("dagster_run_id"):
        run_id = str(info["dagster_run_id"])
        lines += ["", f"Trained by Dagster run {link(run_id[:8], dagster_run_url(run_id))}."]
    if evaluation is None:
        lines += ["", "Not evaluated yet."]
    elif not evaluation.get("labelled_frames"):
        lines += ["", "Evaluated without labelled frames: no AUC."]
    else:
        figures = evaluation["figures"]
        lines += [
            "",
            f"On {evaluation['labelled_frames']} labelled frames: frame ROC AUC **{fmt(figures.get('frame_auc'))}**, "
            f"AP {fmt(figures.get('frame_ap'))}, smoothed {fmt(figures.get('frame_auc_smoothed'))}, "
            f"paper-protocol {fmt(figures.get('paper_protocol_auc'))} "
            f"({link('evaluation run', evaluation.get('run_url'))}).",
        ]
    return "\n".join(lines)


def model_links(tracker: ExperimentTracker, name: str, version: str | None) -> dict[str, Any]:
    """Dagster metadata of a registered version: its page in the tracker's UI, and the aliases
    (`champion`, ...) that point at it now, whatever sets them."""
    if not version:
        return {}
    url = tracker.model_version_url(name, version)
    aliases = tracker.model_version_aliases(name, version)
    return {
        "model_version": MetadataValue.url(url) if url else f"{name} v{version}",
        "model_aliases": ", ".join(aliases) if aliases else "none",
    }


__all__ = [
    "model_links",
    "FIGURE_COLUMNS",
    "evaluation_description",
    "figures_table",
    "link",
    "rounded",
    "version_description",
]

"""`vad report`: rebuild a dataset's evaluation report from its stored tables, without a Dagster run.

    vad report                        # the dataset VAD_DATASET names (else demo), under VAD_HOME
    vad report --dataset ucsd_ped2 --top-clips 0

Reads the frame, segment, tile and baseline score tables, the manifest and the ground truth
through the storage interface, renders report.json, report.md and the plots with
`vad_core.evaluation.report`, and stores them where the evaluation asset does. Settings default
to the spec's `run_config.evaluation_report`, then the pipeline's defaults; nothing is logged to
MLflow (the asset does that when it runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import TYPE_CHECKING

from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.specs import load_spec

if TYPE_CHECKING:  # the report needs scikit-learn and matplotlib: imported when it runs, not by every `vad` command
    from vad_core.evaluation.report import ReportSettings


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`vad report`."""
    parser = commands.add_parser(
        "report",
        help="rebuild a dataset's report from its tables (no Dagster run)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--dataset", help="spec name or YAML path (default: VAD_DATASET, else demo)")
    parser.add_argument("--home", help="storage root (default: VAD_HOME, else ./vad_home)")
    parser.add_argument("--smoothing-sigma", type=float, help="Gaussian smoothing of frame scores, frames (0: off)")
    parser.add_argument("--top-clips", type=int, help="top-scoring clips drawn with their arg-max tile")
    parser.add_argument("--max-curve-videos", type=int, help="per-video score curves drawn")
    parser.set_defaults(run=run)


def settings_for(spec_config: dict[str, object], args: argparse.Namespace) -> ReportSettings:
    """Defaults < the spec's `run_config.evaluation_report` < command-line flags."""
    from vad_core.evaluation.report import ReportSettings

    known = {f.name for f in dataclasses.fields(ReportSettings)}
    values: dict[str, object] = {k: v for k, v in spec_config.items() if k in known}
    if args.smoothing_sigma is not None:
        values["smoothing_sigma"] = args.smoothing_sigma or None
    if args.top_clips is not None:
        values["top_clips"] = args.top_clips
    if args.max_curve_videos is not None:
        values["max_curve_videos"] = args.max_curve_videos
    return ReportSettings(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    from vad_pipeline.assets.evaluation import write_report

    storage = VadStorage(home=args.home or os.environ.get("VAD_HOME") or None)
    spec = load_spec(args.dataset, home=storage.root())
    settings = settings_for(dict(spec.run_config.get("evaluation_report", {})), args)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    report, written = write_report(store, keys, spec, settings)
    print(f"== {spec.name}: report rebuilt from the tables under {store.location(spec.name)}")
    for name, result in report.data["scorers"].items():
        m = result.get("metrics")
        print(f"   {name:<12} " + (f"ROC AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}" if m else "n/a"))
    print(f"   report: {store.location(written['report_md'])} ({len(report.plots)} plots)")
    return 0


__all__ = ["add_parser", "run", "settings_for"]

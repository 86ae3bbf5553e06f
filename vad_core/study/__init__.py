"""The parameter study: a grid of denoiser settings and scorings, evaluated both ways, chosen label-free.

result = run_study(load_study_data(LocalTableStore("out"), "features", truth, "i3d/ped2"), StudyConfig())
comparison_markdown(result.table)       # the paper's Table 2 shape
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.study.bootstrap import AucGap, paired_auc_gap
    from vad_core.study.data import ROW_COLUMNS, StudyData, load_study_data
    from vad_core.study.grid import (
        STUDY_TRAIN,
        StudyConfig,
        StudyResult,
        TrainedSetting,
        TrainSetting,
        score_variants,
        variant_name,
    )
    from vad_core.study.protocol import protocol_a, run_baseline, run_recipe, summarize
    from vad_core.study.report import comparison_markdown, label_free_summary, seed_spread, selections, study_heatmaps
    from vad_core.study.run import Evaluator, baseline_rows, run_study, train_and_score
    from vad_core.study.selection import (
        choose_model,
        choose_sigma,
        choose_variant,
        label_free_row,
        label_free_sigma,
        otsu_k,
        otsu_threshold,
        posterior_neighbours,
        reliability,
    )

__all__ = [
    "ROW_COLUMNS",
    "STUDY_TRAIN",
    "AucGap",
    "Evaluator",
    "StudyConfig",
    "StudyData",
    "StudyResult",
    "TrainSetting",
    "TrainedSetting",
    "baseline_rows",
    "choose_model",
    "choose_sigma",
    "choose_variant",
    "comparison_markdown",
    "label_free_row",
    "label_free_sigma",
    "label_free_summary",
    "load_study_data",
    "otsu_k",
    "otsu_threshold",
    "paired_auc_gap",
    "posterior_neighbours",
    "protocol_a",
    "reliability",
    "run_baseline",
    "run_recipe",
    "run_study",
    "score_variants",
    "seed_spread",
    "selections",
    "study_heatmaps",
    "summarize",
    "train_and_score",
    "variant_name",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)

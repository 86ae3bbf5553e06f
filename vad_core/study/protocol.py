"""The honest validation protocol for detector recipes and baselines (issue 9).

Every claim in docs/results.md comes from one of:

(a) choose on one half of the labelled test videos (Ped2 01-03), report the other (04-06),
    and the reverse: the choice may look at the chosen half's labels only;
(b) the demo dataset, never used to choose anything;
(c) the fully label-free choice (the default recipe, every setting picked by rules on the
    unlabelled rows) reported on everything.

Seeds: mean and spread (min-max) of 3 or more. Baselines are measured under the same protocol
(fitted on the same unlabelled rows, scored the same way) and sit beside the recipes.

`run_recipe` / `run_baseline` turn (data, recipe or baseline, seed) into result records
(one per evaluation group); `summarize`, `protocol_a` and `markdown_summary` read a table of
such records (fresh ones or measured earlier, e.g. the research's JSON lines).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.folds import memorization_auc_at
from vad_core.diffusion.recipes import DetectorRecipe, choose_detector_sigma, fit_detector
from vad_core.diffusion.reconstruction import ScoreConfig
from vad_core.errors import VADInputError
from vad_core.evaluation.formatting import markdown_table
from vad_core.evaluation.metrics import clips_to_frames, frame_labels, roc_auc
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_core.scoring.scorers.registry import make_scorer
from vad_core.study.data import StudyData

RECORD_COLUMNS = (
    "scenario", "recipe", "seed", "group", "auc", "memorization_auc", "trim_share", "sigma",
    "n_models", "fit_s", "score_s", "source",
)  # fmt: skip


def group_auc(data: StudyData, scores: np.ndarray, videos: Sequence[str]) -> float:
    """Frame ROC AUC (%) of row scores `(N,)` on `videos`: clip = max over tiles, frame = max of its clips."""
    clips = clip_scores(data.rows.assign(score=np.asarray(scores, dtype=np.float64)))
    on = clips["video_id"].astype(str).isin(set(videos)).to_numpy()
    if not on.any():
        raise VADInputError(f"{data.name}: no rows of the evaluation videos {list(videos)[:3]}...")
    frames = clips_to_frames(clips[on].assign(anomalous=False), data.n_frames)
    return 100.0 * roc_auc(frame_labels(frames, data.ground_truth), frames["score"].to_numpy())


def _records(data: StudyData, scores: np.ndarray, groups: Mapping[str, Sequence[str]], **fields: Any) -> list[dict]:
    return [{"scenario": data.name, "group": g, "auc": group_auc(data, scores, v), **fields} for g, v in groups.items()]


def seeded(
    recipe: DetectorRecipe, train_config: TrainConfig, seed: int, n_tiles: int
) -> tuple[DetectorRecipe, TrainConfig]:
    """The recipe and training config of study seed `seed`: training, fold and scoring seeds offset by it."""
    rc = replace(recipe, fold_seed=recipe.fold_seed + seed, score_seed=recipe.score_seed + seed)
    return rc, replace(train_config, seed=train_config.seed + seed, n_tiles=n_tiles)


def run_recipe(
    data: StudyData,
    recipe: DetectorRecipe,
    train_config: TrainConfig,
    seed: int,
    groups: Mapping[str, Sequence[str]],
    extra_sigma_rules: Sequence[str] = (),
    extra_sigma_scales: Sequence[Sequence[float]] = (),
) -> list[dict[str, Any]]:
    """Fit `recipe` (training and fold seeds offset by `seed`) on the data's fitted rows, score them, evaluate.

    The fitted rows are every row of `data` (the unsupervised protocol: test videos are fitted
    unlabelled too); a row is scored as the pipeline scores it (`Detector.score_fitted`).
    `extra_sigma_rules` (e.g. "videos"): the same fitted detector scored again at the sigma that
    label-free rule picks, recorded as recipe `"<name> [sigma rule <rule>]"` (scoring only, no refit).
    `extra_sigma_scales` (e.g. `[(0.5, 1.0)]`): the same fitted detector scored with that
    `ScoreConfig.sigma_scales` around its chosen sigma, recorded as `"<name> [sigma x0.5+1]"`.
    """
    videos = data.rows["video_id"].astype(str).to_numpy()
    keys = row_keys_for(data.rows)
    rc, tc = seeded(recipe, train_config, seed, int(data.tiles.max()) + 1)
    start = time.perf_counter()
    fitted = fit_detector(data.features, videos, tc, rc, tiles=data.tiles, row_keys=keys)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores, _ = fitted.detector.score_fitted(data.features, videos, data.tiles, keys)
    score_s = time.perf_counter() - start
    det = fitted.detector
    base_config = det.score_config  # the recipe's own scoring; the extras below score around it
    # the screen's label-free width, when the recipe lets it choose (`width_scales`)
    width = {k: det.recipe[k] for k in ("hidden_used", "width_errors") if k in det.recipe}
    out = _records(
        data, scores, groups, recipe=recipe.name, seed=seed, memorization_auc=det.memorization_auc,
        trim_share=det.trim_share, sigma=det.score_config.sigma, n_models=det.n_models, fit_s=fit_s,
        score_s=score_s, source="vad_core.study.protocol.run_recipe", **width,
    )  # fmt: skip

    def rescored(label: str, config: ScoreConfig) -> list[dict[str, Any]]:
        """The same fitted detector scored again with `config` (scoring only, no refit)."""
        det.score_config = config
        start = time.perf_counter()
        again, _ = det.score_fitted(data.features, videos, data.tiles, keys)
        mems = [memorization_auc_at(m, data.features, config, data.tiles, keys) for m in fitted.members]
        return _records(
            data, again, groups, recipe=f"{recipe.name} [{label}]", seed=seed,
            memorization_auc=float(np.mean([m for m in mems if m is not None])), trim_share=det.trim_share,
            sigma=config.sigma, n_models=det.n_models, fit_s=fit_s, score_s=time.perf_counter() - start,
            source="vad_core.study.protocol.run_recipe",
        )  # fmt: skip

    for rule in extra_sigma_rules:
        sigma, _ = choose_detector_sigma(
            fitted.members, data.features, videos, data.tiles, fitted.keep, rule, recipe.target_neighbours
        )
        out += rescored(f"sigma rule {rule}", replace(base_config, sigma=sigma))
    for scales in extra_sigma_scales:
        label = "sigma x" + "+".join(f"{float(s):g}" for s in scales)
        out += rescored(label, replace(base_config, sigma_scales=tuple(scales)))  # ScoreConfig makes them floats
    det.score_config = base_config
    return out


def run_baseline(
    data: StudyData, name: str, seed: int, groups: Mapping[str, Sequence[str]], **kwargs: Any
) -> list[dict[str, Any]]:
    """A per-tile baseline fitted on every row and scored on the same rows (kNN leaves the row itself out)."""
    if name in ("iforest", "gcl_ae", "gcl"):
        kwargs = {"seed": seed, **kwargs}
    start = time.perf_counter()
    scorer = make_scorer(name, **kwargs).fit(data.features, data.tiles)
    scores = scorer.score(data.features, data.tiles)
    seconds = time.perf_counter() - start
    return _records(
        data, scores, groups, recipe=f"baseline {name}", seed=seed, n_models=1, fit_s=seconds,
        source="vad_core.study.protocol.run_baseline",
    )  # fmt: skip


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records -> a table with every `RECORD_COLUMNS` column (missing ones null)."""
    df = pd.DataFrame(list(records))
    for c in RECORD_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[list(RECORD_COLUMNS) + [c for c in df.columns if c not in RECORD_COLUMNS]]


RECORD_KEY = ["scenario", "recipe", "seed", "group"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, min, max and seed count of the AUC per (scenario, recipe, group), plus mean diagnostics.

    A (scenario, recipe, seed, group) recorded more than once (the same run re-measured, or two record
    files that both hold it) counts as one seed: the last record. Re-measurements whose AUCs differ
    are kept out of the silence: a `UserWarning` names each such key and both AUCs.
    """
    repeated = table[table.duplicated(RECORD_KEY, keep=False)]
    for key, rows in repeated.groupby(RECORD_KEY, sort=False):
        aucs = rows["auc"].astype(float).to_numpy()
        if np.ptp(aucs) > 1e-9:
            where = ", ".join(f"{k}={v}" for k, v in zip(RECORD_KEY, key, strict=True))
            warnings.warn(
                f"summarize: {where} was recorded {len(aucs)} times with different AUCs "
                f"{[round(float(a), 4) for a in aucs]}; the last one counts",
                stacklevel=2,
            )
    table = table.drop_duplicates(RECORD_KEY, keep="last")
    g = table.groupby(["scenario", "recipe", "group"], sort=False)
    out = g["auc"].agg(["mean", "min", "max", "count"]).rename(columns={"count": "seeds"})
    extra = g[["memorization_auc", "fit_s", "score_s", "trim_share", "n_models"]].mean()
    return out.join(extra).reset_index()


def protocol_a(
    summary: pd.DataFrame, halves: tuple[str, str] = ("01-03", "04-06"), scenario: str = "ped2",
    candidates: Sequence[str] | None = None, demo: str = "demo", min_seeds: int = 3,
) -> pd.DataFrame:  # fmt: skip
    """Protocol (a): per half, the candidate recipe with the best mean AUC there, reported on the other half.

    Baselines are never candidates for the diffusion choice; `candidates` None = every
    non-baseline recipe measured on both halves with at least `min_seeds` seeds (a one-seed
    cell is not a measurement to choose on). The demo column is reported, never chosen on.
    """
    s = summary[(summary["scenario"] == scenario) & (summary["seeds"] >= min_seeds)]
    wide = s.pivot_table(index="recipe", columns="group", values="mean")
    pool = [r for r in wide.index if not r.startswith("baseline") and (candidates is None or r in candidates)]
    wide = wide.loc[pool].dropna(subset=list(halves))
    if wide.empty:
        raise VADInputError(f"protocol_a: no candidate measured on both halves {halves}")
    rows = []
    for chosen_on, other in (halves, halves[::-1]):
        pick = str(wide[chosen_on].idxmax())
        there = s[(s["recipe"] == pick) & (s["group"] == other)].iloc[0]
        d = summary[(summary["scenario"] == demo) & (summary["recipe"] == pick)]
        rows.append(
            {
                "chosen_on": chosen_on,
                "chosen": pick,
                "auc_there": float(wide[chosen_on].max()),
                "reported_on": other,
                "auc": float(there["mean"]),
                "auc_min": float(there["min"]),
                "auc_max": float(there["max"]),
                "seeds": int(there["seeds"]),
                "demo": float(d["mean"].iloc[0]) if len(d) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def cell(summary: pd.DataFrame, scenario: str, recipe: str, group: str) -> str:
    """`mean (min-max, n seeds)` of one summary cell, or "-"."""
    r = summary[(summary["scenario"] == scenario) & (summary["recipe"] == recipe) & (summary["group"] == group)]
    if r.empty:
        return "-"
    m, lo, hi, n = (float(r["mean"].iloc[0]), float(r["min"].iloc[0]), float(r["max"].iloc[0]), int(r["seeds"].iloc[0]))
    return f"{m:.1f} ({lo:.1f}-{hi:.1f}, {n} seeds)" if n > 1 else f"{m:.1f} (1 seed)"


def markdown_summary(
    summary: pd.DataFrame, columns: Sequence[tuple[str, str]], recipes: Sequence[str] | None = None
) -> str:
    """One row per recipe, one column per (scenario, group); mean memorization and fit time appended."""
    names = list(dict.fromkeys(summary["recipe"])) if recipes is None else list(recipes)
    rows = []
    for name in names:
        own = summary[summary["recipe"] == name]
        mem = own["memorization_auc"].dropna()
        fit = own[own["scenario"] == columns[0][0]]["fit_s"].dropna()
        rows.append(
            [name]
            + [cell(summary, sc, name, g) for sc, g in columns]
            + [f"{mem.mean():.3f}" if len(mem) else "-", f"{fit.mean():.0f}" if len(fit) else "-"]
        )
    header = ["recipe"] + [f"{sc} {g}" for sc, g in columns] + ["memorization AUC (scoring sigma)", "fit s"]
    return markdown_table(header, rows)


__all__ = [
    "RECORD_COLUMNS",
    "RECORD_KEY",
    "cell",
    "group_auc",
    "markdown_summary",
    "protocol_a",
    "records_frame",
    "run_baseline",
    "run_recipe",
    "seeded",
    "summarize",
]

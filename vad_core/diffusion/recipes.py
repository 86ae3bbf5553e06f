"""Fitting a detector: named recipes (presets) and `fit_detector` (screen -> trim -> refit -> sigma).

The robust recipe (issue 9, docs/results.md), every step label-free:

1. Screen: `screen_folds` denoisers by video folds (`vad_core.diffusion.folds`); each fitted row
   is scored at `screen_sigma` only by the model that never saw its video.
2. Trim: drop the top `trim_share` of rows per tile position by that out-of-fold score (the rows
   most likely anomalous: a memorized anomaly cannot hide from a model that never saw it);
   `trim_share` None = `choose_trim_share` by `trim_rule` (Otsu's cut of the log scores, or a
   BIC-checked two-Gaussian mixture of them), capped at `max_share`.
3. Refit: `refit_seeds` x `refit_folds` denoisers on the kept rows (K = 1: every model sees
   every kept row and scores every fitted row; dropped rows were never trained on).
4. Scoring sigma: `label_free_sigma` on the kept rows (None), or fixed (`sigma`); the members'
   memorization diagnostic is measured at that scoring config.

Stages 1-2 are `screen_rows` (with `width_scales`, it also picks the network width by the
screen's median out-of-fold error; with `screen_rounds` > 1, it refits the screen on the rows the
last round kept and trims again from the new out-of-fold scores), stages 3-4 `refit_detector`;
`fit_detector` runs both.

Presets: "robust" (the pipeline's default), "single" (the pipeline's default before issue 9:
one model, no screen, 16 draws), "paper" (vad_core's paper recipe: the paper-size network and
noise distribution, partial-diffusion reconstruction score). `preset(name)` returns a recipe and
its `TrainConfig`. `DetectorRecipe` itself is defined in `vad_core.diffusion.detector_recipe`
and exported here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.detector import Detector, DetectorMember
from vad_core.diffusion.detector_recipe import SIGMA_RULES, DetectorRecipe
from vad_core.diffusion.folds import FittedMember, fit_members, memorization_auc_at
from vad_core.diffusion.label_free import choose_trim_share, label_free_sigma
from vad_core.errors import VADInputError, check_features

# seed and fold-seed offset of screen repeat r: far from the refit's (+ s * SEED_STRIDE, fold seed + 500) and
# from the few units a study adds per seed
SCREEN_REPEAT_STRIDE = 100_000

# The pipeline's training recipe (the Ped2 study: small pooled FiLM net, P_mean 0 / P_std 0.6).
PIPELINE_TRAIN = TrainConfig(
    epochs=30, min_steps_per_epoch=20, lr=1e-3, patience=5, P_mean=0.0, P_std=0.6, hidden=(64, 32, 16)
)
PRESETS: dict[str, tuple[DetectorRecipe, TrainConfig]] = {
    "robust": (DetectorRecipe(), PIPELINE_TRAIN),
    "single": (DetectorRecipe(name="single", screen_folds=0, refit_seeds=1, n_draws=16), PIPELINE_TRAIN),
    "paper": (
        DetectorRecipe(name="paper", screen_folds=0, refit_seeds=1, score_type="reconstruction", sigma=2.0, n_draws=8),
        TrainConfig(),
    ),
}


def preset(name: str) -> tuple[DetectorRecipe, TrainConfig]:
    """The recipe and training config of a named preset ("robust", "single", "paper")."""
    if name not in PRESETS:
        raise VADInputError(f"unknown detector preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass
class DetectorFit:
    """A fitted detector and the provenance of the fit (not needed to score)."""

    detector: Detector
    screen_scores: np.ndarray | None  # (N,) out-of-fold screen scores (None without a screen)
    keep: np.ndarray  # (N,) bool rows the deployed members were trained on
    screen_members: list[FittedMember]
    members: list[FittedMember]  # the deployed members, training-time view
    seconds: dict[str, float]
    fitted_scores: np.ndarray | None = None  # (N,) score_fitted of the fitted rows (live rule)


def trim_mask(scores: np.ndarray, share: float, tiles: np.ndarray | None = None) -> np.ndarray:
    """Rows `(N,)` bool to keep: all but the top `share` by score, ranked within each tile position."""
    s = np.asarray(scores, dtype=np.float64)
    keep = np.ones(s.size, dtype=bool)
    if share <= 0:
        return keep
    parts = (
        [np.flatnonzero(np.asarray(tiles) == t) for t in np.unique(tiles)] if tiles is not None else [np.arange(s.size)]
    )
    for rows in parts:
        n_drop = int(round(share * rows.size))
        if n_drop:
            keep[rows[np.argsort(-s[rows], kind="stable")[:n_drop]]] = False
    return keep


def choose_detector_sigma(
    members: list[FittedMember],
    x: np.ndarray,
    videos: np.ndarray,
    tiles: np.ndarray | None,
    keep: np.ndarray,
    rule: str = "rows",
    target: float = 5.0,
) -> tuple[float, dict[str, float]]:
    """`label_free_sigma` on the kept rows in the first member's space; `rule` "videos" leaves out whole videos."""
    first = members[0].denoiser
    t = None if tiles is None else np.asarray(tiles)[keep]
    groups = np.asarray(videos)[keep] if rule == "videos" else None
    return label_free_sigma(first.scaler, first.sigma_data, x[keep], t, target=target, groups=groups)


def _deployed(members: list[FittedMember]) -> list[DetectorMember]:
    return [DetectorMember(m.denoiser, m.fold, m.seed, m.trained_videos) for m in members]


@dataclass
class Screen:
    """The out-of-fold screen of a fit (stage 1-2) and the rows it keeps for the refit."""

    scores: np.ndarray | None  # (N,) the last round's out-of-fold screen scores (None without a screen)
    keep: np.ndarray  # (N,) bool rows the refit may train on
    share: float  # share of rows dropped per tile position
    members: list[FittedMember]  # the last round's screen fold models (every repeat), of the chosen width
    folds: int  # K the screen used (0 = no screen)
    hidden: tuple[int, ...]  # the network the refit trains (the chosen width when `width_scales` is set)
    width_errors: dict[str, float]  # median out-of-fold error per candidate width scale (empty without candidates)
    seconds: dict[str, float]


def _fit_inputs(
    x: np.ndarray, videos: np.ndarray, row_keys: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked rows `(N, D)`, video ids `(N,)` str and row keys `(N,)` int64 (0..N-1 when None) of both stages."""
    x = check_features(x)
    n = x.shape[0]
    keys = np.arange(n, dtype=np.int64) if row_keys is None else np.asarray(row_keys, dtype=np.int64)
    return x, np.asarray(videos).astype(str), keys


def _tagged(callback: Callable[[dict[str, Any]], Any] | None, stage: str) -> Callable[[dict[str, Any]], Any] | None:
    """`callback` with `stage` added to every event (None stays None)."""
    return None if callback is None else (lambda e: callback({**e, "stage": stage}))


def scaled_hidden(hidden: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """`hidden` with every layer width multiplied by `scale` (at least 1 unit per layer)."""
    return tuple(max(1, int(round(h * scale))) for h in hidden)


def _screen_fit(
    x: np.ndarray,
    v: np.ndarray,
    train_config: TrainConfig,
    recipe: DetectorRecipe,
    folds: int,
    tiles: np.ndarray | None,
    keys: np.ndarray,
    callback: Callable[[dict[str, Any]], Any] | None,
    keep: np.ndarray | None = None,
) -> tuple[list[FittedMember], np.ndarray, float]:
    """The screen's fold models (`screen_repeats` x `folds`) trained on the `keep (N,)` rows (None = all), their
    out-of-fold scores of every row `(N,)`, and the scoring seconds."""
    members: list[FittedMember] = []
    for r in range(recipe.screen_repeats):  # repeat 0 is the single screen, bit for bit
        repeat, _ = fit_members(
            x, v, replace(train_config, seed=train_config.seed + r * SCREEN_REPEAT_STRIDE), folds, 1, tiles,
            keep=keep, fold_seed=recipe.fold_seed + r * SCREEN_REPEAT_STRIDE, callback=callback,
        )  # fmt: skip
        members += repeat
    start = time.perf_counter()
    screen = Detector(
        _deployed(members),
        replace(recipe.score_config(recipe.screen_sigma), score_type="denoising", sigma_scales=(1.0,)),
    )
    scores, _ = screen.score_fitted(x, v, tiles, keys)
    return members, scores, time.perf_counter() - start


def screen_rows(
    x: np.ndarray,
    videos: np.ndarray,
    train_config: TrainConfig,
    recipe: DetectorRecipe = DetectorRecipe(),
    tiles: np.ndarray | None = None,
    row_keys: np.ndarray | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Screen:
    """Stages 1-2 of `fit_detector` on rows `x (N, D)` of `videos (N,)`: the screen, its width, the trim.

    With `recipe.width_scales`, one screen per candidate width; the one whose out-of-fold errors
    have the lowest median wins (a median, because up to half the rows may be anomalous and score
    high under every width), and its scores drive the trim. No labels are read.
    """
    x, v, keys = _fit_inputs(x, videos, row_keys)
    # fewer videos than folds: one video per fold; a single video cannot be screened out-of-fold
    folds = min(recipe.screen_folds, int(np.unique(v).size))
    if folds < 2:
        return Screen(None, np.ones(x.shape[0], dtype=bool), 0.0, [], 0, tuple(train_config.hidden), {}, {})
    start, scoring = time.perf_counter(), 0.0
    tried: list[tuple[float, float, list[FittedMember], np.ndarray]] = []  # (median error, scale, members, scores)
    for scale in recipe.width_scales or (1.0,):  # scale 1 leaves hidden as it is
        config = replace(train_config, hidden=scaled_hidden(train_config.hidden, scale))
        members, scores, score_seconds = _screen_fit(
            x, v, config, recipe, folds, tiles, keys, _tagged(callback, "screen")
        )
        scoring += score_seconds
        tried.append((float(np.median(scores)), scale, members, scores))
    _, scale, members, scores = min(tried, key=lambda t: t[0])  # ties: the earlier (listed) candidate
    hidden = scaled_hidden(train_config.hidden, scale)
    errors = {f"{s:g}": e for e, s, _, _ in tried} if recipe.width_scales else {}
    keep = np.ones(x.shape[0], dtype=bool)  # round 1's screen trained on every row
    for round_ in range(1, recipe.screen_rounds + 1):
        if round_ > 1:  # the same folds and seeds, on the rows the last round kept
            members, scores, score_seconds = _screen_fit(
                x, v, replace(train_config, hidden=hidden), recipe, folds, tiles, keys, _tagged(callback, "screen"),
                keep,
            )  # fmt: skip
            scoring += score_seconds
        trim_start = time.perf_counter()
        share = (
            choose_trim_share(scores, recipe.max_share, recipe.trim_rule)
            if recipe.trim_share is None
            else recipe.trim_share
        )
        keep = trim_mask(scores, share, tiles)
        scoring += time.perf_counter() - trim_start  # the trims count with the screens' scoring
        if callback is not None:
            event = {"event": "stage", "stage": "screen", "trim_share": share, "dropped": int((~keep).sum())}
            event |= {"round": round_} if recipe.screen_rounds > 1 else {}
            callback(event | ({"hidden": list(hidden), "width_errors": errors} if errors else {}))
    # screen_fit: every screen model's training; screen_score: the screens' scoring and the trims
    seconds = {"screen_fit": time.perf_counter() - start - scoring, "screen_score": scoring}
    return Screen(scores, keep, float(share), members, folds, hidden, errors, seconds)


def refit_detector(
    x: np.ndarray,
    videos: np.ndarray,
    train_config: TrainConfig,
    recipe: DetectorRecipe,
    screen: Screen,
    tiles: np.ndarray | None = None,
    row_keys: np.ndarray | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> DetectorFit:
    """Stages 3-4 of `fit_detector`: the members on `screen.keep`, the scoring sigma, the diagnostics.

    The members use `screen.hidden` (train_config's own unless the screen chose a width); the
    screen may come from another seed than `train_config`'s (scripts/seed_split_study.py).
    """
    x, v, keys = _fit_inputs(x, videos, row_keys)
    n = x.shape[0]
    keep = screen.keep
    seconds = dict(screen.seconds)
    train_config = replace(train_config, hidden=screen.hidden)  # the same config unless the screen chose a width
    start = time.perf_counter()
    members, _ = fit_members(
        x, v, train_config, recipe.refit_folds, recipe.refit_seeds, tiles, keep=keep,
        fold_seed=recipe.fold_seed + 500, callback=_tagged(callback, "refit"),
    )  # fmt: skip
    seconds["refit"] = time.perf_counter() - start
    start = time.perf_counter()
    sigma, sigma_choice = recipe.sigma, dict[str, float]()
    if sigma is None and recipe.score_type == "denoising":
        sigma, sigma_choice = choose_detector_sigma(
            members, x, v, tiles, keep, recipe.sigma_rule, recipe.target_neighbours
        )
    score_config = recipe.score_config(2.0 if sigma is None else sigma)
    deployed = _deployed(members)
    for d, m in zip(deployed, members, strict=True):
        d.memorization_auc = memorization_auc_at(m, x, score_config, tiles, keys)
    provenance: dict[str, Any] = {"screen_folds_used": screen.folds}
    if screen.width_errors:
        provenance |= {"hidden_used": list(screen.hidden), "width_errors": dict(screen.width_errors)}
    detector = Detector(
        deployed,
        score_config,
        recipe=recipe.to_dict() | provenance,
        fitted_videos=tuple(sorted(set(v.tolist()))),
        trim_share=screen.share,
        sigma_choice=sigma_choice,
        screen=_deployed(screen.members),
    )
    fitted, _ = detector.score_fitted(x, v, tiles, keys)
    detector.score_stats = {
        "n": float(n),
        "mean": float(fitted.mean()),
        "std": float(fitted.std()),
        **{f"q{q}": float(np.quantile(fitted, q / 100)) for q in (50, 90, 95, 99)},
    }
    seconds["sigma_and_diagnostics"] = time.perf_counter() - start
    detector.fit_seconds = seconds
    return DetectorFit(detector, screen.scores, keep, screen.members, members, seconds, fitted_scores=fitted)


def fit_detector(
    x: np.ndarray,
    videos: np.ndarray,
    train_config: TrainConfig,
    recipe: DetectorRecipe = DetectorRecipe(),
    tiles: np.ndarray | None = None,
    row_keys: np.ndarray | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> DetectorFit:
    """Fit `recipe` on unlabelled rows `x (N, D)` of `videos (N,)` (tiles `(N,)`, row keys `(N,)` int64).

    `screen_rows`, then `refit_detector`. `callback` gets the members' `member_done` events (with
    `stage` "screen" or "refit") and a `{"event": "stage", ...}` per finished screen.
    """
    screen = screen_rows(x, videos, train_config, recipe, tiles, row_keys, callback)
    return refit_detector(x, videos, train_config, recipe, screen, tiles, row_keys, callback)


__all__ = [
    "PIPELINE_TRAIN",
    "PRESETS",
    "DetectorFit",
    "DetectorRecipe",
    "SIGMA_RULES",
    "Screen",
    "choose_detector_sigma",
    "fit_detector",
    "preset",
    "refit_detector",
    "scaled_hidden",
    "screen_rows",
    "trim_mask",
]

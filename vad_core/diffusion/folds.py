"""Denoisers fitted by video folds: whole videos to K folds, one model per fold trained on the others.

Why by video: clips of one video are near-duplicates, so a model that saw any clip of a video
has in effect seen the rest of it; leaving out a row is not enough (findings.md: the exact
denoiser of the empirical rows scores 50 in-sample and like kNN leave-one-out). A row scored
only by the models of its own fold is judged by models that never saw its video, so an anomaly
among the fitted rows cannot be memorized away. K = 1 is one model on every row (scored
in-sample); `n_seeds` > 1 repeats every fold with other training seeds (a seed ensemble).

No labels are read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.denoiser import TrainedDenoiser
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.diffusion.training import TrainResult, fit, trained_denoiser
from vad_core.errors import VADInputError, check_features

SEED_STRIDE = 1000  # training seed of (seed replicate s, fold k) = base seed + s * SEED_STRIDE + k


def assign_folds(groups: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index `(N,)` int64 in `[0, n_folds)` of each row; every row of a group (video) shares one fold.

    Videos are visited in a seeded random order and each goes to the fold holding the fewest
    rows so far (ties: the lowest fold), so folds are balanced by rows and differ between seeds.
    Needs at least `n_folds` distinct groups.
    """
    g = np.asarray(groups).astype(str)
    if g.ndim != 1 or g.size == 0:
        raise VADInputError(f"assign_folds: need a non-empty 1-D array of video ids, got shape {g.shape}")
    if n_folds < 1:
        raise VADInputError(f"assign_folds: n_folds must be >= 1, got {n_folds}")
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if names.size < n_folds:
        raise VADInputError(f"assign_folds: {names.size} videos cannot fill {n_folds} folds (need one per fold)")
    order = np.random.default_rng(seed).permutation(names.size)
    load = np.zeros(n_folds, dtype=np.int64)
    fold_of = np.empty(names.size, dtype=np.int64)
    for v in order:
        k = int(np.argmin(load))
        fold_of[v] = k
        load[k] += counts[v]
    return np.asarray(fold_of[inverse], dtype=np.int64)


@dataclass
class FittedMember:
    """One fitted fold / seed model, with what it was trained on (training-time view)."""

    denoiser: TrainedDenoiser
    result: TrainResult
    fold: int  # -1 for a model trained on every fold (K = 1)
    seed: int  # its training seed
    train_rows: np.ndarray  # (n_k,) int64 indices into the fitted rows it was given
    trained_videos: frozenset[str]  # videos with at least one row in train_rows
    seconds: float

    @property
    def val_rows(self) -> np.ndarray:
        """`(n_val,)` fitted-row indices `fit` held back at random (early stopping)."""
        return np.asarray(self.train_rows[self.result.val_indices], dtype=np.int64)

    @property
    def fit_rows(self) -> np.ndarray:
        """`(n_k - n_val - n_stop,)` fitted-row indices the optimiser saw."""
        return np.asarray(self.train_rows[self.result.fit_indices], dtype=np.int64)


def fit_members(
    x: np.ndarray,
    videos: np.ndarray,
    train_config: TrainConfig,
    n_folds: int = 5,
    n_seeds: int = 1,
    tiles: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    fold_seed: int = 0,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[list[FittedMember], np.ndarray]:
    """Fit `n_seeds x n_folds` denoisers on rows `x (N, D)` of `videos (N,)`; returns (members, folds (N,)).

    Model (s, k) is `training.fit` on the rows outside fold k (every row when K = 1) that
    `keep (N,)` bool allows (the trimmed refit drops rows without changing the folds), seed
    `train_config.seed + s * SEED_STRIDE + k`. `tiles (N,)` go to models with a tile embedding.
    `callback({"event": "member_done", ...})` after each model.
    """
    x = check_features(x)
    n = x.shape[0]
    v = np.asarray(videos).astype(str)
    if v.shape != (n,):
        raise VADInputError(f"videos: expected shape ({n},), got {v.shape}")
    if n_seeds < 1:
        raise VADInputError(f"fit_members: n_seeds must be >= 1, got {n_seeds}")
    allowed = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if allowed.shape != (n,):
        raise VADInputError(f"keep: expected shape ({n},), got {allowed.shape}")
    folds = assign_folds(v, n_folds, fold_seed) if n_folds > 1 else np.zeros(n, dtype=np.int64)
    members: list[FittedMember] = []
    for s in range(n_seeds):
        for k in range(n_folds):
            rows = np.flatnonzero(allowed & ((folds != k) if n_folds > 1 else True))
            if rows.size < 2:
                raise VADInputError(f"fit_members: fold {k} leaves {rows.size} training rows")
            config = replace(train_config, seed=train_config.seed + s * SEED_STRIDE + k)
            start = time.perf_counter()
            use_tiles = None if tiles is None or config.n_tiles == 0 else np.asarray(tiles)[rows]
            result = fit(x[rows], config, tiles=use_tiles, groups=v[rows])
            seconds = time.perf_counter() - start
            member = FittedMember(
                denoiser=trained_denoiser(result),
                result=result,
                fold=k if n_folds > 1 else -1,
                seed=config.seed,
                train_rows=rows.astype(np.int64),
                trained_videos=frozenset(np.unique(v[rows]).tolist()),
                seconds=seconds,
            )
            members.append(member)
            if callback is not None:
                callback(
                    {
                        "event": "member_done",
                        "fold": member.fold,
                        "seed": member.seed,
                        "rows": int(rows.size),
                        "seconds": seconds,
                        "best_epoch": int(result.best_epoch),
                        "done": len(members),
                        "total": n_seeds * n_folds,
                    }
                )
    return members, folds


def memorization_auc_at(
    member: FittedMember,
    x: np.ndarray,
    score_config: ScoreConfig,
    tiles: np.ndarray | None = None,
    row_keys: np.ndarray | None = None,
    max_rows: int = 4096,
    seed: int = 0,
) -> float | None:
    """The memorization diagnostic of one member AT THE SCORING CONFIG.

    ROC AUC of its randomly held-back rows (positive) against the rows it was fitted on, by
    `score_config`'s score: 0.5 = it scores rows it never saw like the ones it trained on; 1 =
    its training rows score as perfectly normal (memorized). `training.memorization_auc` computes
    the same at 2 sigma_data; the score that matters is the one the detector uses. None when the
    member held nothing back.
    """
    val, tr = member.val_rows, member.fit_rows
    if val.size == 0 or tr.size == 0:
        return None
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(tr, size=min(max_rows, tr.size), replace=False))
    val = np.sort(rng.choice(val, size=min(max_rows, val.size), replace=False))
    rows = np.concatenate([tr, val])
    keys = rows.astype(np.int64) if row_keys is None else np.asarray(row_keys, dtype=np.int64)[rows]
    t = None if tiles is None or member.denoiser.n_tiles == 0 else np.asarray(tiles)[rows]
    s = score_rows(member.denoiser, x[rows], score_config, tiles=t, row_keys=keys)
    labels = np.r_[np.zeros(tr.size), np.ones(val.size)]
    return float(roc_auc_score(labels, s))


__all__ = ["SEED_STRIDE", "FittedMember", "assign_folds", "fit_members", "memorization_auc_at"]
